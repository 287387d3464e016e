"""The snapshot a new WebSocket client receives is built once per engine position (the seed's feature cache)."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from .helpers import ScriptedSource, Worker, settings_for, wait_for


async def test_clients_connecting_between_candles_share_one_snapshot(tmp_path):
    source = ScriptedSource(live=True, now_aligned=200)
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    cache = worker.obs.feed.cache
    engine = worker.obs.runner.engine
    try:
        source.release(50)
        await wait_for(lambda: engine.items >= 50)
        async def first_message() -> dict:
            async with connect(worker.ws) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 5))

        snapshots = await asyncio.gather(*(first_message() for _ in range(20)))
        assert all(s["type"] == "snapshot" for s in snapshots)
        assert len({json.dumps(s["data"], sort_keys=True) for s in snapshots}) == 1
        assert (cache.misses, cache.hits) == (1, 19)
        assert "sma_10" in snapshots[0]["data"]["features"]
        assert worker.obs.cache_hit_ratio() == 0.95
        status, metrics = await worker.get("/metrics")
        assert status == 200 and 'papertrader_feature_cache_hit_ratio{symbol="BTC-EUR"} 0.95' in metrics
        source.release(1)
        await wait_for(lambda: engine.items >= 51)
        later = await first_message()
        assert cache.misses == 2  # the engine moved: a new snapshot
        assert later["data"]["summary"]["candles"] > snapshots[0]["data"]["summary"]["candles"]
    finally:
        await worker.stop()
