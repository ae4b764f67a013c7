"""The interim `pgsift demo` shows changes flowing and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.middleware.capture.processes import PGSIFT, wait_for


def test_demo_flows_and_stops_on_sigterm(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    out = open(tmp_path / "demo.out", "w+b")  # noqa: SIM115 - read while the child writes
    env = {**os.environ, "PGSIFT_DATABASE_URL": database_url, "PGSIFT_REDIS_URL": redis_url}
    demo = subprocess.Popen([*PGSIFT, "demo"], stdout=out, stderr=subprocess.DEVNULL, env=env)
    try:
        def lines() -> list[str]:
            out.seek(0)
            return out.read().decode().splitlines()

        wait_for(lambda: any("ready" in line for line in lines()), "the demo to be ready")
        wait_for(lambda: sum(line.startswith("{") for line in lines()) >= 2, "two feed lines")
        change = json.loads(next(line for line in lines() if line.startswith("{")))
        assert change["changes"][0]["table"] == "public.demo_events"
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0
        assert lines()[-1] == "pgsift demo stopped"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        out.close()
