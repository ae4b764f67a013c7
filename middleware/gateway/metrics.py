"""Prometheus metrics of one gateway process, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

LAG_HELP = "How long the feed tailer has been behind the feed head (0: caught up)"
BEHIND_HELP = "Feed entries after the feed tailer's position (counted up to 1000)"


class GatewayMetrics:
    """Connections, subscriptions, shapes, routed changes, feed lag, queue drops, snapshots."""

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
            "pgsift_gateway_snapshots", "Snapshots read from Postgres", registry=r
        )
        self.snapshot_seconds = Histogram(
            "pgsift_gateway_snapshot_seconds", "Time to stream one snapshot", registry=r
        )

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
