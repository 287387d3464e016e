"""An acknowledged POST /control/halt (or /resume) is a ledger event: committed before the 200, and replayed when
the worker restarts after a crash that came before the next batch commit."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ENV = {**os.environ, "HTTP_HOST": "127.0.0.1"}


def _cli(state: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "papertrader.cli", "run", "--state-dir", str(state), "--source", "synthetic",
            "--symbol", "BTC-EUR", "--http-port", "0", "--ws-port", "0", *args]


def _http_port(state: Path, proc: subprocess.Popen, log_offset: int) -> int:
    log = state / "logs" / "enhanced_paper_trader.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "worker exited"
        text = log.read_text()[log_offset:] if log.exists() else ""
        match = re.search(r"http server listening on 127\.0\.0\.1:(\d+)", text)
        if match and "starting fresh" in text or match and "resuming" in text:
            return int(match.group(1))
        time.sleep(0.1)
    raise AssertionError("worker never served HTTP")


def _post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def _paced_worker_then_kill(state: Path, action: str, body: dict) -> None:
    """A worker at --speed 1 (a candle a minute): the request lands between two commits, then SIGKILL."""
    log = state / "logs" / "enhanced_paper_trader.log"
    offset = len(log.read_text()) if log.exists() else 0
    proc = subprocess.Popen(_cli(state, "--speed", "1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ENV)
    try:
        port = _http_port(state, proc, offset)
        time.sleep(0.5)  # the first candle is processed and committed; the next one is a minute away
        _post(port, f"/control/{action}", body)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _finish(state: Path) -> dict:
    done = subprocess.run(_cli(state, "--max-candles", "3"), capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_acknowledged_halt_survives_sigkill_before_the_next_commit(tmp_path):
    state = tmp_path / "s"
    _paced_worker_then_kill(state, "halt", {"reason": "maintenance window"})
    rows = sqlite3.connect(state / "state.db").execute("SELECT action, kind, reason FROM control").fetchall()
    assert rows == [("halt", "manual", "maintenance window")]
    summary = _finish(state)
    assert summary["halted"] == ["manual"]
    events = sqlite3.connect(state / "state.db").execute(
        "SELECT detail FROM events WHERE kind = 'halt'").fetchall()
    assert events == [("manual: maintenance window",)]  # replayed once, not once per restart
    assert _finish(state)["halted"] == ["manual"]


def test_acknowledged_resume_survives_sigkill_too(tmp_path):
    state = tmp_path / "s"
    _paced_worker_then_kill(state, "halt", {"reason": "first"})
    _paced_worker_then_kill(state, "resume", {})
    rows = sqlite3.connect(state / "state.db").execute("SELECT action, kind FROM control ORDER BY id").fetchall()
    assert rows == [("halt", "manual"), ("resume", "manual")]
    assert _finish(state)["halted"] == []
