"""Health levels, probes and control.

"Stuck" here means: the event loop is alive (the HTTP server answers) but the pipeline, working on what it has
(not waiting for market data), has consumed no item for PIPELINE_STUCK_SECONDS while the run is not finished - e.g.
a replay source whose next_batch never returns. A live source waiting through a quiet market is not stuck.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from papertrader.observability.health import LEVELS, WEIGHTS, level_for

from .helpers import ScriptedSource, Worker, settings_for, wait_for


@pytest.mark.parametrize("score,level", [(100, "excellent"), (90, "excellent"), (89.9, "good"), (75, "good"),
                                         (74.9, "fair"), (60, "fair"), (59.9, "poor"), (40, "poor"),
                                         (39.9, "critical"), (0, "critical")])
def test_seed_levels(score, level):
    assert level_for(score) == level


def test_weights_sum_to_100():
    assert sum(WEIGHTS.values()) == 100
    assert [t for t, _ in LEVELS] == [90, 75, 60, 40]


async def test_stuck_pipeline_fails_healthz_within_deadline_and_restart_resumes(tmp_path):
    settings = settings_for(tmp_path / "w", PIPELINE_STUCK_SECONDS=1.0, COMMIT_EVERY_CANDLES=50)
    source = ScriptedSource(live=False, now_aligned=250)  # a replay: it has the data, so a hang is a fault
    source.release(200)
    worker = await Worker(settings, source).start()
    await wait_for(lambda: worker.runner.engine.items >= 200)
    status, body = await worker.get("/healthz")
    assert status == 200 and body["alive"], body
    # the replay source now hangs: no more items, loop alive
    stuck_since = time.monotonic()
    while True:
        status, body = await worker.get("/healthz")
        if status == 503:
            break
        assert time.monotonic() - stuck_since < 1.0 + 1.0, "healthz did not fail within the deadline"
        await asyncio.sleep(0.05)
    failed_after = time.monotonic() - stuck_since
    assert body["pipeline_stuck"] and not body["alive"]
    assert 0.9 <= failed_after <= 2.0, failed_after
    status, health = await worker.get("/health")
    assert health["status"] == "stuck" and health["components"]["pipeline"]["score"] == 0
    # kill it (no clean stop: cancel like SIGKILL would) and start again on the same state
    worker.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker.task
    items = worker.runner.engine.items
    source2 = ScriptedSource(live=True, now_aligned=250)
    worker2 = await Worker(settings_for(tmp_path / "w", PIPELINE_STUCK_SECONDS=1.0), source2).start()
    try:
        assert worker2.runner.engine.items == items == 200  # resumed from the checkpoint
        source2.release(50)
        await wait_for(lambda: worker2.runner.engine.items >= 250)
        status, body = await worker2.get("/healthz")
        assert status == 200, body
        status, body = await worker2.get("/readyz")
        assert status == 200, body
    finally:
        await worker2.stop()


async def test_readyz_follows_warmup_freshness_and_data_breaker(tmp_path):
    settings = settings_for(tmp_path / "w", DATA_STALE_SECONDS=120, PIPELINE_STUCK_SECONDS=60)
    source = ScriptedSource(live=True, now_aligned=400)
    worker = await Worker(settings, source).start()
    try:
        status, body = await worker.get("/readyz")
        assert status == 503 and "no market data" in body["reason"]
        source.release(10)
        await wait_for(lambda: worker.runner.engine.items >= 10)
        status, body = await worker.get("/readyz")
        assert status == 503 and "warming up" in body["reason"]
        source.release(390)  # the last one closes about now
        await wait_for(lambda: worker.runner.engine.items >= 400)
        status, body = await worker.get("/readyz")
        assert status == 200, body
        breaker = worker.runner.breakers.breakers["data_collection"]
        for _ in range(breaker.failure_threshold):
            breaker.record_failure("test")
        status, body = await worker.get("/readyz")
        assert status == 503 and "data_collection circuit breaker open" in body["reason"]
        _, metrics = await worker.get("/metrics")
        assert 'papertrader_circuit_breaker_open{breaker="data_collection"} 1.0' in metrics
        assert 'papertrader_ready{symbol="BTC-EUR"} 0.0' in metrics
        breaker._opened_at -= breaker.recovery_timeout  # noqa: SLF001 - let recovery begin
        for _ in range(breaker.success_threshold):
            breaker.record_success()
        status, body = await worker.get("/readyz")
        assert status == 200, body
        # data goes stale: the candle clock passes DATA_STALE_SECONDS after the last close
        await asyncio.sleep(0.1)
        health = worker.obs.health
        health.stale_after = 0.5
        await wait_for(lambda: health.data_age() > 0.5, timeout=60)
        status, body = await worker.get("/readyz")
        assert status == 503 and "stale data" in body["reason"]
        # liveness is not affected by stale data
        status, _ = await worker.get("/healthz")
        assert status == 200
    finally:
        await worker.stop()


async def test_health_document_and_levels(tmp_path):
    source = ScriptedSource()
    source.release(500)
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 500)
        status, report = await worker.get("/health")
        assert status == 200
        for key in ("symbol", "score", "level", "ready", "status", "components", "portfolio", "candles_processed",
                    "last_candle_ms", "model_version", "model_age_seconds", "entries_halted", "halt_reason"):
            assert key in report, key
        assert set(report["components"]) == set(WEIGHTS)
        assert report["level"] == level_for(report["score"])
        p = report["portfolio"]
        assert set(p) >= {"initial_capital", "cash", "position_value", "equity", "return_pct", "drawdown_pct",
                          "max_drawdown_pct", "open_positions", "trades"}
        from decimal import Decimal
        assert Decimal(p["cash"]) + Decimal(p["position_value"]) == Decimal(p["equity"])
        # an open breaker lowers the score and the level
        before = report["score"]
        for name in ("prediction", "trading"):
            b = worker.runner.breakers.breakers[name]
            for _ in range(b.failure_threshold):
                b.record_failure("test")
        _, report = await worker.get("/health")
        assert report["score"] == pytest.approx(before - 15 * 0.8, abs=0.11)
        assert report["level"] == level_for(report["score"])
    finally:
        await worker.stop()


async def test_control_halt_and_resume(tmp_path):
    source = ScriptedSource()
    source.release(100)
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 100)
        status, body = await worker.post("/control/halt", {"reason": "maintenance"})
        assert status == 200 and body["entries_halted"] and "maintenance" in body["halt_reason"]
        status, body = await worker.post("/control/halt", {"reason": "maintenance"})  # idempotent
        assert status == 200 and body["halts"] == {"manual": "maintenance"}
        _, report = await worker.get("/health")
        assert report["entries_halted"] and "maintenance" in report["halt_reason"]
        _, metrics = await worker.get("/metrics")
        assert 'papertrader_entries_halted{symbol="BTC-EUR"} 1.0' in metrics
        status, body = await worker.post("/control/resume", {})
        assert status == 200 and not body["entries_halted"]
        async with __import__("aiohttp").ClientSession() as session:
            async with session.post(worker.http + "/control/halt", data=b"not json") as response:
                assert response.status == 400
    finally:
        await worker.stop()


async def test_failing_storage_pauses_trading_without_failing_liveness(tmp_path):
    """A full disk pauses trading on purpose (retried, nothing lost): /healthz stays 200 past the stuck deadline
    so the kubelet does not restart-loop the pod, while /readyz says why the worker is not fit to trade."""
    settings = settings_for(tmp_path / "w", PIPELINE_STUCK_SECONDS=0.5)
    source = ScriptedSource(live=False, now_aligned=250)  # a replay that stops delivering: stuck, unless ...
    source.release(200)
    worker = await Worker(settings, source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 200)
        worker.runner.storage_error = "[Errno 28] No space left on device"
        await asyncio.sleep(1.0)  # twice the stuck deadline without progress
        status, body = await worker.get("/healthz")
        assert status == 200 and not body["pipeline_stuck"], body
        status, ready = await worker.get("/readyz")
        assert status == 503 and "No space left" in ready["reason"], ready
        worker.runner.storage_error = None
        status, body = await worker.get("/healthz")
        assert status == 503 and body["pipeline_stuck"], body  # the same silence without a storage error
    finally:
        await worker.stop()


class ShiftedClock:
    """The health module's clock, `offset` seconds ahead (the rest of the process keeps the real one)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def time(self) -> float:
        return time.time() + self.offset


async def test_quiet_market_of_20_intervals_keeps_liveness_while_readiness_reports_stale_data(tmp_path, monkeypatch):
    import papertrader.observability.health as health_module

    clock = ShiftedClock()
    monkeypatch.setattr(health_module, "time", clock)
    settings = settings_for(tmp_path / "w")  # 1m candles, automatic deadlines
    source = ScriptedSource(live=True, now_aligned=250)
    source.release(250)
    worker = await Worker(settings, source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 250)
        await asyncio.sleep(0.3)  # the health ticks have seen the progress
        status, body = await worker.get("/readyz")
        assert status == 200, body
        for minute in range(1, 21):  # no trade, no candle for 20 one-minute intervals
            clock.offset = minute * 60.0
            await asyncio.sleep(0.25)  # a couple of health ticks at each step
            status, body = await worker.get("/healthz")
            assert status == 200 and body["alive"] and body["waiting_for_market_data"], (minute, body)
            assert body["seconds_since_progress"] >= minute * 60.0 - 1
        status, body = await worker.get("/readyz")
        assert status == 503 and "stale data" in body["reason"], body  # readiness keeps data freshness
        _, health = await worker.get("/health")
        assert health["status"] == "running" and health["components"]["pipeline"]["score"] == 100.0
        source.release(1)  # the market wakes up: the pipeline goes on where it was
        await wait_for(lambda: worker.runner.engine.items >= 251)
    finally:
        await worker.stop()


async def test_stuck_pipeline_with_daily_candles_fails_liveness_within_a_minute(tmp_path, monkeypatch):
    """The automatic deadline no longer grows with the candle interval (it was 3 days + 60 s for 1d candles)."""
    import papertrader.observability.health as health_module

    clock = ShiftedClock()
    monkeypatch.setattr(health_module, "time", clock)
    settings = settings_for(tmp_path / "w", CANDLE_INTERVAL="1d")
    source = ScriptedSource(live=False, interval_ms=86_400_000)
    source.release(30)
    worker = await Worker(settings, source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 30)
        await asyncio.sleep(0.3)  # the health ticks have seen the progress
        assert worker.obs.health.stuck_after == 60.0
        clock.offset = 30.0
        await asyncio.sleep(0.3)
        status, body = await worker.get("/healthz")
        assert status == 200, body
        clock.offset = 61.0  # stuck on what it has for just over the deadline
        await asyncio.sleep(0.3)
        status, body = await worker.get("/healthz")
        assert status == 503 and body["pipeline_stuck"] and not body["waiting_for_market_data"], str(body)
        # the kubelet restarts it after 3 failed probes 10 s apart: within 60 + 30 s of the hang
    finally:
        await worker.stop()
