"""A fleet of real worker processes against the fake exchange, straight or through a real gateway process.

Workers get the environment and config file the operator renders for them (children.render_symbol), with the
paths and ports made local. Used by test_fleet.py and benchmarks/gateway_fanout.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from papertrader.market.candle import Candle, interval_ms
from papertrader.market.sources.synthetic import SyntheticSource
from papertrader_operator import settings as op
from papertrader_operator.children import render_symbol
from papertrader_operator.crd import default_spec

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


def start_worker(command: tuple[list[str], dict[str, str]], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command[0], env=command[1], stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def wait_logged(state_dir: Path, marker: str, count: int = 1, timeout: float = 60.0) -> None:
    path = state_dir / "logs" / "enhanced_paper_trader.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(encoding="utf-8", errors="replace").count(marker) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{state_dir}: {marker!r} not logged within {timeout} s")
