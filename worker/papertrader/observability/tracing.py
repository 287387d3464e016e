"""OpenTelemetry traces: one trace per candle with the pipeline's stages as child spans.

Off unless the standard variables ask for it: ``OTEL_TRACES_EXPORTER`` (``otlp`` or ``console``; ``none``
disables) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SDK_DISABLED=true``
wins. Spans go through a ``BatchSpanProcessor`` (``OTEL_BSP_*``) to the OTLP/HTTP exporter (protobuf;
``OTEL_EXPORTER_OTLP_*``). ``OTEL_SERVICE_NAME`` defaults to ``papertrader-worker``.

Sampling: when ``OTEL_TRACES_SAMPLER`` is set, the SDK's sampler decides per candle (an unsampled candle takes
the untraced path after one non-recording root span). When it is unset, live and paced runs trace every
candle (the spec's default ``parentbased_always_on``) and max-speed replays trace every Nth candle, N =
1 / TRACE_REPLAY_SAMPLE_RATIO (default 1 %), so a replay keeps most of its throughput.

Spans of one candle trace: root ``candle`` (symbol, candle time, verdict, signal, order), children
``quality``, ``fill``, ``features``, ``prediction``, ``risk``, ``persistence`` (the candle's ledger buffering);
the runner's ledger commit is a ``commit`` span under the last traced candle of the batch (live: every candle).

The untraced path is untouched: :class:`EngineTracer` replaces ``engine.process`` on the instance only when
tracing is on. :meth:`EngineTracer.traced_process` mirrors ``Engine.process`` stage by stage; a test checks that
both give the same trades.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from papertrader.events import HOLD, CandleVerdict
from papertrader.market.candle import Candle

if TYPE_CHECKING:
    from papertrader.engine.pipeline import Engine

log = logging.getLogger("papertrader.tracing")

TRACE_FORMAT = "%(asctime)s %(levelname)s %(name)s [trace_id=%(otelTraceID)s span_id=%(otelSpanID)s]: %(message)s"


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()]
    if exporters:
        return any(e in ("otlp", "console") for e in exporters)
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class TraceContextFilter(logging.Filter):
    """Adds ``otelTraceID``/``otelSpanID`` of the current span (zeros outside a span) to log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.otelTraceID = format(ctx.trace_id, "032x")
            record.otelSpanID = format(ctx.span_id, "016x")
        else:
            record.otelTraceID = "0"
            record.otelSpanID = "0"
        return True


def _log_handlers() -> list[logging.Handler]:
    from papertrader.logs import PERFORMANCE_LOGGER

    return list(logging.getLogger("papertrader").handlers) + list(logging.getLogger(PERFORMANCE_LOGGER).handlers)


def install_log_correlation() -> None:
    """Put trace and span ids into every line of the worker's log handlers."""
    log_filter = TraceContextFilter()
    for handler in _log_handlers():
        handler.addFilter(log_filter)
        handler.setFormatter(logging.Formatter(TRACE_FORMAT))


class Tracing:
    """The tracer provider and exporter of one worker."""

    def __init__(self, provider: Any, tracer: Any, explicit_sampler: bool) -> None:
        self.provider = provider
        self.tracer = tracer
        self.explicit_sampler = explicit_sampler

    @classmethod
    def from_env(cls, exporter: Any = None, env: Mapping[str, str] | None = None) -> Tracing:
        """Build the provider; ``exporter`` overrides the one the environment names (tests, benchmarks)."""
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        env = os.environ if env is None else env
        attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "papertrader-worker"}
        provider = TracerProvider(resource=Resource.create(attributes))
        if exporter is None:
            names = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if e.strip()]
            if "console" in names:
                exporter = ConsoleSpanExporter()
            else:
                protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                if protocol and protocol != "http/protobuf":
                    log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; using http/protobuf", protocol)
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        try:
            trace.set_tracer_provider(provider)
        except Exception:  # noqa: BLE001 - a provider was set before (tests): keep ours private
            pass
        tracer = provider.get_tracer("papertrader.engine")
        return cls(provider, tracer, bool(env.get("OTEL_TRACES_SAMPLER")))

    def shutdown(self) -> None:
        try:
            self.provider.shutdown()
        except Exception:  # noqa: BLE001
            log.exception("tracing shutdown failed")


class EngineTracer:
    """Swaps a traced ``process`` (and ``commit``) into one engine instance."""

    def __init__(self, engine: Engine, tracer: Any, stride: int = 1, sampler_decides: bool = False) -> None:
        from opentelemetry import context, trace

        self._context = context
        self.engine = engine
        self.tracer = tracer
        self.stride = max(1, stride)
        self.sampler_decides = sampler_decides
        self._trace = trace
        self._count = 0
        self._fast_process = engine.process
        self._fast_commit = engine.commit
        self._last_root_ctx: Any = None
        self._since_commit = 0
        self.traced = 0

    def install(self) -> None:
        self.engine.process = self.process  # type: ignore[method-assign]
        self.engine.commit = self.commit  # type: ignore[method-assign]

    def uninstall(self) -> None:
        self.engine.__dict__.pop("process", None)
        self.engine.__dict__.pop("commit", None)

    def process(self, item: Any) -> CandleVerdict:
        self._since_commit += 1
        if self.stride > 1:
            self._count += 1
            if self._count < self.stride:
                return self._fast_process(item)
            self._count = 0
        return self.traced_process(item)

    def commit(self, cursor: dict[str, Any]) -> float:
        ctx, self._last_root_ctx = self._last_root_ctx, None
        batch, self._since_commit = self._since_commit, 0
        if ctx is None:
            return self._fast_commit(cursor)
        span = self.tracer.start_span("commit", context=ctx, attributes={"batch.items": batch})
        try:
            return self._fast_commit(cursor)
        finally:
            span.end()

    def traced_process(self, item: Any) -> CandleVerdict:  # noqa: C901 - mirrors Engine.process
        """``Engine.process`` with spans (keep in step with it)."""
        from papertrader.broker.market_rules import auto_tick_size
        from papertrader.quality import DUPLICATE
        from papertrader.strategy.base import PositionView

        engine, tracer, trace = self.engine, self.tracer, self._trace
        is_candle = type(item) is Candle
        attributes: dict[str, Any] = {"symbol": engine.symbol}
        if is_candle:
            attributes["candle.ts"] = item.ts
        root = tracer.start_span("candle", attributes=attributes)
        if self.sampler_decides and not root.is_recording():
            root.end()
            return self._fast_process(item)
        self.traced += 1
        ctx = trace.set_span_in_context(root)
        self._last_root_ctx = ctx
        token = self._context.attach(ctx)
        try:
            engine.items += 1
            span = tracer.start_span("quality", context=ctx)
            verdict = engine.gate.check(item)
            span.set_attribute("verdict", verdict.status)
            span.end()
            root.set_attribute("verdict", verdict.status)
            if engine.recorder is not None and is_candle:
                engine.recorder.write(item)
            if verdict.status == "rejected":
                root.set_attribute("reject.reason", verdict.reasons[0] if verdict.reasons else "")
                engine._on_rejected(item, verdict)
                return verdict
            if verdict is DUPLICATE:
                return verdict
            candle: Candle = item
            engine.accepted += 1
            if engine.broker is None:
                engine._set_rules(engine._rules_with_tick(auto_tick_size(candle.open)))

            span = tracer.start_span("fill", context=ctx)
            fills_before = engine.portfolio.fills
            filled = False
            if engine.pending:
                filled = engine._execute_pending(candle)
            portfolio = engine.portfolio
            if portfolio.lots:
                filled = engine._protective_exits(candle) or filled
            span.set_attribute("fills", portfolio.fills - fills_before)
            span.end()

            span = tracer.start_span("features", context=ctx)
            features = engine.features
            values = features.update(candle)
            span.end()

            span = tracer.start_span("prediction", context=ctx)
            signal = None
            lots = portfolio.lots
            if features.count >= features.lookback:
                view = None
                if lots:
                    view = PositionView(sum(lot.qty_f for lot in lots), lots[0].entry_f, lots[0].entry_ts,
                                        len(lots))
                strategy = engine.strategy
                signal = strategy.on_candle(candle, values, view)
                if strategy.prediction is not None:
                    span.set_attribute("probability_up", strategy.prediction.probability_up)
                    for listener in engine.listeners:
                        listener.on_prediction(strategy.prediction)
                    strategy.prediction = None
                span.set_attribute("signal", signal.side)
                root.set_attribute("signal", signal.side)
            else:
                span.set_attribute("skipped", "feature lookback")
            span.end()

            span = tracer.start_span("risk", context=ctx)
            pending_before = len(engine.pending)
            if signal is not None and engine.accepted > engine.warmup:
                engine.last_signal = signal
                if signal is not HOLD or lots:
                    engine._decide(candle, signal)
            equity = portfolio.equity_f(candle.close)
            for message in engine.risk.on_equity(candle.ts, equity):
                engine_log = logging.getLogger("papertrader.engine")
                engine_log.warning("%s %s", engine.symbol, message)
                engine._events.append((candle.ts, "halt", message))
            new_orders = engine.pending[pending_before:]
            if new_orders:
                order = ", ".join(f"{o.side}:{o.reason}" for o in new_orders)
                span.set_attribute("order", order)
                root.set_attribute("order", order)
            span.end()

            span = tracer.start_span("persistence", context=ctx)
            engine.last_candle = candle
            if filled or engine.accepted % engine._snapshot_every == 0:
                engine._snapshot(candle)
                span.set_attribute("snapshot", True)
            span.end()
            for listener in engine.listeners:
                listener.on_candle(candle, verdict)
            return verdict
        finally:
            self._context.detach(token)
            root.end()


def sampling_stride(settings: Any, live_or_paced: bool, env: Mapping[str, str] | None = None) -> int:
    """Every how many candles to trace (0: never) under the rules in the module docstring."""
    env = os.environ if env is None else env
    if env.get("OTEL_TRACES_SAMPLER") or live_or_paced:
        return 1
    ratio = settings.trace_replay_sample_ratio
    if ratio <= 0:
        return 0
    return max(1, round(1.0 / ratio))
