"""End-to-end: a worker on --source bitvavo against the fake exchange (127.0.0.1 only).

The central property: the live run consumes exactly a contiguous slice of the exchange's candles (warm-up history
then closed streamed bars, each once, in order), its --record file is that slice, and --source replay on the slice
gives a byte-identical trades.csv. The fault tests check the same property under disconnects, stalls, malformed
frames, duplicates, out-of-order updates, bad prices, gaps and 429 storms.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from papertrader.market.candle import Candle
from papertrader.market.candle_file import format_candle
from papertrader.market.fake_exchange import FakeBitvavo, FakeScript

from .helpers import (
    bitvavo_source,
    live_flags,
    recorded_candles,
    run_worker,
    settings,
    synthetic_candles,
    worker_log,
    write_candles,
)

FAST = 12_000.0  # virtual ms per real ms: a 1-minute candle every 5 ms
WARMUP = 31  # sma-cross 10/30 default warm-up


def assert_contiguous_slice(recorded: list[Candle], exchange: list[Candle]) -> int:
    """The recording is exchange[i : i + len] for some i (rows compared as text, so NaN == NaN). Returns i."""
    index = {c.ts: i for i, c in enumerate(exchange)}
    first = index[recorded[0].ts]
    expected = [format_candle(c) for c in exchange[first:first + len(recorded)]]
    assert [format_candle(c) for c in recorded] == expected
    return first


async def live_then_replay(fake: FakeBitvavo, tmp: Path, max_candles: int, **extra: Any) -> dict[str, Any]:
    record = tmp / "record.csv"
    live = await run_worker(settings(**live_flags(fake, tmp / "live", max_candles=max_candles, record=record,
                                                  **extra)))
    recorded = recorded_candles(record)
    assert len(recorded) == max_candles
    first = assert_contiguous_slice(recorded, fake.candles)
    # the replay reads a file written from the exchange's own candles, not the recording
    replay_file = write_candles(tmp / "slice.csv", fake.candles[first:first + max_candles])
    if (tmp / "record.csv.market.json").exists():
        (tmp / "slice.csv.market.json").write_bytes((tmp / "record.csv.market.json").read_bytes())
    replay = await run_worker(settings(source="replay", replay_file=replay_file, state_dir=tmp / "replay",
                                       symbol="BTC-EUR"))
    live_trades = (tmp / "live" / "logs" / "trades.csv").read_bytes()
    assert live_trades == (tmp / "replay" / "logs" / "trades.csv").read_bytes()
    assert live["trades"] == replay["trades"] and live["candles"] == replay["candles"]
    live["first_index"] = first
    return live


async def test_live_replay_parity(tmp_path: Path) -> None:
    async with FakeBitvavo(synthetic_candles(8000), start_index=300, speed=FAST) as fake:  # outlasts the run
        live = await live_then_replay(fake, tmp_path, 700)
    # and the recording itself replays to the same trades, byte for byte
    await run_worker(settings(source="replay", replay_file=tmp_path / "record.csv", symbol="BTC-EUR",
                              state_dir=tmp_path / "replay-recording"))
    assert ((tmp_path / "replay-recording" / "logs" / "trades.csv").read_bytes()
            == (tmp_path / "live" / "logs" / "trades.csv").read_bytes())
    status = live["source_status"]
    assert live["trades"] > 0, "the parity check needs trades"
    assert status["backfill"]["candles"] == WARMUP
    assert status["stream_closed_candles"] > 500
    assert status["breaker"] == "CLOSED" and status["disconnects"] == 0
    assert status["clock_rate"] > 5_000  # it measured the fast virtual clock


async def test_fresh_warmup_is_exactly_the_last_closed_candles(tmp_path: Path) -> None:
    candles = synthetic_candles(200)
    async with FakeBitvavo(candles, start_index=120, speed=1.0) as fake:  # real time: now = open of bar 120
        source = bitvavo_source(settings(**live_flags(fake, tmp_path)))
        await source.start(None, 50)
        try:
            batch = await source.next_batch(1000)
        finally:
            await source.close()
    assert batch == candles[70:120]
    assert source.cursor()["last_ts"] == candles[119].ts


async def test_restart_backfills_everything_after_the_cursor(tmp_path: Path) -> None:
    candles = synthetic_candles(200)
    async with FakeBitvavo(candles, start_index=150, speed=1.0) as fake:
        source = bitvavo_source(settings(**live_flags(fake, tmp_path, exchange_market_rules=True)))
        source.restore({"last_ts": candles[20].ts, "market": None})
        await source.start(None, 50)
        try:
            batch = await source.next_batch(1000)
        finally:
            await source.close()
    assert batch == candles[21:150]


async def test_backfill_pages_and_speed(tmp_path: Path) -> None:
    candles = synthetic_candles(6000)
    async with FakeBitvavo(candles, start_index=5800, speed=1.0) as fake:
        source = bitvavo_source(settings(**live_flags(fake, tmp_path, exchange_market_rules=True)))
        source.restore({"last_ts": candles[0].ts, "market": None})
        await source.start(None, 31)
        try:
            batch = await source.next_batch(10_000)
        finally:
            await source.close()
    assert batch == candles[1:5800]
    info = source.status()["backfill"]
    assert info["pages"] == 5  # 5799 candles in windows of 1439
    print(f"\nBACKFILL {info}")


async def test_faults_are_survived_and_nothing_is_lost(tmp_path: Path) -> None:
    start = 300
    script = FakeScript(drop_at={start + 100, start + 250}, stall_at={start + 400: 2.0},
                        malformed_at={start + 150}, duplicate_at={start + 160}, out_of_order_at={start + 170},
                        nan_at={start + 180}, negative_at={start + 190}, gap_at={start + 200: 3})
    async with FakeBitvavo(synthetic_candles(1400), start_index=start, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, 650, ws_stale_seconds=0.5)
    status = live["source_status"]
    assert status["disconnects"] >= 3 and status["stale_reconnects"] >= 1
    assert status["malformed_frames"] >= 1 and status["malformed_rows"] >= 1
    assert status["late_updates"] >= 2  # the duplicate and the out-of-order update
    assert live["rejected_candles"] >= 2  # NaN and negative prices: judged and rejected by the gate
    assert live["gaps"] >= 1
    # reconnect bound: initial backoff 0.05 s (x0.5-1 jitter) plus the handshake
    assert status["reconnect_seconds_last"] is not None and status["reconnect_seconds_last"] < 1.0
    print(f"\nRECONNECT seconds={status['reconnect_seconds']}")
    log = worker_log(tmp_path / "live")
    for line in ("stream stale: no message for 0.5 s", "malformed stream frame skipped", "stream reconnected after",
                 "candle rejected", "gap-fill from REST", "update of already closed bar"):
        assert line in log, line


async def test_quiet_market_closes_by_exchange_time_and_rest(tmp_path: Path) -> None:
    """The last bar never gets a successor on the stream: it is closed once the exchange clock passes its end
    plus the grace and REST confirms it."""
    candles = synthetic_candles(260)
    async with FakeBitvavo(candles, start_index=200, speed=600.0) as fake:  # a bar every 100 ms
        source = bitvavo_source(settings(**live_flags(fake, tmp_path, candle_close_grace_seconds=5.0,
                                                     ws_stale_seconds=5.0)))
        await source.start(None, WARMUP)
        got: list[Candle] = []
        try:
            while not got or got[-1].ts < candles[-1].ts:
                got += await asyncio.wait_for(source.next_batch(100), 15)  # type: ignore[arg-type]  # a live source never returns None
        finally:
            await source.close()
    assert got[-1] == candles[-1]  # the final bar, closed without a newer bar
    assert_contiguous_slice(got, candles)
    assert source.status()["rest_closed_candles"] >= 1


async def test_market_rules_feed_the_broker_and_the_recording_replays(tmp_path: Path) -> None:
    async with FakeBitvavo(synthetic_candles(1200), start_index=300, speed=FAST, tick_size="5",
                           min_order_quote="10", quantity_decimals=4) as fake:
        live = await live_then_replay(fake, tmp_path, 600, exchange_market_rules=True)
    assert live["trades"] > 0
    rows = (tmp_path / "live" / "logs" / "trades.csv").read_text().splitlines()[1:]
    prices = [Decimal(row.split(",")[4]) for row in rows]
    assert all(price % 5 == 0 for price in prices), prices[:5]
    assert all(len(row.split(",")[3].split(".")[-1]) <= 4 for row in rows)
    assert (tmp_path / "record.csv.market.json").exists()


async def test_by_default_an_exchange_tick_does_not_change_fills(tmp_path: Path) -> None:
    """The default keeps live fills equal to a replay of the same candles, whatever /markets says."""
    async with FakeBitvavo(synthetic_candles(1200), start_index=300, speed=FAST, tick_size="5") as fake:
        live = await live_then_replay(fake, tmp_path, 600)
    assert live["trades"] > 0
    assert not (tmp_path / "record.csv.market.json").exists()


async def test_no_markets_endpoint_uses_offline_defaults(tmp_path: Path) -> None:
    async with FakeBitvavo(synthetic_candles(900), start_index=300, speed=FAST, serve_markets=False) as fake:
        live = await live_then_replay(fake, tmp_path, 400)
    assert live["source_status"]["market"] is None
    assert not (tmp_path / "record.csv.market.json").exists()


async def test_rest_errors_open_the_data_breaker_and_it_recovers(tmp_path: Path) -> None:
    script = FakeScript(rest_errors=6)
    async with FakeBitvavo(synthetic_candles(900), start_index=300, speed=FAST / 4, script=script) as fake:
        summary = await run_worker(settings(**live_flags(
            fake, tmp_path / "live", max_candles=400, data_collection_failure_threshold=5,
            data_collection_recovery_timeout=0.3, breaker_success_threshold=1)))
    status = summary["source_status"]
    assert status["rest_failures"] >= 6
    assert status["breaker"] == "CLOSED"  # opened on the 5th failure, closed again after recovery
    assert summary["candles"] == 400


async def test_429_storm_waits_until_resetat(tmp_path: Path) -> None:
    """A storm during a reconnect: gap-fill and clock sync get 429 and wait for resetat instead of hammering."""
    start = 300
    storm_ms = int(1.5 * FAST / 2 * 1000)  # 1.5 real seconds on the virtual clock
    script = FakeScript(storm_at={start + 150: storm_ms}, drop_at={start + 150})
    async with FakeBitvavo(synthetic_candles(1400), start_index=start, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, 700)
        storm = [r for r in fake.requests if r[2] == 429]
    assert 1 <= len(storm) <= 3, storm  # one per caller (gap-fill, clock re-sync), then a wait until resetat
    assert live["source_status"]["rate_limited_responses"] == len(storm)
    assert "rate limited (HTTP 429, errorCode 110), waiting" in worker_log(tmp_path / "live")
    print(f"\nSTORM 429 answers={len(storm)} total requests={len(fake.requests)}")


async def test_restart_keeps_the_market_rules_the_ledger_was_built_with(tmp_path: Path) -> None:
    candles = synthetic_candles(100)
    stored = {"market": "BTC-EUR", "status": "trading", "tick_size": "1", "quantity_decimals": 6,
              "min_order_quote": "5", "min_order_base": "0.0001"}
    async with FakeBitvavo(candles, start_index=60, speed=1.0, tick_size="0.5") as fake:
        source = bitvavo_source(settings(**live_flags(fake, tmp_path, exchange_market_rules=True)))
        source.restore({"last_ts": candles[50].ts, "market": stored})
        await source.start(None, 31)
        await source.close()
        fresh = bitvavo_source(settings(**live_flags(fake, tmp_path, exchange_market_rules=True)))
        await fresh.start(None, 31)
        await fresh.close()
    rules = source.market_rules()
    assert rules is not None and rules.tick_size == Decimal(1) and rules.quantity_decimals == 6
    assert source.cursor()["market"] == stored
    fresh_rules = fresh.market_rules()
    assert fresh_rules is not None and fresh_rules.tick_size == Decimal("0.5")
