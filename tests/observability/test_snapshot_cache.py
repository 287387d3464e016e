"""The snapshot a new WebSocket client receives is built once per engine position (the seed's feature cache),
and it is consistent with the events that follow it."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from .helpers import ScriptedSource, Worker, settings_for, wait_for


async def test_clients_connecting_between_candles_share_one_snapshot(tmp_path):
    source = ScriptedSource(live=True, now_aligned=200)
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    feed = worker.obs.feed
    engine = worker.runner.engine
    try:
        source.release(50)
        await wait_for(lambda: engine.items >= 50)
        async def first_message() -> dict:
            async with connect(worker.ws) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 5))

        snapshots = await asyncio.gather(*(first_message() for _ in range(20)))
        assert all(s["type"] == "snapshot" for s in snapshots)
        assert len({json.dumps(s["data"], sort_keys=True) for s in snapshots}) == 1
        await wait_for(lambda: feed.stat("snapshot_hits") + feed.stat("snapshot_misses") == 20)
        assert (feed.stat("snapshot_misses"), feed.stat("snapshot_hits")) == (1, 19)
        assert "sma_10" in snapshots[0]["data"]["features"]
        assert worker.obs.cache_hit_ratio() == 0.95
        status, metrics = await worker.get("/metrics")
        assert status == 200 and 'papertrader_feature_cache_hit_ratio{symbol="BTC-EUR"} 0.95' in metrics
        source.release(1)
        await wait_for(lambda: engine.items >= 51)
        later = await first_message()
        await wait_for(lambda: feed.stat("snapshot_misses") == 2)  # the engine moved: a new snapshot
        assert later["data"]["summary"]["candles"] > snapshots[0]["data"]["summary"]["candles"]
    finally:
        await worker.stop()


async def test_a_client_joining_later_gets_the_engines_current_state_without_asking_the_engine(tmp_path):
    """While clients are connected, the fan-out process keeps the snapshot current from the stream: a client that
    joins after hundreds of candles and several trades sees exactly the engine's state, and the engine built one
    snapshot in all (for the first client)."""
    source = ScriptedSource(live=True, now_aligned=700)
    worker = await Worker(settings_for(tmp_path / "w", HEALTH_CHECK_INTERVAL=1), source).start()
    feed, engine = worker.obs.feed, worker.runner.engine
    try:
        async with connect(worker.ws) as first:
            assert json.loads(await asyncio.wait_for(first.recv(), 5))["type"] == "snapshot"
            for _ in range(700):
                source.release(1)
            await wait_for(lambda: engine.items >= 700)
            await asyncio.sleep(0.3)  # the last flush reaches the fan-out process
            assert engine.portfolio.fills >= 2
            async with connect(worker.ws) as late:
                snapshot = json.loads(await asyncio.wait_for(late.recv(), 5))
            expected = json.loads(json.dumps(feed.snapshot_data(), default=str))
            for key in ("candle", "portfolio", "recent_trades", "features", "summary"):
                assert snapshot["data"][key] == expected[key], key
            assert snapshot["data"]["recent_trades"][-1]["position_id"] == expected["recent_trades"][-1]["position_id"]
            assert feed.stat("snapshots_received") == 1
    finally:
        await worker.stop()


async def test_a_snapshot_with_an_old_health_report_is_not_handed_out(tmp_path):
    """In a quiet (or stalled) market the fan-out's copy gets no news; once its health report is older than
    HEALTH_MAX_AGE_SECONDS, a new client gets a full snapshot from the worker, with current health."""
    from papertrader.feed.snapshot_state import HEALTH_MAX_AGE_SECONDS

    source = ScriptedSource(live=True, now_aligned=50)
    worker = await Worker(settings_for(tmp_path / "w"), source).start()  # health published every 300 s
    feed = worker.obs.feed
    try:
        async with connect(worker.ws) as first:
            await asyncio.wait_for(first.recv(), 5)
            async with connect(worker.ws) as second:  # right away: served from the fan-out's copy
                await asyncio.wait_for(second.recv(), 5)
            await wait_for(lambda: feed.stat("clients") == 1)
            assert feed.stat("snapshots_received") == 1
            await asyncio.sleep(HEALTH_MAX_AGE_SECONDS + 0.3)
            async with connect(worker.ws) as late:
                snapshot = json.loads(await asyncio.wait_for(late.recv(), 5))
            await wait_for(lambda: feed.stat("snapshots_received") == 2)
            detail = snapshot["data"]["health"]["components"]["pipeline"]["detail"]  # "last item N s ago"
            assert float(detail.split()[2]) >= HEALTH_MAX_AGE_SECONDS, detail  # today's health, not the old one
    finally:
        await worker.stop()
