"""The REST catch-up: a stream stall into a quiet market loses no bar.

The fake exchange closes bars while the stream sends nothing for them (a 3 s stall), and then the market goes
quiet (no more trades: the candle list ends, the exchange clock runs on). Before the catch-up a worker reconnected
on its stale timer, subscribed again and never fetched the bars that closed during the stall; its ledger fell
behind a replay of the same candles. Now the bars come from REST (after the reconnect, or on the quiet-market
timer when the connection never goes stale), and the ledger equals the replay's byte for byte.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from papertrader.config import Settings
from papertrader.market.fake_exchange import FakeBitvavo, FakeScript

from .helpers import bitvavo_source, live_flags, settings, synthetic_candles
from .test_live import WARMUP, assert_contiguous_slice, live_then_replay

START = 300
STALL_AT = 320
LAST = 326  # the market's last trade is in bar 325: bars 320..325 close during the stall, then silence
DEFAULT_STALE = Settings.model_fields["ws_stale_seconds"].default


@pytest.mark.parametrize("stale", [0.2, DEFAULT_STALE], ids=["stale-reconnect", "default-stale"])
async def test_stall_into_a_quiet_market_loses_no_bar(tmp_path: Path, stale: float) -> None:
    candles = synthetic_candles(LAST)
    script = FakeScript(stall_at={STALL_AT: 3.0})
    async with FakeBitvavo(candles, start_index=START, speed=600.0, script=script) as fake:  # a bar per 100 ms
        # the warm-up ends at bar 299 or 300 (the exchange clock runs 600x): one candle short of the last bar
        live = await live_then_replay(fake, tmp_path, WARMUP + LAST - START - 1, ws_stale_seconds=stale)
    status = live["source_status"]
    last_index = live["first_index"] + WARMUP + LAST - START - 2
    assert last_index >= LAST - 2  # every bar that closed during the stall was traded on, none lost
    assert status["rest_closed_candles"] + status["gap_filled_candles"] >= 1
    if stale < DEFAULT_STALE:
        assert status["stale_reconnects"] >= 1
    else:
        assert status["disconnects"] == 0  # no reconnect at all: the quiet-market timer fetched them
        assert status["rest_closed_candles"] >= LAST - STALL_AT - 2


async def test_a_reconnect_catches_up_before_any_newer_bar_arrives(tmp_path: Path) -> None:
    """Dropped while bars close, reconnected (after 1-2 s of backoff) into silence: the bars arrive without a
    streamed successor."""
    candles = synthetic_candles(LAST)
    script = FakeScript(drop_at={STALL_AT})
    async with FakeBitvavo(candles, start_index=START, speed=600.0, script=script) as fake:
        source = bitvavo_source(settings(**live_flags(fake, tmp_path, ws_stale_seconds=DEFAULT_STALE,
                                                     reconnect_initial_backoff_seconds=2.0,
                                                     reconnect_max_backoff_seconds=2.0)))
        await source.start(None, WARMUP)
        got: list = []
        try:
            while not got or got[-1].ts < candles[-1].ts:
                got += await asyncio.wait_for(source.next_batch(100), 15)
        finally:
            await source.close()
    assert_contiguous_slice(got, candles)
    assert got[-1] == candles[-1]
    status = source.status()
    assert status["disconnects"] >= 1 and status["rest_closed_candles"] >= 1
