"""Downtime: a live worker is SIGKILLed mid-stream while the exchange keeps producing candles; restarted with the
same arguments it backfills what it missed from REST, then goes live again. Its recording is one contiguous slice
of the exchange's candles and its trades.csv equals that of an uninterrupted run on the same candles (the replay
of that slice; test_live proves live == replay for an uninterrupted worker)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from papertrader.market.fake_exchange import FakeBitvavo

from .helpers import (
    recorded_candles,
    run_worker,
    settings,
    synthetic_candles,
    worker_log,
    write_candles,
)
from .test_live import assert_contiguous_slice

MAX_CANDLES = 900


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle) - 1
    except FileNotFoundError:
        return 0


async def _spawn(fake: FakeBitvavo, state_dir: Path, record: Path) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env.update({"BITVAVO_REST_URL": fake.rest_url, "BITVAVO_WS_URL": fake.ws_url, "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": "0", "WS_PORT": "0", "WS_STALE_SECONDS": "2", "API_TIMEOUT_SECONDS": "2",
                "RECONNECT_INITIAL_BACKOFF_SECONDS": "0.05", "RECONNECT_MAX_BACKOFF_SECONDS": "0.5",
                "CANDLE_CLOSE_GRACE_SECONDS": "0", "CLOCK_SYNC_INTERVAL_SECONDS": "0.5"})
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "papertrader.cli", "run", "--source", "bitvavo", "--symbol", "BTC-EUR",
        "--state-dir", str(state_dir), "--max-candles", str(MAX_CANDLES), "--record", str(record),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def test_sigkill_mid_stream_then_backfill(tmp_path: Path) -> None:
    candles = synthetic_candles(6000)
    state_dir, record = tmp_path / "live", tmp_path / "record.csv"
    async with FakeBitvavo(candles, start_index=200, speed=6_000.0) as fake:  # a bar every 10 ms
        first = await _spawn(fake, state_dir, record)
        try:
            for _ in range(600):  # until ~300 candles are durable
                if _count_lines(record) >= 300:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("worker made no progress: " + (await first.stdout.read(4000)).decode())  # type: ignore[union-attr]  # started with stdout=PIPE
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        killed_at = _count_lines(record)
        await asyncio.sleep(1.0)  # the exchange produces ~100 more candles while the worker is down
        second = await _spawn(fake, state_dir, record)
        out, _ = await asyncio.wait_for(second.communicate(), 90)
        assert second.returncode == 0, out.decode()[-2000:]
    assert first.returncode == -signal.SIGKILL
    assert 300 <= killed_at < MAX_CANDLES
    recorded = recorded_candles(record)
    assert len(recorded) == MAX_CANDLES
    start = assert_contiguous_slice(recorded, candles)
    log = worker_log(state_dir)
    assert "restart backfill:" in log
    replay_file = write_candles(tmp_path / "slice.csv", candles[start:start + MAX_CANDLES])
    await run_worker(settings(source="replay", replay_file=replay_file, state_dir=tmp_path / "replay",
                              symbol="BTC-EUR"))
    live_trades = (state_dir / "logs" / "trades.csv").read_bytes()
    assert live_trades == (tmp_path / "replay" / "logs" / "trades.csv").read_bytes()
    assert live_trades.count(b"\n") > 2, "the comparison needs trades"
