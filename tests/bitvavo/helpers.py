"""Shared helpers for the Bitvavo tests: seeded candles, worker settings, in-process runs, file comparisons."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

from papertrader.cli import build_worker
from papertrader.config import Settings, load_settings
from papertrader.engine.runner import build_breakers
from papertrader.market.candle import Candle
from papertrader.market.candle_file import format_candle
from papertrader.market.sources.bitvavo import BitvavoSource
from papertrader.market.sources.synthetic import SyntheticSource

START_MS = 1_704_067_200_000


def synthetic_candles(count: int, seed: int = 7) -> list[Candle]:
    """Seeded candles without an event loop (usable inside async tests)."""
    source = SyntheticSource(seed, 60_000, START_MS)
    return [source._next_candle() for _ in range(count)]


def write_candles(path: Path, candles: list[Candle]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("timestamp_ms,open,high,low,close,volume\n")
        handle.writelines(format_candle(candle) for candle in candles)
    return path


def live_flags(fake: Any, state_dir: Path, **extra: Any) -> dict[str, Any]:
    flags: dict[str, Any] = {
        "source": "bitvavo", "symbol": "BTC-EUR", "state_dir": state_dir,
        "bitvavo_rest_url": fake.rest_url, "bitvavo_ws_url": fake.ws_url,
        "api_timeout_seconds": 2.0, "ws_stale_seconds": 1.0, "reconnect_initial_backoff_seconds": 0.05,
        "reconnect_max_backoff_seconds": 0.5, "clock_sync_interval_seconds": 0.5,
        "candle_close_grace_seconds": 0.0, "progress_interval_seconds": 60.0,
        "http_host": "127.0.0.1", "http_port": 0, "ws_port": 0,
    }
    flags.update(extra)
    return flags


async def run_worker(settings: Settings, timeout: float = 60.0) -> dict[str, Any]:
    runner, _ = build_worker(settings, console_logs=False)
    summary = await asyncio.wait_for(runner.run(), timeout)
    summary["source_status"] = runner.source.status()
    return summary


def bitvavo_source(s: Settings) -> BitvavoSource:
    """A live source wired from ``s`` as the runner wires it (its exchange group, market and breaker)."""
    return BitvavoSource(s.exchange, s.symbol, s.candle_interval, seed=s.seed,
                         breaker=build_breakers(s.breakers).breakers["data_collection"])


def settings(**flags: Any) -> Settings:
    flags.setdefault("http_host", "127.0.0.1")
    flags.setdefault("http_port", 0)
    flags.setdefault("ws_port", 0)
    return load_settings(flags)


def worker_log(state_dir: Path) -> str:
    """The worker's main log (the ``papertrader`` logger does not propagate to pytest's caplog)."""
    return (state_dir / "logs" / "enhanced_paper_trader.log").read_text(encoding="utf-8")


def read_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def recorded_candles(path: Path) -> list[Candle]:
    rows = read_rows(path)[1:]
    return [Candle(int(r[0]), *(float(v) for v in r[1:6])) for r in rows]
