"""WebSocket feed: snapshot first, event types, bad input ignored, a non-reading client is closed with 1013
while 50 others and the engine keep going."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time

import pytest
import websockets
from websockets.asyncio.client import connect

from papertrader.feed.fanout import SLOW_CLIENT_CLOSE_CODE

from .helpers import ScriptedSource, Worker, settings_for, wait_for


async def test_snapshot_first_then_events_and_bad_input_ignored(tmp_path):
    source = ScriptedSource(live=True, now_aligned=600)
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    try:
        async with connect(worker.ws) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert first["type"] == "snapshot" and first["symbol"] == "BTC-EUR"
            assert {"health", "portfolio", "candle", "recent_trades"} <= set(first["data"])
            await ws.send("not json {")
            await ws.send(b"\x00\x01binary")
            await ws.send(json.dumps({"type": "launch_missiles"}))
            await ws.send(json.dumps([1, 2, 3]))
            await ws.send(json.dumps({"type": "ping"}))
            seen: set[str] = set()
            for _ in range(600):  # one candle per batch, like live
                source.release(1)
            deadline = time.monotonic() + 15
            while not {"pong", "candle", "trade", "portfolio"} <= seen and time.monotonic() < deadline:
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert set(message) >= {"type", "symbol", "time", "data"}
                seen.add(message["type"])
            assert {"pong", "candle", "trade", "portfolio"} <= seen, seen
            worker.obs.feed.publish_health(worker.obs.health.report())
            while "health" not in seen:
                seen.add(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"])
        await wait_for(lambda: worker.obs.feed.stat("ignored_inputs") >= 4)
    finally:
        await worker.stop()


async def test_slow_client_is_closed_and_never_slows_the_engine(tmp_path):
    settings = settings_for(tmp_path / "w", WS_CLIENT_QUEUE_SIZE=32, WS_FLUSH_INTERVAL=0.001)
    source = ScriptedSource(live=True)
    worker = await Worker(settings, source).start()
    feed = worker.obs.feed
    try:
        # a client that connects and then never reads: tiny receive buffer so TCP backs up quickly
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", feed.bound_port))
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        readers = []
        received = [0] * 50

        async def reader(index: int) -> None:
            async with connect(worker.ws, max_size=2**22) as ws:
                try:
                    async for _ in ws:
                        received[index] += 1
                except websockets.ConnectionClosed:
                    pass

        readers = [asyncio.create_task(reader(i)) for i in range(50)]
        await wait_for(lambda: feed.client_count() == 51, timeout=10)
        started = time.monotonic()
        for batch in range(300):
            source.release(10)
            await wait_for(lambda batch=batch: worker.runner.engine.items >= (batch + 1) * 10, interval=0.001)
            # a big health message per round makes the non-reader's buffers overflow quickly
            feed.publish_health(dict(worker.obs.health.report(), padding="x" * 20_000))
        elapsed = time.monotonic() - started
        await wait_for(lambda: feed.stat("slow_disconnects") >= 1, timeout=10)
        assert feed.stat("slow_disconnects") == 1  # only the non-reader
        assert feed.client_count() == 50
        assert worker.runner.engine.items == 3000
        assert elapsed < 30
        await wait_for(lambda: min(received) > 100, timeout=10)
        log_text = (tmp_path / "w" / "logs" / "enhanced_paper_trader.log").read_text()
        assert "too slow" in log_text and f"code {SLOW_CLIENT_CLOSE_CODE}" in log_text
        for task in readers:
            task.cancel()
        slow.close()
    finally:
        await worker.stop()


async def test_clients_are_served_by_a_separate_process_that_is_restarted_if_it_dies(tmp_path):
    """The engine's process never serves clients; if the fan-out process is killed, the worker keeps trading,
    logs an error, restarts it on the same port, and new clients get a current snapshot and events again."""
    source = ScriptedSource(live=True, now_aligned=400)
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    feed, engine = worker.obs.feed, worker.runner.engine
    try:
        first_pid, port = feed.fanout_pid, feed.bound_port
        assert first_pid is not None and first_pid != os.getpid()
        async with connect(worker.ws) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "snapshot"
            await wait_for(lambda: feed.client_count() == 1)
            os.kill(first_pid, signal.SIGKILL)
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
        for _ in range(200):  # trading goes on meanwhile
            source.release(1)
        await wait_for(lambda: engine.items >= 200)
        await wait_for(lambda: feed.fanout_restarts == 1 and feed.fanout_pid not in (None, first_pid), timeout=15)
        assert feed.bound_port == port
        async with connect(worker.ws) as ws:
            snapshot = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert snapshot["data"]["summary"]["candles"] == engine.summary()["candles"]
            source.release(1)
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message["type"] in {"candle", "trade", "portfolio", "prediction", "health"}
        log_text = (tmp_path / "w" / "logs" / "enhanced_paper_trader.log").read_text()
        assert "websocket fan-out process exited" in log_text
        status, metrics = await worker.get("/metrics")
        assert status == 200 and 'papertrader_errors_total{kind="feed"} 1.0' in metrics
    finally:
        await worker.stop()
    assert feed.fanout_pid is None  # stopped with the worker


async def test_the_fan_out_process_runs_at_the_configured_cpu_priority(tmp_path):
    """By default it only gets CPU time the engine does not want (SCHED_IDLE); `low` is nice 10."""
    for priority, policy, nice in (("idle", os.SCHED_IDLE, None), ("low", os.SCHED_OTHER, 10)):
        settings = settings_for(tmp_path / priority, WS_FANOUT_CPU_PRIORITY=priority)
        worker = await Worker(settings, ScriptedSource(live=True)).start()
        try:
            pid = worker.obs.feed.fanout_pid

            def applied(pid: int = pid, policy: int = policy, nice: int | None = nice) -> bool:
                relative_nice = os.getpriority(os.PRIO_PROCESS, pid) - os.getpriority(os.PRIO_PROCESS, 0)
                lowered = nice is None or relative_nice == nice
                return os.sched_getscheduler(pid) == policy and lowered

            await wait_for(applied)
            assert os.sched_getscheduler(os.getpid()) == os.SCHED_OTHER  # the engine keeps its normal priority
        finally:
            await worker.stop()
