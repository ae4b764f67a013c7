"""What a capture process is doing, for an operator: `/healthz` and `/metrics`.

`CaptureHealth` is told by the runner what happens (standby, leading, retrying
and why, each heartbeat written); `HealthListener` serves it over HTTP on a
thread of its own (`pgsift capture --health-port`), since capture has no event
loop. A standby is healthy (it is doing its job: waiting); a leader is healthy
while its heartbeat is fresh; a process that is retrying says why.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pgsift.middleware.feed.entry import format_lsn


class CaptureHealth:
    """The state of one capture process; written by the runner, read by the listener."""

    def __init__(self, *, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.state = "starting"
        self.reason = ""
        self.confirmed_lsn = 0
        self._as_of: float | None = None  # monotonic time up to which the feed is complete
        self.registry = CollectorRegistry()
        r = self.registry
        Gauge(
            "pgsift_capture_heartbeat_age_seconds",
            "Seconds since the moment up to which the feed is known complete (NaN: never)",
            registry=r,
        ).set_function(lambda: self._age_or_nan())
        Gauge(
            "pgsift_capture_leading", "1 while this process holds the capture lock", registry=r
        ).set_function(lambda: float(self.state == "leading"))
        Gauge(
            "pgsift_capture_confirmed_lsn", "The slot position this process confirmed last",
            registry=r,
        ).set_function(lambda: float(self.confirmed_lsn))
        self.retries = Counter(
            "pgsift_capture_retries", "Sessions ended by an error capture retries after",
            registry=r,
        )

    def standby(self, reason: str) -> None:
        self.state, self.reason, self._as_of = "standby", reason, None

    def leading(self) -> None:
        """A session starts; the last error (if any) stays the reason until a heartbeat."""
        self.state = "leading"

    def retrying(self, reason: str) -> None:
        self.state, self.reason = "retrying", reason
        self.retries.inc()

    def beat(self, confirmed_lsn: int, lag_s: float) -> None:
        """A heartbeat was written: the feed was complete `lag_s` seconds ago."""
        self.confirmed_lsn = confirmed_lsn
        self.reason = ""
        as_of = time.monotonic() - lag_s
        if self._as_of is None or as_of > self._as_of:
            self._as_of = as_of

    def age_s(self) -> float | None:
        return None if self._as_of is None else max(0.0, time.monotonic() - self._as_of)

    def problem(self) -> str | None:
        """Why this process is not doing its job; None when it is."""
        if self.state == "standby":
            return None
        if self.state == "retrying":
            return f"retrying: {self.reason}"
        age = self.age_s()
        last_error = f" (last error: {self.reason})" if self.reason else ""
        if age is None:
            return f"{self.state}: no heartbeat written yet{last_error}"
        if age > self.stale_after_s:
            return (
                f"the feed is complete only up to {age:.1f} s ago "
                f"(feed_stale_after_s = {self.stale_after_s:g}): capture is behind{last_error}"
            )
        return None

    def report(self) -> dict[str, Any]:
        problem = self.problem()
        age = self.age_s()
        return {
            "status": "unavailable" if problem else self.state if self.state == "standby" else "ok",
            "state": self.state,
            "reason": problem or self.reason,
            "heartbeat_age_s": None if age is None else round(age, 3),
            "confirmed_lsn": format_lsn(self.confirmed_lsn),
        }

    def _age_or_nan(self) -> float:
        age = self.age_s()
        return float("nan") if age is None else age


class HealthListener:
    """`GET /healthz` (200, or 503 with the reason) and `GET /metrics` for `health`."""

    def __init__(self, health: CaptureHealth, host: str, port: int) -> None:
        self.health = health
        self._server = ThreadingHTTPServer((host, port), _handler(health))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pgsift-capture-health", daemon=True
        )

    def start(self) -> HealthListener:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(health: CaptureHealth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                report = health.report()
                body = json.dumps(report).encode()
                status = 503 if report["status"] == "unavailable" else 200
                self._send(status, body, "application/json")
            elif self.path == "/metrics":
                self._send(200, generate_latest(health.registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes every few seconds would drown capture's own log."""

    return Handler
