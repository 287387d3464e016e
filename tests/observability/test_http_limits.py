"""The worker's HTTP server under hostile clients: /healthz answers within its probe timeout (3 s, the operator's
timeoutSeconds) under 2,000 slow-drip connections with an open-file limit of 1024; a request that drips in is
cut off at the header deadline; deeply nested JSON is a 400, not a 500; /health reports whether the WebSocket
fan-out process is alive (a SIGSTOPped one is not)."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from papertrader.observability import http as worker_http

from .helpers import ScriptedSource, Worker, settings_for, wait_for

PROBE_TIMEOUT_S = 3.0  # operator/children.py: timeoutSeconds of the worker's probes
SLOW_CLIENTS = 2000


def _limit_open_files() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # a container's default soft limit


def _start_worker(state: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "papertrader.cli", "run", "--state-dir", str(state), "--source", "synthetic",
         "--symbol", "BTC-EUR", "--speed", "60", "--http-port", "0", "--ws-port", "0"],
        env={**os.environ, "HTTP_HOST": "127.0.0.1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_limit_open_files)
    log = state / "logs" / "enhanced_paper_trader.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "worker exited"
        match = re.search(r"http server listening on 127\.0\.0\.1:(\d+)", log.read_text() if log.exists() else "")
        if match:
            return proc, int(match.group(1))
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("worker never served HTTP")


def _probe(port: int) -> float:
    """Seconds until GET /healthz is answered 200 on a fresh connection that sends its request at once, like the
    kubelet's (a blocking socket in this thread, not a task on the attackers' busy event loop)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    return time.monotonic() - started


async def _slow_drip(port: int, stop: asyncio.Event, connects: list[int]) -> None:
    """A slowloris client: a partial request, then a header byte every second; reconnects a second after it was
    closed (as slowloris tools do)."""
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            connects[0] += 1
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Drip: ")
            while not stop.is_set() and not reader.at_eof():
                await asyncio.sleep(1.0)
                writer.write(b"a")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if writer is not None:
                writer.close()
        await asyncio.sleep(1.0)


def test_healthz_answers_within_the_probe_timeout_under_2000_slow_drip_connections(tmp_path):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < SLOW_CLIENTS + 200:
        pytest.skip(f"this machine allows {hard} open files; the test's clients need {SLOW_CLIENTS + 200}")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, SLOW_CLIENTS + 200), hard))  # for the clients (here)
    proc, port = _start_worker(tmp_path / "w")
    loop = asyncio.new_event_loop()
    stop, connects = asyncio.Event(), [0]

    async def attack() -> None:
        clients = [asyncio.create_task(_slow_drip(port, stop, connects)) for _ in range(SLOW_CLIENTS)]
        await asyncio.gather(*clients, return_exceptions=True)

    attacker = threading.Thread(target=loop.run_until_complete, args=(attack(),), daemon=True)
    try:
        attacker.start()
        time.sleep(3.0)  # every client has connected (and many were turned away) at least once
        latencies = []
        for _ in range(10):
            latencies.append(_probe(port))
            time.sleep(0.3)
        assert proc.poll() is None, "the worker must survive the attack"
    finally:
        loop.call_soon_threadsafe(stop.set)
        attacker.join(timeout=30)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert connects[0] >= SLOW_CLIENTS
    assert max(latencies) < PROBE_TIMEOUT_S, latencies
    print(f"healthz under {SLOW_CLIENTS} slow-drip clients ({connects[0]} connects): "
          f"max {max(latencies) * 1000:.0f} ms, median {sorted(latencies)[5] * 1000:.0f} ms")


async def test_a_request_that_drips_in_is_cut_off_at_the_header_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_http, "HEADER_TIMEOUT", 0.5)
    worker = await Worker(settings_for(tmp_path / "w"), ScriptedSource(live=True, now_aligned=400)).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.obs.http.bound_port)
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        answer = b""
        for _ in range(30):  # a byte every 0.1 s: each line wait is short, the whole request is not
            try:
                answer = await asyncio.wait_for(reader.read(4096), 0.1)
                break
            except TimeoutError:
                writer.write(b"X")
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < 1.5
        writer.close()
        assert (await worker.get("/healthz"))[0] == 200
    finally:
        await worker.stop()


async def test_deeply_nested_control_body_is_a_400_not_a_500(tmp_path):
    worker = await Worker(settings_for(tmp_path / "w"), ScriptedSource(live=True, now_aligned=400)).start()
    try:
        for body in ("[" * 2000 + "]" * 2000, '{"reason": ' + "[" * 40 + "]" * 40 + "}"):
            reader, writer = await asyncio.open_connection("127.0.0.1", worker.obs.http.bound_port)
            raw = body.encode()
            writer.write(b"POST /control/halt HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(raw)).encode() + b"\r\nConnection: close\r\n\r\n" + raw)
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
            assert b"nested deeper than 32 levels" in answer
        status, data = await worker.post("/control/halt", {"reason": "[not nested]", "x": [[{"a": "]]]"}]]})
        assert status == 200 and data["entries_halted"] is True
        assert "Traceback" not in (tmp_path / "w" / "logs" / "errors.log").read_text()
    finally:
        await worker.stop()


def test_json_depth_ignores_brackets_in_strings():
    assert worker_http.json_depth(b'{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert worker_http.json_depth(b'["\\"[[["]') == 1
    assert worker_http.json_depth(b"") == 0


async def test_health_reports_a_stopped_fan_out_process(tmp_path):
    worker = await Worker(settings_for(tmp_path / "w"), ScriptedSource(live=True, now_aligned=400)).start()
    try:
        feed = worker.obs.feed
        await wait_for(lambda: feed.fanout_pid is not None)
        status, health = await worker.get("/health")
        assert status == 200 and health["websocket_fanout"]["alive"] is True
        assert health["websocket_fanout"]["pid"] == feed.fanout_pid
        os.kill(feed.fanout_pid, signal.SIGSTOP)
        try:
            async def stopped_seen() -> bool:
                return (await worker.get("/health"))[1]["websocket_fanout"]["alive"] is False
            await wait_for(stopped_seen, timeout=15, interval=0.5)
        finally:
            os.kill(feed.fanout_pid, signal.SIGCONT)

        async def alive_again() -> bool:
            return (await worker.get("/health"))[1]["websocket_fanout"]["alive"] is True
        await wait_for(alive_again, timeout=15, interval=0.2)
    finally:
        await worker.stop()
