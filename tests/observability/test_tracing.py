"""Traces: one per candle with six child spans, over OTLP/HTTP to a receiver that decodes the protobuf; trace
ids in log lines; tracing does not change decisions."""

from __future__ import annotations

import logging

from .fakes import OtlpReceiver
from .helpers import ScriptedSource, Worker, settings_for, wait_for

STAGES = {"quality", "fill", "features", "prediction", "risk", "persistence"}


async def test_trace_per_candle_reaches_otlp_receiver(tmp_path, monkeypatch):
    receiver = await OtlpReceiver().start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "pt-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    source = ScriptedSource(live=True, now_aligned=100)  # live: every candle traced, commit per candle
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    try:
        for count in range(1, 61):  # one candle at a time, as a live exchange delivers them
            source.release(1)
            await wait_for(lambda count=count: worker.runner.engine.items >= count, interval=0.001)
        await worker.stop()
        traces = receiver.traces()
        roots = [s for s in receiver.spans if s["name"] == "candle"]
        assert len(roots) == 60
        complete = 0
        for root in roots:
            spans = traces[root["trace_id"]]
            children = [s for s in spans if s["parent_span_id"] == root["span_id"]]
            names = {s["name"] for s in children}
            assert STAGES <= names, names
            assert "commit" in names  # live: each candle's decision is committed in its own trace
            assert root["attributes"]["symbol"] == "BTC-EUR"
            assert int(root["attributes"]["candle.ts"]) > 0
            assert root["resource"]["service.name"] == {"stringValue": "pt-test"}
            complete += 1
        assert complete == 60
        signals = [r["attributes"].get("signal") for r in roots]
        assert "hold" in signals
        assert any(s["attributes"].get("order") for s in roots) or worker.runner.engine.portfolio.fills == 0
        log_text = (tmp_path / "w" / "logs" / "enhanced_paper_trader.log").read_text()
        assert "trace_id=" in log_text
    finally:
        await worker.stop()
        await receiver.stop()


async def test_tracing_keeps_decisions_identical(tmp_path, monkeypatch):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    results = []
    for name, exporter in (("off", None), ("on", InMemorySpanExporter())):
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")  # every candle through the traced path
        source = ScriptedSource()
        source.release(3000)
        worker = await Worker(settings_for(tmp_path / name), source, tracing_exporter=exporter).start()
        await wait_for(lambda worker=worker: worker.runner.engine.items >= 3000)
        await worker.stop()
        trades = (tmp_path / name / "logs" / "trades.csv").read_text()
        results.append((trades, worker.runner.engine.summary()["final_equity"]))
        if exporter is not None:
            assert worker.obs.engine_tracer.traced == 3000
    assert results[0] == results[1]
    assert results[0][0].count("\n") > 10
    logging.getLogger("papertrader").handlers.clear()


async def test_replay_samples_one_candle_in_n_by_default(tmp_path, monkeypatch):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    exporter = InMemorySpanExporter()
    source = ScriptedSource()
    source.release(2000)
    worker = await Worker(settings_for(tmp_path / "w", TRACE_REPLAY_SAMPLE_RATIO=0.01), source,
                          tracing_exporter=exporter).start()
    await wait_for(lambda: worker.runner.engine.items >= 2000)
    await worker.stop()
    assert worker.obs.engine_tracer.stride == 100
    assert worker.obs.engine_tracer.traced == 20
