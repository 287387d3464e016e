"""SIGTERM during start-up stops the worker promptly even as PID 1 (a container without an init), where the
kernel drops signals that have no handler. The worker runs as PID 1 of a new PID namespace (`unshare`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.timeout(60)


class SilentExchange:
    """Accepts connections on 127.0.0.1 and never answers: the worker's warm-up download hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connected = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            self.connected.set()

    def close(self) -> None:
        for conn in self._held:
            conn.close()
        self.sock.close()


def start_as_pid1(tmp_path: Path, exchange: SilentExchange) -> tuple[subprocess.Popen[bytes], psutil.Process]:
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed to run the worker as PID 1"
    env = {**os.environ, "BITVAVO_REST_URL": f"http://127.0.0.1:{exchange.port}/v2",
           "BITVAVO_WS_URL": f"ws://127.0.0.1:{exchange.port}/v2/"}
    proc = subprocess.Popen([unshare, "--pid", "--fork", "--mount-proc", sys.executable, "-m", "papertrader.cli",
                             "run", "--symbol", "BTC-EUR", "--source", "bitvavo", "--state-dir", str(tmp_path / "w"),
                             "--http-port", "0", "--ws-port", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not psutil.Process(proc.pid).children():
        assert time.monotonic() < deadline and proc.poll() is None, "unshare did not start the worker"
        time.sleep(0.01)
    return proc, psutil.Process(proc.pid).children()[0]


@pytest.mark.parametrize("moment", ["imports", "warm-up download"])
def test_sigterm_during_startup_stops_pid1_promptly(moment: str, tmp_path: Path) -> None:
    exchange = SilentExchange()
    proc, worker = start_as_pid1(tmp_path, exchange)
    try:
        if moment == "imports":
            time.sleep(0.2)
        else:
            assert exchange.connected.wait(30), "the worker never asked the exchange for its warm-up candles"
            time.sleep(0.3)
        assert worker.is_running()
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)  # the kubelet's default grace period is 30 s; without a handler: never
        assert time.monotonic() - sent < 5
        assert not worker.is_running()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        exchange.close()
