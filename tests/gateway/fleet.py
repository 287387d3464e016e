"""A fleet of real worker processes against the fake exchange, straight or through a real gateway process.

Workers get the environment and config file the operator renders for them (children.render_symbol), with the
paths and ports made local. The fake's clock is paused until every worker has warmed up and connected, so each
fleet sees the same candles whatever the machine's load. Used by test_fleet.py and benchmarks/gateway_fanout.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from papertrader.market.candle import Candle, interval_ms
from papertrader.market.fake_exchange import FakeBitvavo
from papertrader.market.gateway.server import Gateway
from papertrader.market.sources.synthetic import SyntheticSource
from papertrader_operator import settings as op
from papertrader_operator.children import render_symbol
from papertrader_operator.crd import default_spec

SPEED = 1500.0  # a 1m bar every 40 ms
MAX_CANDLES = {"1m": 200, "5m": 60, "15m": 20}
Plan = list[tuple[str, str]]  # (market, interval) of each worker
START_MS = 1_704_067_200_000
HISTORY = {"1m": 300, "5m": 100, "15m": 40}
FAST_CONFIG = {"HTTP_HOST": "127.0.0.1", "API_TIMEOUT_SECONDS": 3.0, "WS_STALE_SECONDS": 5.0,
               "RECONNECT_INITIAL_BACKOFF_SECONDS": 0.05, "RECONNECT_MAX_BACKOFF_SECONDS": 0.5,
               "CLOCK_SYNC_INTERVAL_SECONDS": 0.5, "CANDLE_CLOSE_GRACE_SECONDS": 0.0,
               "PROGRESS_INTERVAL_SECONDS": 60.0}


def origin_ms() -> int:
    return START_MS + HISTORY["1m"] * 60_000


def feed_candles(symbol_index: int, interval: str, streamed: int) -> list[Candle]:
    step = interval_ms(interval)
    source = SyntheticSource(100 + symbol_index * 7 + step // 60_000, step, origin_ms() - HISTORY[interval] * step)
    return [source._next_candle() for _ in range(HISTORY[interval] + streamed)]


async def gateway_ready(gateway: Gateway, timeout: float = 10.0) -> None:
    """Until an in-process gateway accepts clients (upstream connected, clock synchronised twice)."""
    deadline = time.monotonic() + timeout
    while not gateway.ready():
        assert time.monotonic() < deadline, "the gateway did not get ready"
        await asyncio.sleep(0.01)


def plan(symbols: int, intervals: list[str], workers: int) -> Plan:
    """``workers`` workers spread round-robin over ``symbols`` x ``intervals`` pairs."""
    pairs = [(f"S{i}-EUR", iv) for i in range(symbols) for iv in intervals]
    return [pairs[i % len(pairs)] for i in range(workers)]


def make_fake(pairs: set[tuple[str, str]], max_candles: dict[str, int]) -> FakeBitvavo:
    """One paused fake exchange streaming every pair for twice the market time the slowest worker needs (so no
    pair's stream ends while another's workers still run, or while restarted workers are coming back up)."""
    span_ms = 2 * max(max_candles[iv] * interval_ms(iv) for _m, iv in pairs)
    feeds = {(m, iv): feed_candles(int(m[1:].split("-")[0]), iv, span_ms // interval_ms(iv))
             for m, iv in sorted(pairs)}
    (market, interval), *_rest = sorted(feeds)
    primary = feeds.pop((market, interval))
    return FakeBitvavo(primary, market=market, interval=interval, start_index=HISTORY[interval], speed=SPEED,
                       extra_feeds=feeds, paused=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "BITVAVO_"))}
    env.update(extra or {})
    return env


def start_gateway(port: int, rest_url: str, ws_url: str, log: Path, **settings: Any) -> subprocess.Popen[bytes]:
    env = child_env({"BITVAVO_REST_URL": rest_url, "BITVAVO_WS_URL": ws_url, "GATEWAY_HOST": "127.0.0.1",
                     "GATEWAY_PORT": str(port), "GATEWAY_CLOCK_SYNC_SECONDS": "0.5",
                     **{k.upper(): str(v) for k, v in settings.items()}})
    process = subprocess.Popen([sys.executable, "-m", "papertrader.cli", "market-gateway"], env=env,
                               stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return process
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"gateway did not listen: {log.read_text()[-2000:]}")


def worker_command(trader: str, symbol: str, interval: str, state_dir: Path, extra_config: dict[str, Any],
                   gateway_url: str = "") -> tuple[list[str], dict[str, str]]:
    """`papertrader run` as the operator's StatefulSet would start it, with local paths and free ports."""
    spec = default_spec({"symbols": [symbol], "source": "bitvavo", "candleInterval": interval,
                         "extraConfig": {**FAST_CONFIG, **extra_config}})
    configmap, _service, statefulset = render_symbol({"metadata": {"name": trader, "uid": "u"}, "spec": spec},
                                                     spec, symbol, gateway_url=gateway_url)
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir.parent / f"{state_dir.name}.config.yaml"
    config.write_text(configmap["data"][op.CONFIG_FILE], encoding="utf-8")
    args = [str(a) for a in container["args"]]
    local = {op.STATE_DIR: str(state_dir), f"{op.CONFIG_DIR}/{op.CONFIG_FILE}": str(config),
             str(op.HTTP_PORT): "0", str(op.WS_PORT): "0"}
    args = [local.get(a, a) for a in args]
    env = child_env({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return [sys.executable, "-m", "papertrader.cli", *args], env


#: Workers run at a lower CPU priority than the fake exchange and the gateway: in a cluster they run on other
#: machines, and on this small one fifty of them starting at once would otherwise starve the exchange's clock-driven
#: stream (it falls behind its own clock, which no real exchange does).
WORKER_NICENESS = 19


def start_worker(command: tuple[list[str], dict[str, str]], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command[0], env=command[1], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            preexec_fn=lambda: os.nice(WORKER_NICENESS))


def processed_candles(state_dir: Path) -> tuple[bytes, bytes]:
    """Open times and closes of every candle the worker accepted, in order (the ledger's ``prices`` table: packed
    arrays, one row per committed batch, so batch boundaries are joined away)."""
    db = sqlite3.connect(f"file:{state_dir / 'state.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT ts, close FROM prices ORDER BY id").fetchall()
    finally:
        db.close()
    return b"".join(ts for ts, _ in rows), b"".join(close for _, close in rows)


def log_text(state_dir: Path) -> str:
    path = state_dir / "logs" / "enhanced_paper_trader.log"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def gateway_metrics(port: int) -> dict[str, float]:
    """The gateway's /metrics, each sample name summed over its labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


@dataclass
class FleetRun:
    """One fleet's processes: the workers, the fake exchange and (optionally) the gateway in front of it."""

    tmp: Path
    name: str
    fake: FakeBitvavo
    commands: list[tuple[list[str], dict[str, str]]]
    dirs: list[Path]
    gateway_port: int = 0
    gateway_settings: dict[str, Any] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    gateway: subprocess.Popen[bytes] | None = None

    def start_workers(self) -> None:
        self.procs = [start_worker(command, self.tmp / f"{self.name}-{i}.out")
                      for i, command in enumerate(self.commands)]

    def kill_workers(self) -> None:
        """SIGKILL every running worker (no clean shutdown) and reap it."""
        for process in self.procs:
            if process.poll() is None:
                process.kill()
        for process in self.procs:
            process.wait()

    def start_gateway(self) -> None:
        self.gateway = start_gateway(self.gateway_port, self.fake.rest_url, self.fake.ws_url,
                                     self.tmp / f"{self.name}-gateway.log", **self.gateway_settings)

    def restart_gateway(self) -> None:
        """SIGKILL the gateway and start a new one on the same port (empty cache, new upstream connection)."""
        assert self.gateway is not None
        self.gateway.kill()
        self.gateway.wait()
        self.start_gateway()

    async def wait_gateway_ready(self, timeout: float = 30.0) -> None:
        """Until the gateway's /readyz answers 200 (upstream connected, clock synchronised)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.gateway_port}/readyz", timeout=2):
                    return
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name}: the gateway was not ready within {timeout} s")

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            self.gateway.terminate()
            self.gateway.wait(10)

    def count_logged(self, marker: str) -> list[int]:
        return [log_text(state).count(marker) for state in self.dirs]

    async def wait_logged_all(self, marker: str, counts: list[int] | None = None, timeout: float = 60.0) -> None:
        """Until every worker's log holds ``marker`` (``counts[i]`` times; default once)."""
        wanted = counts or [1] * len(self.dirs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(n >= w for n, w in zip(self.count_logged(marker), wanted, strict=True)):
                return
            await asyncio.sleep(0.25)  # reading every log is work this process (the fake's) must not drown in
        late = [i for i, (n, w) in enumerate(zip(self.count_logged(marker), wanted, strict=True)) if n < w]
        raise AssertionError(f"{self.name}: workers {late} did not log {marker!r} within {timeout} s")

    def tail(self, i: int) -> str:
        return (self.tmp / f"{self.name}-{i}.out").read_text(errors="replace")[-1500:]


Disturbance = Callable[[FleetRun], Awaitable[dict[str, Any]]]


async def run_fleet(tmp: Path, plan_: Plan, via_gateway: bool, disturb: Disturbance | None = None,
                    gateway_settings: dict[str, Any] | None = None, worker_config: dict[str, Any] | None = None,
                    max_candles: dict[str, int] = MAX_CANDLES, timeout: float = 180.0) -> dict[str, Any]:
    """Run ``plan_`` to the end (every worker stops after ``max_candles`` of its interval and must exit 0).

    ``disturb`` runs once the stream has started (it may kill and restart workers or the gateway) and returns
    figures merged into the result. ``worker_config`` goes into every worker's extraConfig. The result: each
    worker's trades.csv bytes and accepted candles, the fake's WebSocket connections,
    REST weight (all and during warm-up) and requests, the gateway's metrics at the end."""
    name = "gw" if via_gateway else "direct"
    tmp.mkdir(parents=True, exist_ok=True)
    fake = await make_fake(set(plan_), max_candles).start()
    extra: dict[str, Any] = {} if via_gateway else {"BITVAVO_REST_URL": fake.rest_url, "BITVAVO_WS_URL": fake.ws_url}
    port = free_port() if via_gateway else 0
    url = f"http://127.0.0.1:{port}" if via_gateway else ""
    commands, dirs = [], []
    for i, (market, interval) in enumerate(plan_):
        state = tmp / f"{name}-{i}"
        dirs.append(state)
        command = worker_command(f"t{i}", market, interval, state,
                                 {**extra, **(worker_config or {}), "MAX_CANDLES": max_candles[interval]}, url)
        if via_gateway:
            assert command[1]["BITVAVO_REST_URL"] == f"{url}/v2"  # the operator's env, not a hand-written one
        commands.append(command)
    run = FleetRun(tmp, name, fake, commands, dirs, port, dict(gateway_settings or {}))
    try:
        if via_gateway:
            run.start_gateway()
        run.start_workers()
        await run.wait_logged_all("stream connected to", timeout=90.0)
        warmup_weight = fake.weight_spent
        fake.resume()
        figures = await disturb(run) if disturb is not None else {}
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in run.procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        for p in run.procs:
            if p.poll() is None:
                p.kill()
        codes = [p.wait() for p in run.procs]
        assert codes == [0] * len(codes), [(i, c, run.tail(i)) for i, c in enumerate(codes) if c]
        metrics = gateway_metrics(port) if via_gateway else {}
        return {"trades": [(d / "logs" / "trades.csv").read_bytes() for d in dirs],
                "candles": [processed_candles(d) for d in dirs],
                "ws_connections": fake.ws_connections, "weight": fake.weight_spent, "warmup_weight": warmup_weight,
                "requests": len(fake.requests), "gateway_metrics": metrics, **figures}
    finally:
        run.kill_workers()
        run.stop_gateway()
        await fake.stop()
