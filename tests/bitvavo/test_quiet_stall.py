"""A stream stall into a quiet market: bars close while the stream sends nothing, and nothing comes after it.

The fake exchange keeps its clock and REST history running while it stops sending to the open connection; its
candle list then ends, so the stream stays quiet for good (an illiquid market: Bitvavo sends candle updates only
on trades). On the default WS_STALE_SECONDS (90 s) the watchdog does not even reconnect: the quiet-market closer
alone must fetch every bar that closed, from REST, up to the exchange clock minus the grace.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from papertrader.config import Settings
from papertrader.market.candle import Candle
from papertrader.market.fake_exchange import FakeBitvavo, FakeScript
from tests.observability.helpers import Worker, wait_for

from .helpers import (
    bitvavo_source,
    live_flags,
    recorded_candles,
    run_worker,
    settings,
    synthetic_candles,
    write_candles,
)
from .test_live import assert_contiguous_slice

DEFAULT_STALE = Settings.model_fields["ws_stale_seconds"].default
DEFAULT_GRACE = Settings.model_fields["candle_close_grace_seconds"].default
WARMUP = 31


async def test_stall_into_a_quiet_market_fetches_every_closed_bar(tmp_path: Path) -> None:
    candles = synthetic_candles(260)
    # a bar every 100 ms; the stall (3 s) begins at bar 250 and outlasts the stream (bars 250..259 play in 1 s)
    script = FakeScript(stall_at={250: 3.0})
    async with FakeBitvavo(candles, start_index=200, speed=600.0, script=script) as fake:
        source = bitvavo_source(settings(**live_flags(fake, tmp_path, ws_stale_seconds=DEFAULT_STALE,
                                                     candle_close_grace_seconds=DEFAULT_GRACE)))
        await source.start(None, WARMUP)
        got: list[Candle] = []
        try:
            while not got or got[-1].ts < candles[-1].ts:
                got += await asyncio.wait_for(source.next_batch(100), 10)  # type: ignore[arg-type]  # a live source never returns None
        finally:
            await source.close()
    assert got == candles[200 - WARMUP:]  # every bar once, in order, with its final (REST) values
    status = source.status()
    assert status["stale_reconnects"] == 0 and status["disconnects"] == 0  # no reconnect helped
    assert status["rest_closed_candles"] >= 10  # bars 250..259 came from the closer


async def test_a_worker_behind_says_so_then_catches_up_to_a_replay(tmp_path: Path) -> None:
    """During the stall REST refuses (429) too: readiness reports stale data and the last-candle metric stays at
    the bar before the stall; once REST answers, the worker catches up and its ledger equals a replay's."""
    candles = synthetic_candles(600)
    start, stall = 300, 550
    speed = 3000.0  # a bar every 20 ms: bars 550..599 play in 1 s, inside the 3 s stall
    storm_ms = int(1.5 * speed * 1000)  # REST refuses for the first 1.5 s of the stall
    script = FakeScript(stall_at={stall: 3.0}, storm_at={stall: storm_ms})
    async with FakeBitvavo(candles, start_index=start, speed=speed, script=script) as fake:
        flags = live_flags(fake, tmp_path / "live", ws_stale_seconds=DEFAULT_STALE,
                           candle_close_grace_seconds=DEFAULT_GRACE, record=tmp_path / "record.csv")
        worker = await Worker(settings(**flags)).start()
        try:
            await wait_for(lambda: fake.streamed_index >= len(fake.candles) - 1, timeout=20)
            metric = "papertrader_last_candle_timestamp_seconds{"
            _, text = await worker.get("/metrics")
            last = float(next(line for line in text.splitlines() if line.startswith(metric)).split()[-1])
            assert last <= candles[stall - 1].ts / 1000  # behind: nothing after the stall yet
            status, body = await worker.get("/readyz")
            assert status == 503 and "stale data" in body["reason"], body
            engine = worker.runner.engine
            await wait_for(lambda: engine.last_candle is not None and engine.last_candle.ts == candles[-1].ts, 20)
        finally:
            summary = await worker.stop()
    assert summary is not None
    recorded = recorded_candles(tmp_path / "record.csv")
    first = assert_contiguous_slice(recorded, candles)  # every bar once, in order, final values
    assert recorded[-1] == candles[-1]
    replay = await run_worker(settings(source="replay", symbol="BTC-EUR", state_dir=tmp_path / "replay",
                                       replay_file=write_candles(tmp_path / "slice.csv", candles[first:])))
    assert replay["candles"] == summary["candles"] == len(recorded)
    assert summary["trades"] == replay["trades"] > 0
    assert ((tmp_path / "live" / "logs" / "trades.csv").read_bytes()
            == (tmp_path / "replay" / "logs" / "trades.csv").read_bytes())
