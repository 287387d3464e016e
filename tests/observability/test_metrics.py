"""/metrics after a replay: every CONTRACT metric with its labels and the run's values; promtool finds no
problems; exported_metric_names() covers everything scraped."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from papertrader.observability import exported_metric_names

from .helpers import ScriptedSource, Worker, settings_for, wait_for

CONTRACT = {
    "papertrader_candles_processed_total": {"symbol"},
    "papertrader_trades_total": {"symbol", "side"},
    "papertrader_equity": {"symbol"},
    "papertrader_open_positions": {"symbol"},
    "papertrader_tick_duration_seconds": {"symbol"},
    "papertrader_prediction_duration_seconds": {"symbol"},
    "papertrader_data_quality_score": {"symbol"},
    "papertrader_health_score": {"symbol"},
    "papertrader_circuit_breaker_open": {"breaker"},
}


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


async def test_contract_metrics_after_replay(tmp_path):
    source = ScriptedSource()
    source.release(3000)
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 3000)
        status, text = await worker.get("/metrics")
        assert status == 200
        summary = worker.runner.engine.summary()
        scraped = samples(text)
        for name, labels in CONTRACT.items():
            key = name + "_count" if name.endswith("_seconds") else name
            assert key in scraped, name
            assert set(scraped[key][0][0]) - {"le"} == labels, (name, scraped[key][0][0])

        def value(name: str, **lab: str) -> float:
            return next(v for l, v in scraped[name] if all(l.get(k) == x for k, x in lab.items()))

        assert value("papertrader_candles_processed_total", symbol="BTC-EUR") == summary["candles"] == 3000
        trades = value("papertrader_trades_total", side="buy") + value("papertrader_trades_total", side="sell")
        assert trades == summary["trades"] > 0
        assert value("papertrader_equity") == pytest.approx(summary["final_equity"], abs=0.01)
        assert value("papertrader_open_positions") == summary["open_positions"]
        assert value("papertrader_data_quality_score") == summary["data_quality_score"]
        assert value("papertrader_tick_duration_seconds_count") == 3000
        assert value("papertrader_return_pct") == pytest.approx(summary["return_pct"], abs=0.01)
        assert value("papertrader_max_drawdown_pct") == pytest.approx(summary["max_drawdown_pct"], abs=0.001)
        assert 0 <= value("papertrader_health_score") <= 100
        breakers = {l["breaker"]: v for l, v in scraped["papertrader_circuit_breaker_open"]}
        assert breakers == {"data_collection": 0, "prediction": 0, "trading": 0, "notifications": 0}
        last = worker.runner.engine.last_candle
        assert value("papertrader_last_candle_timestamp_seconds") == last.ts / 1000
        assert value("papertrader_price") == last.close
        assert value("papertrader_ready") == 1
        # every scraped series belongs to a name the chart may use
        names = exported_metric_names()
        assert set(scraped) <= names | {n + "_created" for n in names}, set(scraped) - names
        for name in CONTRACT:
            assert name in names
        # promtool lint
        promtool = shutil.which("promtool")
        assert promtool is not None, "promtool not installed: run bash .ci/install.sh"
        result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
            result.stdout + result.stderr
    finally:
        await worker.stop()


async def test_trade_counters_survive_restart(tmp_path):
    settings = settings_for(tmp_path / "w")
    source = ScriptedSource()
    source.release(2000)
    worker = await Worker(settings, source).start()
    await wait_for(lambda: worker.runner.engine.items >= 2000)
    await worker.stop()
    fills = worker.runner.engine.portfolio.fills
    source = ScriptedSource()
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    try:
        trades = worker.obs.metrics.trades
        assert trades["buy"] + trades["sell"] == fills > 0
    finally:
        await worker.stop()
