"""`pgsift demo` as a user runs it: up, usable, and gone without a trace.

The demo runs with no PGSIFT_* URLs, so it starts its own throwaway Postgres
and Redis; after SIGTERM their ports must be closed, their directories removed
and no process left running on them.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import redis

from examples.demo import OPEN_ISSUES
from pgsift.middleware.embedded.ports import accepts_connections, free_port
from tests.examples.stack import ROOT

# Hang guards, not timing assertions.
READY_S = 120.0
EXIT_S = 30.0
SERVER = re.compile(r"^(postgres|redis): +\S+:(\d+)/\S* \(throwaway, in (\S+)\)$")


class DemoProcess:
    """The demo subprocess with its output collected line by line."""

    def __init__(self, *argv: str, env: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGSIFT_")} | (env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pgsift.middleware.cli", "demo", *argv],
            cwd=ROOT, env=env, text=True,
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

    def servers(self) -> dict[str, tuple[int, str]]:
        """The throwaway servers it announced: name -> (port, directory)."""
        matches = [SERVER.match(line) for line in self.lines]
        return {match[1]: (int(match[2]), match[3]) for match in matches if match}

    def stop(self) -> int:
        """SIGTERM (if still running), then its exit code; all output is in `lines` after."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(EXIT_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()  # a hang: fail, but do not leave it running
                self.process.wait()
            self._reader.join(EXIT_S)
            assert self.process.stdout is not None
            self.process.stdout.close()
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
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


def assert_cleaned_up(servers: dict[str, tuple[int, str]]) -> None:
    assert set(servers) == {"postgres", "redis"}
    for name, (port, directory) in servers.items():
        assert not accepts_connections(port), f"{name} still listens on {port}"
        assert not Path(directory).exists(), f"{name}'s directory {directory} is left"
        # Postgres's command line names its data directory; redis-server's its address.
        left = processes_mentioning(directory) + processes_mentioning(f"127.0.0.1:{port}")
        assert left == [], f"{name} still runs: {left}"


def test_demo_serves_the_page_and_cleans_up() -> None:
    port = free_port()
    demo = DemoProcess("--port", str(port), "--size", "2000")
    try:
        ready = demo.wait_for_line("ready", READY_S)
        base = f"http://127.0.0.1:{port}"
        assert f"{base}/" in ready
        # `make demo` leaves PATH alone: the tour names the venv's pgsift by its path.
        script = Path(sys.executable).with_name("pgsift")
        pgsift = "pgsift" if shutil.which("pgsift") == str(script) else str(script)
        assert f"{pgsift} feed tail --follow" in demo.output()
        # The membership step: memberships are a table the policies read, not claims.
        assert "INSERT INTO team_members (team_id, user_id) VALUES (" in demo.output()
        with httpx.Client(base_url=base, timeout=30.0) as client:
            assert client.get("/healthz").json()["status"] == "ok"
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
        assert {row["team_id"] for row in rows} == {str(user["team_ids"][0])}  # int8 wire
    finally:
        code = demo.stop()

    assert code == 0, demo.output()
    assert "stopped" in demo.lines[-1]
    # Not on a terminal: the seed's progress is no bar (no escape codes), only lines.
    assert "\x1b" not in demo.output()
    assert all(re.fullmatch(r"seed: [\d,]+/2,000 issues, .*", line)
               for line in demo.lines if re.match(r"seed: \d", line))
    assert_cleaned_up(demo.servers())
    assert not accepts_connections(port)


def test_a_taken_port_fails_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = DemoProcess("--port", str(port), "--size", "100")
        try:
            demo.wait_for_line("pgsift: error", READY_S)
            demo.process.wait(timeout=EXIT_S)
        finally:
            code = demo.stop()

    assert code == 2, demo.output()
    # The one line it printed: no server was started, nothing was seeded.
    [line] = demo.lines
    assert line == (f"pgsift: error: cannot listen on 127.0.0.1:{port}: address already in use;"
                    f" stop what uses it or pick another port: --port {port + 1}"
                    f' (make demo ARGS="--port {port + 1}")')


def gateway_pids(port: int) -> list[int]:
    """The demo's gateway child: `python -m examples.web.server ... --port <port>`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"examples.web.server" in argv and str(port).encode() in argv:
            found.append(int(proc.name))
    return found


def test_a_child_that_dies_ends_the_demo() -> None:
    """The gateway is killed: the demo says which child died, cleans up and fails."""
    port = free_port()
    demo = DemoProcess("--port", str(port), "--size", "100")
    try:
        demo.wait_for_line("ready", READY_S)
        [pid] = gateway_pids(port)
        os.kill(pid, signal.SIGKILL)
        demo.wait_for_line("pgsift demo failed", READY_S)
        # It exits by itself; a SIGTERM now would race with its own clean-up.
        demo.process.wait(timeout=60)
    finally:
        code = demo.stop()

    assert code == 1, demo.output()
    assert "gateway stopped unexpectedly (killed by signal 9)" in demo.output()
    assert_cleaned_up(demo.servers())


def test_demo_uses_the_configured_servers(database_url: str, redis_url: str) -> None:
    port = free_port()
    demo = DemoProcess("--port", str(port), "--size", "100", env={
        "PGSIFT_DATABASE_URL": database_url, "PGSIFT_REDIS_URL": redis_url,
    })
    try:
        demo.wait_for_line("ready", READY_S)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
    finally:
        code = demo.stop()

    assert code == 0, demo.output()
    assert demo.servers() == {}
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM teams").fetchone() == (5,)  # its seed
        # Capture's replication slot would hold back WAL: the demo drops the one it made.
        assert conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
        ).fetchall() == []
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping()
