"""Headless Chromium driven over the DevTools protocol (a real browser, no driver binary needed).

``open_page`` loads a file, waits until the page says it has rendered, and gives back what the page logged
(console errors and uncaught exceptions), the result of a JavaScript expression and a PNG screenshot.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]


@dataclass
class PageResult:
    value: Any
    screenshot_png: bytes
    errors: list[str] = field(default_factory=list)
    load_seconds: float = 0.0


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("chromium not found: .ci/install.sh installs Debian's chromium")


class _Session:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        call_id = self.next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found


def open_page(path: Path, expression: str, width: int = 1400, height: int = 1800,
              ready_expression: str = "document.body && document.body.dataset.rendered === 'true'",
              timeout: float = 60.0) -> PageResult:
    """Load ``path`` in headless Chromium; return ``expression``'s value, the errors logged and a screenshot."""
    profile = tempfile.mkdtemp(prefix="pt-chromium-")
    process = subprocess.Popen(
        [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = _devtools_url(process, timeout)
        with connect(url, max_size=None, open_timeout=20) as browser_ws:
            target = _Session(browser_ws).call("Target.createTarget", url="about:blank")["targetId"]
            port = re.search(r":(\d+)/", url).group(1)  # type: ignore[union-attr]  # the URL always has a port
            with connect(f"ws://127.0.0.1:{port}/devtools/page/{target}", max_size=None, open_timeout=20) as ws:
                return _load(_Session(ws), path, expression, ready_expression, width, height, timeout)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


def _load(page: _Session, path: Path, expression: str, ready_expression: str, width: int, height: int,
          timeout: float) -> PageResult:
    for domain in ("Runtime", "Log", "Page"):
        page.call(f"{domain}.enable")
    page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    started = time.monotonic()
    page.call("Page.navigate", url=path.resolve().as_uri())
    while not _evaluate(page, ready_expression):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{path}: the page did not render within {timeout} s: {page.errors()}")
        time.sleep(0.05)
    load_seconds = time.monotonic() - started
    value = _evaluate(page, expression)
    shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
    return PageResult(value, base64.b64decode(shot["data"]), page.errors(), load_seconds)


def _evaluate(page: _Session, expression: str) -> Any:
    result = page.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
    if "exceptionDetails" in result:
        raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
    return result.get("result", {}).get("value")


def _devtools_url(process: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode} before DevTools started")
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:  # keep draining stderr so that chromium never blocks on a full pipe
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return match.group(1)
    raise TimeoutError("chromium did not start DevTools")
