"""Prometheus metrics of one gateway process, on a registry of its own."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from pgsift.subscriptions.registry import RegistryStats

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "SnapshotSource"]

SnapshotSource = Literal["postgres", "dump"]
SNAPSHOT_SOURCES: tuple[SnapshotSource, ...] = ("postgres", "dump")
# Who streamed the snapshot: a `sync` subscription or `GET /v1/bootstrap`.
SnapshotEndpoint = Literal["sync", "bootstrap"]
SNAPSHOT_ENDPOINTS: tuple[SnapshotEndpoint, ...] = ("sync", "bootstrap")
# Why a bootstrap was refused before anything was read: the caller's cap (429), no
# snapshot connection within bootstrap_wait_s (503), Postgres unreachable (503).
BootstrapRefusal = Literal["per_caller", "no_connection", "database"]
REFUSALS: tuple[BootstrapRefusal, ...] = ("per_caller", "no_connection", "database")
# Why a bootstrap's response ended before its end line.
BootstrapCut = Literal["write_timeout", "disconnect", "error"]
CUTS: tuple[BootstrapCut, ...] = ("write_timeout", "disconnect", "error")

LAG_HELP = "How long the feed tailer has been behind the feed head (0: caught up)"
BEHIND_HELP = "Feed entries after the feed tailer's position (counted up to 100)"


class GatewayMetrics:
    """Connections, subscriptions, shapes, routed changes, feed lag, queue drops, snapshots,
    bootstraps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "pgsift_gateway_connections", "Open websocket connections", registry=r
        )
        self.subscriptions = Gauge(
            "pgsift_gateway_subscriptions", "Live sync subscriptions at the feed tailer", registry=r
        )
        self.shapes = Gauge(
            "pgsift_gateway_shapes", "Distinct shapes of the live subscriptions", registry=r
        )
        self.routed_changes = Counter(
            "pgsift_gateway_routed_changes", "Changes routed to a subscription", registry=r
        )
        self.feed_entries = Counter(
            "pgsift_gateway_feed_entries", "Feed entries read by the tailer", registry=r
        )
        # The inner sets of relational shapes (`watch_sets`).
        self.inner_sets = Gauge("pgsift_gateway_inner_sets", "Materialized inner sets", registry=r)
        self.inner_set_bytes = Gauge(
            "pgsift_gateway_inner_set_bytes",
            "Measured memory of the materialized inner sets (bound: relational_max_set_bytes)",
            registry=r,
        )
        self.nested_moves = Gauge(
            "pgsift_gateway_nested_set_moves",
            "Membership changes of nested inner sets judged in memory at the tailer, since start",
            registry=r,
        )
        self.feed_lag = Gauge(
            "pgsift_gateway_feed_lag_seconds",
            "Now minus the commit time of the last feed entry read",
            registry=r,
        )
        # The watchdog's (pgsift.middleware.gateway.watchdog).
        self.lag_seconds = Gauge("pgsift_feed_lag_seconds", LAG_HELP, registry=r)
        self.entries_behind = Gauge("pgsift_feed_entries_behind", BEHIND_HELP, registry=r)
        self.queue_drops = Counter(
            "pgsift_gateway_queue_drops",
            "Transactions dropped because a connection's send queue was full (mustRefetch)",
            registry=r,
        )
        self.snapshots = Counter(
            "pgsift_gateway_snapshots",
            "Snapshots streamed in full, by source (a Postgres snapshot or a pre-built dump)"
            " and endpoint (a sync without cursor, or GET /v1/bootstrap)",
            ["source", "endpoint"],
            registry=r,
        )
        self.snapshot_seconds = Histogram(
            "pgsift_gateway_snapshot_seconds",
            "Time to stream one snapshot in full, by source and endpoint",
            ["source", "endpoint"],
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "pgsift_gateway_heartbeat_age_seconds",
            "Seconds since the moment up to which this gateway has seen every transaction, "
            "from capture's heartbeat (NaN: no heartbeat seen yet)",
            registry=r,
        )
        self.bootstraps_in_flight = Gauge(
            "pgsift_gateway_bootstraps_in_flight",
            "GET /v1/bootstrap responses being served (each holds a dump lease or a snapshot"
            " connection)",
            registry=r,
        )
        self.bootstrap_refusals = Counter(
            "pgsift_gateway_bootstrap_refusals",
            "GET /v1/bootstrap requests refused before anything was read, by reason: per_caller"
            " (429, bootstrap_max_per_caller), no_connection (503, every snapshot connection"
            " busy past bootstrap_wait_s), database (503, Postgres unreachable)",
            ["reason"],
            registry=r,
        )
        self.bootstraps_cut = Counter(
            "pgsift_gateway_bootstraps_cut",
            "GET /v1/bootstrap responses ended before their end line, by reason: write_timeout"
            " (the client took no bytes for bootstrap_write_timeout_s), disconnect, error",
            ["reason"],
            registry=r,
        )
        for source in SNAPSHOT_SOURCES:  # every series from the start, at 0
            for endpoint in SNAPSHOT_ENDPOINTS:
                self.snapshots.labels(source=source, endpoint=endpoint)
                self.snapshot_seconds.labels(source=source, endpoint=endpoint)
        for refusal in REFUSALS:
            self.bootstrap_refusals.labels(reason=refusal)
        for cut in CUTS:
            self.bootstraps_cut.labels(reason=cut)

    def snapshot_streamed(
        self, source: SnapshotSource, seconds: float, endpoint: SnapshotEndpoint = "sync"
    ) -> None:
        """One snapshot streamed in full: counted and timed together, so that
        `snapshots_total` and `snapshot_seconds_count` agree."""
        self.snapshots.labels(source=source, endpoint=endpoint).inc()
        self.snapshot_seconds.labels(source=source, endpoint=endpoint).observe(seconds)

    def watch_sets(self, stats: Callable[[], RegistryStats]) -> None:
        """Report the inner sets' count and measured size at every scrape."""
        self.inner_sets.set_function(lambda: stats().materialized)
        self.inner_set_bytes.set_function(lambda: stats().approx_bytes)
        self.nested_moves.set_function(lambda: stats().rejudged)

    def watch_heartbeat(self, age_s: Callable[[], float | None]) -> None:
        """Report `age_s()` as the heartbeat age at every scrape."""
        self.heartbeat_age.set_function(lambda: _or_nan(age_s()))

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
