"""Debian's headless chromium, driven over the DevTools protocol (no extra packages).

    with Chromium() as page:
        page.navigate("http://127.0.0.1:8000/")
        page.wait_for("document.querySelectorAll('tr').length > 3", "rows")
        page.evaluate("document.querySelector('tr').click()")
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
)
LISTENING = re.compile(r"DevTools listening on (ws://\S+)")
START_S = 60.0


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(Exception):
    """The page threw, or the browser did not start."""


class Chromium:
    """One headless browser with one page."""

    def __init__(self, executable: str | None = None) -> None:
        found = executable or find_chromium()
        if found is None:
            raise BrowserError("no chromium on PATH: apt-get install chromium (see .ci/setup)")
        self.executable = found
        self._profile = Path(tempfile.mkdtemp(prefix="pgsift-chromium-"))
        self._process: subprocess.Popen[str] | None = None
        self._page: ClientConnection | None = None
        self._stack = contextlib.ExitStack()
        self._ids = itertools.count(1)
        self.console: list[str] = []

    def __enter__(self) -> Chromium:
        self._process = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            self._page = self._stack.enter_context(
                connect(self._page_url(), max_size=None, proxy=None)
            )
            self.send("Runtime.enable")
            self.send("Page.enable")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _page_url(self) -> str:
        assert self._process is not None and self._process.stderr is not None
        deadline = time.monotonic() + START_S
        for line in self._process.stderr:
            match = LISTENING.search(line)
            if match:
                break
            if time.monotonic() > deadline:
                raise BrowserError("chromium did not start")
        else:
            raise BrowserError(f"chromium exited with {self._process.wait()}")
        port = match.group(1).split(":")[2].split("/")[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", trust_env=False).json()
        page = next(target for target in targets if target["type"] == "page")
        return str(page["webSocketDebuggerUrl"])

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stderr is not None:
                self._process.stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call a DevTools method and return its result; events seen meanwhile are noted."""
        assert self._page is not None
        call_id = next(self._ids)
        self._page.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self._page.recv(timeout=START_S))
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._note(message)

    def _note(self, event: dict[str, Any]) -> None:
        if event.get("method") == "Runtime.consoleAPICalled":
            args = event["params"].get("args", [])
            self.console.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
        elif event.get("method") == "Runtime.exceptionThrown":
            details = event["params"]["exceptionDetails"]
            self.console.append(f"uncaught: {details.get('exception', {}).get('description')}")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        """The value of a JS expression in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 60.0) -> Any:
        """Poll until the expression is truthy; returns its value (a hang guard, not a timer)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(BrowserError):
                value = self.evaluate(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                raise AssertionError(f"never happened in the page: {what}; console: {self.console}")
            time.sleep(0.05)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
