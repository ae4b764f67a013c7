"""`python -m examples.demo` as a user runs it: up, usable, and gone without a trace.

The demo runs with no PGSIFT_* URLs, so it starts its own throwaway Postgres
and Redis; after SIGTERM their ports must be closed, their directories removed
and no process left running on them.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import httpx

from examples.demo import OPEN_ISSUES
from pgsift.middleware.embedded.ports import accepts_connections, free_port
from tests.examples.stack import ROOT

# Hang guards, not timing assertions.
READY_S = 120.0
EXIT_S = 30.0
SERVER = re.compile(r"^(postgres|redis): +\S+:(\d+)/\S* \(throwaway, in (\S+)\)$")


class DemoProcess:
    """The demo subprocess with its output collected line by line."""

    def __init__(self, *argv: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGSIFT_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "examples.demo", *argv], cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, word: str, timeout: float) -> str:
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line with {word!r}:\n" + self.output()) from None
            if line is None:
                raise AssertionError(f"the demo exited before {word!r}:\n" + self.output())
            self.lines.append(line)
            if word in line:
                return line

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(EXIT_S)
        self._reader.join(EXIT_S)
        while (line := self._queue.get_nowait()) is not None:
            self.lines.append(line)
        return code


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def test_demo_serves_the_page_and_cleans_up() -> None:
    port = free_port()
    demo = DemoProcess("--port", str(port), "--size", "2000")
    try:
        ready = demo.wait_for_line("ready", READY_S)
        base = f"http://127.0.0.1:{port}"
        assert f"{base}/" in ready
        servers = {
            match[1]: (int(match[2]), match[3])
            for match in map(SERVER.match, demo.lines) if match
        }
        assert set(servers) == {"postgres", "redis"}, demo.output()
        assert "feed tail --follow" in demo.output()

        with httpx.Client(base_url=base, timeout=30.0) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            page = client.get("/")
            assert page.status_code == 200
            assert "/web/app.js" in page.text
            users = client.get("/demo/users").json()
            assert users
            user = users[0]
            response = client.get(
                f"/v1/bootstrap?query={quote(OPEN_ISSUES)}"
                f"&params={quote(json.dumps([user['team_ids'][0]]))}",
                headers={"Authorization": f"Bearer {user['token']}"},
            )
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in response.text.splitlines()]
        rows = [line["row"] for line in lines if line["type"] == "row"]
        assert lines[0]["type"] == "header"
        assert lines[-1] == {"type": "end", "count": len(rows), "cursor": lines[-1]["cursor"]}
        assert rows
        assert {row["team_id"] for row in rows} == {user["team_ids"][0]}
    finally:
        code = demo.stop() if demo.process.poll() is None else demo.process.returncode

    assert code == 0, demo.output()
    assert "stopped" in demo.lines[-1]
    for name, (server_port, directory) in servers.items():
        assert not accepts_connections(server_port), f"{name} still listens on {server_port}"
        assert not Path(directory).exists(), f"{name}'s directory {directory} is left"
        # Postgres's command line names its data directory; redis-server's its address.
        left = processes_mentioning(directory) + processes_mentioning(f"127.0.0.1:{server_port}")
        assert left == [], f"{name} still runs: {left}"
    assert not accepts_connections(port)
