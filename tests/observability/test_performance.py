"""performance.log reports and custom alert rules sent as notifications."""

from __future__ import annotations

from papertrader.observability.performance import AlertRule, parse_rules

from .fakes import FakeTelegram
from .helpers import ScriptedSource, Worker, settings_for, wait_for

TOKEN = "42:perf-token"


def test_rules_parse_and_defaults():
    assert {r.metric for r in parse_rules(None)} >= {"memory_mb", "api_response_time_s", "error_rate_pct"}
    rules = parse_rules('[{"metric": "win_rate_pct", "op": "<", "threshold": 60, "recommendation": "Review"}]')
    assert rules == [AlertRule("win_rate_pct", "<", 60.0, "Review", "Custom")]


async def test_report_and_custom_alert(tmp_path):
    fake = await FakeTelegram(TOKEN).start()
    rules = '[{"metric": "candles_per_minute", "op": ">", "threshold": 1, "recommendation": "Slow down", ' \
            '"alert_type": "Custom"}]'
    settings = settings_for(tmp_path / "w", PERFORMANCE_ALERT_RULES=rules, TELEGRAM_BOT_TOKEN=TOKEN,
                            TELEGRAM_CHAT_ID="5", TELEGRAM_API_URL=fake.url, TELEGRAM_POLL_COMMANDS="false",
                            PERFORMANCE_REPORT_INTERVAL=0.3)
    source = ScriptedSource()
    source.release(3000)
    worker = await Worker(settings, source).start()
    try:
        await wait_for(lambda: worker.obs.performance.reports >= 1, timeout=10)
        await wait_for(lambda: any("Performance alert (Custom)" in t for t in fake.texts()), timeout=10)
        alert = next(t for t in fake.texts() if "Performance alert" in t)
        assert "candles_per_minute" in alert and "Slow down" in alert
    finally:
        await worker.stop()
        await fake.stop()
    perf = (tmp_path / "w" / "logs" / "performance.log").read_text()
    assert "Performance report BTC-EUR" in perf and "memory_mb=" in perf and "error_rate_pct=" in perf
    assert worker.obs.performance.alerts_sent == 1  # not repeated within the hour


async def test_cache_hit_ratio_alert_waits_for_enough_clients(tmp_path):
    """One dashboard connecting (one snapshot built: ratio 0) is no reason for a cache alert; twenty clients that
    each needed their own snapshot are."""
    from websockets.asyncio.client import connect

    settings = settings_for(tmp_path / "w", PERFORMANCE_REPORT_INTERVAL=0.2)
    worker = await Worker(settings, ScriptedSource(live=True)).start()
    performance = worker.obs.performance
    perf_log = tmp_path / "w" / "logs" / "performance.log"
    cache_alert = "Performance alert Cache: cache_hit_ratio=0 < 0.7"
    try:
        async def one_client() -> None:
            async with connect(worker.ws) as ws:
                await ws.recv()
            await wait_for(lambda: worker.obs.feed.client_count() == 0)

        await one_client()
        await wait_for(lambda: worker.obs.cache_lookups() == 1)
        reports = performance.reports
        await wait_for(lambda: performance.reports > reports + 1)
        assert "cache_hit_ratio" not in performance.sample()
        assert "Performance report BTC-EUR" in perf_log.read_text() and cache_alert not in perf_log.read_text()
        for _ in range(19):  # each arrives after the last one left: a snapshot of its own every time
            await one_client()
        await wait_for(lambda: worker.obs.cache_lookups() == 20)
        assert performance.sample()["cache_hit_ratio"] == 0.0
        await wait_for(lambda: cache_alert in perf_log.read_text())
    finally:
        await worker.stop()
