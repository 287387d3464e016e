"""WebSocket fan-out with 1,000 clients on 127.0.0.1 (some never read, some hostile) vs none.

    python benchmarks/ws_fanout.py [--clients 1000] [--silent 100] [--hostile 50] [--candles 3300] [--rate 100]
                                   [--rounds 2] [--clients-priority idle]
    python benchmarks/ws_fanout.py --json out.json   # also write the figures as JSON

A worker runs in this process with a live-like source that releases one candle every 1/rate s; the worker serves
its WebSocket clients from its own fan-out process (``feed/fanout.py``). The clients run in a separate process:
``clients - silent - hostile`` read every message and record ``receive time - message["time"]`` for candle
messages (fan-out latency, server flush to client); ``silent`` ones complete the handshake and never read.

The engine's candle latency is measured from the moment the source releases a candle to the moment its decision
is committed (so a candle waiting for a busy event loop counts), and also as the tick (processing start ->
persisted, ``papertrader_tick_duration_seconds``). Each condition (no clients / clients) runs ``--rounds`` times
in alternating order and the samples are pooled, so drift on a shared machine cancels out; the p99 ratio
with/without clients is the headline figure. On a 2-core machine the client process (a thousand connections'
worth of parsing) would take a whole core from the worker; ``--clients-priority idle`` (the default, SCHED_IDLE)
lets it stand in for the clients' own machines; ``normal`` measures them competing as equals.

``hostile`` clients (part of ``clients``) cycle through: garbage text and binary frames (ignored, the client keeps
receiving), frames over 4 KiB (closed with 1009), a flood of snapshot requests without reading (closed as
slow, 1013), a stalled
half-sent handshake, and connect/abort churn. Each reading client records the last candle it received: at these
rates candles are conflated per flush (WS_FLUSH_INTERVAL), but every reader must end on the engine's last candle
(``readers_complete``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
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


HOSTILE_KINDS = ("garbage", "oversize", "snapshot_flood", "half_handshake", "churn")


async def hostile_client(kind: str, port: int, stop: Any, stats: dict[str, int]) -> None:
    """One misbehaving client; ``stats`` counts what happened (by outcome)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    url = f"ws://127.0.0.1:{port}"

    def bump(key: str) -> None:
        stats[key] = stats.get(key, 0) + 1

    try:
        if kind == "half_handshake":
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websock")  # and never finishes
            await writer.drain()
            try:
                await asyncio.wait_for(reader.read(), 60)
                bump("half_handshake_closed_by_server")
            except TimeoutError:
                bump("half_handshake_still_open")
            writer.close()
        elif kind == "churn":
            while not stop.is_set():
                ws = await connect(url, open_timeout=30)
                await ws.recv()  # the snapshot
                ws.transport.abort()  # no close frame
                bump("churn_cycles")
                await asyncio.sleep(0.05)
        else:
            async with connect(url, max_size=2**22, open_timeout=30, ping_interval=None) as ws:
                if kind == "garbage":
                    for payload in ("not json", "{\"type\": \"nope\"}", "[1,2]", b"\x00\xff binary", "{"):
                        await ws.send(payload)
                    while not stop.is_set():
                        try:
                            await asyncio.wait_for(ws.recv(), 0.5)
                            bump("garbage_messages_received")
                        except TimeoutError:
                            continue
                elif kind == "oversize":
                    await ws.send("x" * 8192)
                    try:
                        while True:
                            await ws.recv()
                    except ConnectionClosed as closed:
                        bump(f"oversize_closed_{closed.rcvd.code if closed.rcvd else 'none'}")
                elif kind == "snapshot_flood":  # asks for snapshots (a few KiB each) and never reads them
                    try:
                        while not stop.is_set():
                            await ws.send('{"type": "snapshot"}')
                            await asyncio.sleep(0)
                    except ConnectionClosed as closed:
                        bump(f"snapshot_flood_closed_{closed.rcvd.code if closed.rcvd else 'none'}")
    except (TimeoutError, OSError, ConnectionClosed) as exc:
        bump(f"{kind}_error_{type(exc).__name__}")


def clients_main(port: int, readers: int, silent: int, stop: Any, out: Any, ready: Any, hostile: int = 0,
                 priority: str = "normal") -> None:
    from papertrader.feed.fanout import lower_cpu_priority

    _raise_fd_limit()
    lower_cpu_priority(priority)

    async def main() -> None:
        from websockets.asyncio.client import connect

        latencies: list[float] = []
        counts: list[tuple[int, int]] = []
        hostile_stats: dict[str, int] = {}
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
            seen = last_ts = 0
            try:
                async for raw in ws:
                    now = time.time()
                    if not raw.startswith('{"type":"candle"'):
                        continue  # only candles are timed: parse nothing else
                    message = json.loads(raw)
                    if message["type"] == "candle":
                        latencies.append(now - message["time"])
                        seen += 1
                        last_ts = message["data"]["ts"]
            except BaseException:  # noqa: BLE001, S110 - cancelled at the end, or closed
                pass
            finally:
                counts.append((seen, last_ts))

        stop_hostile = asyncio.Event()
        tasks = [asyncio.create_task(read(ws)) for ws in connections]
        hostiles = [asyncio.create_task(hostile_client(HOSTILE_KINDS[i % len(HOSTILE_KINDS)], port, stop_hostile,
                                                       hostile_stats)) for i in range(hostile)]
        ready.put(True)
        while not stop.is_set():
            await asyncio.sleep(0.2)
        stop_hostile.set()
        if hostiles:
            await asyncio.wait(hostiles, timeout=5)
        for task in tasks + hostiles:
            task.cancel()
        await asyncio.gather(*tasks, *hostiles, return_exceptions=True)
        out.put({"latencies": latencies, "counts": counts, "hostile": hostile_stats, "cpu_s": time.process_time()})

    asyncio.run(main())


class _Ticks:
    """Per candle: ``durations`` (processing started -> decision persisted, the tick histogram) and ``latencies``
    (released by the source -> decision persisted: includes any wait for the event loop)."""

    def __init__(self, released: list[float]) -> None:
        self.released = released
        self.durations: list[float] = []
        self.latencies: list[float] = []
        self.seen = 0

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None

    def on_tick_done(self, candle: Any, duration: float) -> None:
        now = time.perf_counter()
        self.durations.append(duration)
        if self.seen < len(self.released):
            self.latencies.append(now - self.released[self.seen])
        self.seen += 1

    def clear(self) -> None:
        self.durations.clear()
        self.latencies.clear()


async def run_worker(clients: int, silent: int, candles: int, rate: float, hostile: int = 0,
                     clients_priority: str = "normal") -> dict[str, Any]:
    from observability.helpers import ScriptedSource, Worker, settings_for

    class TimedSource(ScriptedSource):
        """Records when each candle was released (the moment a live candle would arrive)."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.released: list[float] = []

        def release(self, count: int) -> None:
            self.released.extend([time.perf_counter()] * count)
            super().release(count)

    tmp = Path(tempfile.mkdtemp())
    settings = settings_for(tmp / "w", LOG_LEVEL="WARNING")
    source = TimedSource(live=True, now_aligned=candles)
    worker = await Worker(settings, source).start()
    ticks = _Ticks(source.released)
    worker.runner.listeners.append(ticks)
    feed = worker.obs.feed
    process = None
    out: Any = multiprocessing.Queue()
    ready: Any = multiprocessing.Queue()
    stop: Any = multiprocessing.Event()
    if clients:
        process = multiprocessing.Process(target=clients_main, args=(feed.bound_port, clients - silent - hostile,
                                                                      silent, stop, out, ready, hostile,
                                                                      clients_priority))
        process.start()
        await asyncio.get_running_loop().run_in_executor(None, ready.get)
        wait_started = time.monotonic()
        deadline = wait_started + 120
        # the readers and silent clients; hostile ones are closed early, never complete, or come and go
        while feed.client_count() < clients - hostile and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        print(f"clients connected: {feed.client_count()}", file=sys.stderr)
        connect_wait_s, clients_at_start = time.monotonic() - wait_started, feed.client_count()
    source.release(300)  # warm-up, not measured
    while worker.runner.engine.items < 300:
        await asyncio.sleep(0.01)
    ticks.clear()
    fanout_cpu_start = _process_cpu_seconds(feed.fanout_pid)
    started = time.monotonic()
    for i in range(candles - 300):
        source.release(1)
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    while worker.runner.engine.items < candles:
        await asyncio.sleep(0.01)
    await asyncio.sleep(1.0)
    measured_s = time.monotonic() - started
    fanout_cpu_s = _process_cpu_seconds(feed.fanout_pid) - fanout_cpu_start
    if not clients:
        connect_wait_s = clients_at_start = 0
    result: dict[str, Any] = {"clients": feed.client_count(), "slow_disconnects": feed.stat("slow_disconnects"),
                              "connect_wait_s": round(connect_wait_s, 1), "clients_at_start": clients_at_start,
                              "ticks": sorted(ticks.durations), "latencies_engine": sorted(ticks.latencies),
                              "candles_processed": worker.runner.engine.items,
                              "ignored_inputs": feed.stat("ignored_inputs"), "measured_s": measured_s,
                              "fanout_cpu_share": fanout_cpu_s / measured_s}
    status, _ = await worker.get("/healthz")
    result["healthz_status"] = status
    await worker.stop()
    if process is not None:
        stop.set()
        received = await asyncio.get_running_loop().run_in_executor(None, out.get, True, 60)
        process.join(10)
        result["latencies"] = sorted(received["latencies"])
        counts = received["counts"]
        result["readers"] = len(counts)
        last_ts = worker.runner.engine.last_candle.ts
        result["readers_complete"] = sum(1 for _, ts in counts if ts == last_ts)
        result["candles_per_reader_min"] = min((c for c, _ in counts), default=0)
        result["candles_per_reader_max"] = max((c for c, _ in counts), default=0)
        result["hostile"] = received["hostile"]
        result["clients_cpu_s"] = received["cpu_s"]
    return result


def _process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a running process (Linux /proc); 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, TypeError):
        return 0.0


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the samples of several runs of one condition (sorted lists concatenated, counts summed over them)."""
    merged: dict[str, Any] = dict(runs[-1])
    for key in ("ticks", "latencies_engine", "latencies"):
        merged[key] = sorted(v for run in runs for v in run.get(key, []))
    for key in ("slow_disconnects", "ignored_inputs", "readers", "readers_complete", "clients", "clients_at_start"):
        merged[key] = sum(run.get(key, 0) for run in runs)
    merged["candles_processed"] = min(run["candles_processed"] for run in runs)  # each run must process them all
    merged["candles_per_reader_min"] = min(run.get("candles_per_reader_min", 0) for run in runs)
    merged["candles_per_reader_max"] = max(run.get("candles_per_reader_max", 0) for run in runs)
    merged["hostile"] = {}
    for run in runs:
        for key, value in run.get("hostile", {}).items():
            merged["hostile"][key] = merged["hostile"].get(key, 0) + value
    merged["fanout_cpu_share"] = statistics.mean(run["fanout_cpu_share"] for run in runs)
    merged["clients_cpu_share"] = statistics.mean(run.get("clients_cpu_s", 0) / run["measured_s"] for run in runs)
    return merged


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def summarize(bases: list[dict[str, Any]], loads: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    """The figures of all runs: samples of each condition pooled, plus each round's p99."""
    base, loaded = merge_runs(bases), merge_runs(loads)
    lat = loaded.get("latencies", [])
    return {
        "clients": args.clients, "silent": args.silent, "hostile": args.hostile, "candles": args.candles,
        "rate": args.rate,
        "engine_p50_us_no_clients": pct(base["latencies_engine"], .5) * 1e6,
        "engine_p99_us_no_clients": pct(base["latencies_engine"], .99) * 1e6,
        "engine_p50_us_clients": pct(loaded["latencies_engine"], .5) * 1e6,
        "engine_p99_us_clients": pct(loaded["latencies_engine"], .99) * 1e6,
        "engine_p99_ratio": pct(loaded["latencies_engine"], .99) / pct(base["latencies_engine"], .99),
        "tick_p99_us_no_clients": pct(base["ticks"], .99) * 1e6,
        "tick_p99_us_clients": pct(loaded["ticks"], .99) * 1e6,
        "tick_p99_ratio": pct(loaded["ticks"], .99) / pct(base["ticks"], .99),
        "fanout_p50_ms": pct(lat, .5) * 1e3, "fanout_p99_ms": pct(lat, .99) * 1e3, "fanout_messages": len(lat),
        "readers": loaded.get("readers", 0), "readers_complete": loaded.get("readers_complete", 0),
        "candles_per_reader_min": loaded.get("candles_per_reader_min", 0),
        "candles_per_reader_max": loaded.get("candles_per_reader_max", 0),
        "slow_disconnects": loaded["slow_disconnects"], "clients_left": loaded["clients"],
        "candles_processed": loaded["candles_processed"], "healthz_status": loaded["healthz_status"],
        "ignored_inputs": loaded["ignored_inputs"], "hostile_outcomes": loaded.get("hostile", {}),
        "connect_wait_s": loaded["connect_wait_s"], "clients_at_start": loaded["clients_at_start"],
        "rounds": args.rounds,
        "engine_p99_us_per_round_no_clients": [pct(run["latencies_engine"], .99) * 1e6 for run in bases],
        "engine_p99_us_per_round_clients": [pct(run["latencies_engine"], .99) * 1e6 for run in loads], "clients_priority": args.clients_priority, "fanout_cpu_share": loaded["fanout_cpu_share"],
        "clients_cpu_share": loaded["clients_cpu_share"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--silent", type=int, default=100)
    parser.add_argument("--hostile", type=int, default=50, help="misbehaving clients (part of --clients)")
    parser.add_argument("--candles", type=int, default=3300, help="per run, the first 300 not measured")
    parser.add_argument("--rate", type=float, default=100.0, help="candles per second")
    parser.add_argument("--clients-priority", choices=("idle", "low", "normal"), default="idle",
                        help="CPU priority of the client process: on one small machine, idle stands in for the "
                             "clients' own machines; normal makes them compete with the worker as equals")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each condition, pooled")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    _raise_fd_limit()
    bases: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    for round_no in range(args.rounds):  # alternate the order, so drift on a shared machine cancels out
        order = ("base", "loaded") if round_no % 2 == 0 else ("loaded", "base")
        for condition in order:
            if condition == "base":
                bases.append(asyncio.run(run_worker(0, 0, args.candles, args.rate)))
            else:
                loads.append(asyncio.run(run_worker(args.clients, args.silent, args.candles, args.rate,
                                                    args.hostile, args.clients_priority)))
        base_p99, loaded_p99 = (pct(runs[-1]["latencies_engine"], .99) for runs in (bases, loads))
        print(f"round {round_no + 1}/{args.rounds}: engine p99 no clients {base_p99 * 1e6:.0f} us, with clients "
              f"{loaded_p99 * 1e6:.0f} us, ratio {loaded_p99 / base_p99:.3f}", file=sys.stderr)
    base, loaded = merge_runs(bases), merge_runs(loads)
    summary = summarize(bases, loads, args)
    label = f"{args.clients} clients ({args.silent} silent, {args.hostile} hostile)"
    for name, r in (("no clients", base), (label, loaded)):
        t, lat = r["ticks"], r["latencies_engine"]
        print(f"{name}: engine candle latency (released -> decision persisted) p50 {pct(lat, .5) * 1e6:.1f} us  "
              f"p99 {pct(lat, .99) * 1e6:.1f} us; tick (processing -> persisted) p50 {pct(t, .5) * 1e6:.1f} us  "
              f"p99 {pct(t, .99) * 1e6:.1f} us  (n={len(lat)}, {args.rounds} rounds pooled)")
    print(f"fan-out latency (flush -> client, candle messages): p50 {summary['fanout_p50_ms']:.1f} ms  "
          f"p99 {summary['fanout_p99_ms']:.1f} ms  (n={summary['fanout_messages']})")
    print(f"readers that got the last candle: {summary['readers_complete']}/{summary['readers']}; "
          f"hostile outcomes: {summary['hostile_outcomes']}")
    print(f"slow clients disconnected: {loaded['slow_disconnects']}, clients left: {loaded['clients']}")
    print(f"CPU (share of one core): fan-out process {summary['fanout_cpu_share']:.2f}, "
          f"client process {summary['clients_cpu_share']:.2f}")
    print(f"engine p99 ratio with/without clients: {summary['engine_p99_ratio']:.3f} "
          f"(tick p99 ratio {summary['tick_p99_ratio']:.3f})")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
