"""WebSocket fan-out with 1,000 clients on 127.0.0.1 (some never read) vs none.

    python benchmarks/ws_fanout.py [--clients 1000] [--silent 100] [--candles 1500] [--rate 50]

A worker runs in this process with a live-like source that delivers one candle every 1/rate s. The clients run
in a separate process (so they do not share the worker's GIL): ``clients - silent`` read every message and
record ``receive time - message["time"]`` (fan-out latency, server flush to client); ``silent`` ones complete
the handshake and never read. Prints fan-out p50/p99 and the engine's per-candle latency (candle in, decision
committed: ``on_tick_done``) p50/p99 with and without clients, plus slow-client disconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def clients_main(port: int, readers: int, silent: int, stop: Any, out: Any, ready: Any) -> None:
    _raise_fd_limit()

    async def main() -> None:
        from websockets.asyncio.client import connect

        latencies: list[float] = []
        socks = []
        for _ in range(silent):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            socks.append(s)
        connections = []
        for i in range(readers):
            connections.append(await connect(f"ws://127.0.0.1:{port}", max_size=2**22, open_timeout=30))

        async def read(ws: Any) -> None:
            try:
                async for raw in ws:
                    now = time.time()
                    message = json.loads(raw)
                    if message["type"] == "candle":
                        latencies.append(now - message["time"])
            except Exception:  # noqa: BLE001
                pass

        tasks = [asyncio.create_task(read(ws)) for ws in connections]
        ready.put(True)
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        out.put(latencies)

    asyncio.run(main())


class _Ticks:
    def __init__(self) -> None:
        self.durations: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None

    def on_tick_done(self, candle: Any, duration: float) -> None:
        self.durations.append(duration)


async def run_worker(clients: int, silent: int, candles: int, rate: float) -> dict[str, Any]:
    from observability.helpers import ScriptedSource, Worker, settings_for

    tmp = Path(tempfile.mkdtemp())
    settings = settings_for(tmp / "w", LOG_LEVEL="WARNING")
    source = ScriptedSource(live=True, now_aligned=candles)
    worker = await Worker(settings, source).start()
    ticks = _Ticks()
    worker.runner.listeners.append(ticks)
    feed = worker.obs.feed
    process = None
    out: Any = multiprocessing.Queue()
    ready: Any = multiprocessing.Queue()
    stop: Any = multiprocessing.Event()
    if clients:
        process = multiprocessing.Process(target=clients_main, args=(feed.bound_port, clients - silent, silent,
                                                                      stop, out, ready))
        process.start()
        await asyncio.get_running_loop().run_in_executor(None, ready.get)
        deadline = time.monotonic() + 120
        while feed.client_count() < clients and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        print(f"clients connected: {feed.client_count()}", file=sys.stderr)
    source.release(300)  # warm-up, not measured
    while worker.runner.engine.items < 300:
        await asyncio.sleep(0.01)
    ticks.durations.clear()
    started = time.monotonic()
    for i in range(candles - 300):
        source.release(1)
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    while worker.runner.engine.items < candles:
        await asyncio.sleep(0.01)
    await asyncio.sleep(1.0)
    result: dict[str, Any] = {"clients": feed.client_count(), "slow_disconnects": feed.slow_disconnects,
                              "ticks": sorted(ticks.durations)}
    await worker.stop()
    if process is not None:
        stop.set()
        latencies: list[float] = await asyncio.get_running_loop().run_in_executor(None, out.get, True, 60)
        process.join(10)
        result["latencies"] = sorted(latencies)
    return result


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--silent", type=int, default=100)
    parser.add_argument("--candles", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=50.0, help="candles per second")
    args = parser.parse_args()
    _raise_fd_limit()
    base = asyncio.run(run_worker(0, 0, args.candles, args.rate))
    loaded = asyncio.run(run_worker(args.clients, args.silent, args.candles, args.rate))
    for name, r in (("no clients", base), (f"{args.clients} clients ({args.silent} silent)", loaded)):
        t = r["ticks"]
        print(f"{name:28s} engine candle latency p50 {pct(t, .5) * 1e6:8.1f} us  p99 {pct(t, .99) * 1e6:8.1f} us"
              f"  (n={len(t)})")
    lat = loaded.get("latencies", [])
    print(f"fan-out latency (flush -> client, candle messages): p50 {pct(lat, .5) * 1e3:.1f} ms  "
          f"p99 {pct(lat, .99) * 1e3:.1f} ms  (n={len(lat)})")
    print(f"slow clients disconnected: {loaded['slow_disconnects']}, clients left: {loaded['clients']}")
    ratio = pct(loaded["ticks"], .99) / pct(base["ticks"], .99)
    print(f"engine p99 ratio with/without clients: {ratio:.3f}")
    _ = statistics


if __name__ == "__main__":
    main()
