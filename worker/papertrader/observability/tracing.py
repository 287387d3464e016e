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

The untraced path is untouched: :class:`EngineTracer` is the engine's stage observer only when tracing is on
(``Engine.set_observer``); the stages run the same code either way (a test checks identical trades).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from papertrader.events import CandleVerdict, VerdictStatus
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
        except Exception:  # noqa: BLE001 - the exporter failing at exit: logged, never raised
            log.exception("tracing shutdown failed")


class EngineTracer:
    """Traces one engine: a root span per candle and a child span for each of ``Engine.STAGES``, as the engine's
    :class:`~papertrader.engine.pipeline.StageObserver`. The engine runs the same code traced or not; untraced
    it has no observer at all."""

    def __init__(self, engine: Engine, tracer: Any, stride: int = 1, sampler_decides: bool = False) -> None:
        from opentelemetry import context, trace

        self._context = context
        self._trace = trace
        self.engine = engine
        self.tracer = tracer
        self.stride = max(1, stride)
        self.sampler_decides = sampler_decides
        self._count = 0
        self._root: Any = None  # the current candle's root span while it is traced
        self._root_ctx: Any = None
        self._token: Any = None
        self._last_root_ctx: Any = None
        self._since_commit = 0
        self._stage: Any = None  # the current stage's span, with what its attributes start from
        self._stage_before: Any = None
        self._commit: Any = None
        self.traced = 0

    def install(self) -> None:
        self.engine.set_observer(self)

    def uninstall(self) -> None:
        self.engine.set_observer(None)

    # --- StageObserver ---------------------------------------------------------------------------------------
    def item_started(self, item: Any) -> bool:
        """Trace every ``stride``-th candle (or what the SDK sampler keeps) under a root ``candle`` span."""
        self._since_commit += 1
        if self.stride > 1:
            self._count += 1
            if self._count < self.stride:
                return False
            self._count = 0
        attributes: dict[str, Any] = {"symbol": self.engine.symbol}
        if type(item) is Candle:
            attributes["candle.ts"] = item.ts
        root = self.tracer.start_span("candle", attributes=attributes)
        if self.sampler_decides and not root.is_recording():
            root.end()
            return False
        self.traced += 1
        self._root = root
        self._root_ctx = self._last_root_ctx = self._trace.set_span_in_context(root)
        self._token = self._context.attach(self._root_ctx)
        return True

    def stage_started(self, stage: str) -> None:
        describe = _STAGE_ATTRIBUTES.get(stage)
        self._stage_before = describe.before(self.engine) if describe else None
        self._stage = self.tracer.start_span(stage, context=self._root_ctx)

    def stage_ended(self, stage: str, result: Any) -> None:
        span, self._stage = self._stage, None
        describe = _STAGE_ATTRIBUTES.get(stage)
        if describe:
            for key, value in describe.after(self.engine, self._stage_before, result).items():
                span.set_attribute(key, value)
                if key in ("signal", "order"):
                    self._root.set_attribute(key, value)
        span.end()

    def item_ended(self, verdict: CandleVerdict) -> None:
        root = self._root
        root.set_attribute("verdict", verdict.status)
        if verdict.status == VerdictStatus.REJECTED and verdict.reasons:
            root.set_attribute("reject.reason", verdict.reasons[0])
        self._context.detach(self._token)
        root.end()
        self._root = self._root_ctx = self._token = None

    def commit_started(self) -> None:
        """A ``commit`` span under the last traced candle of the batch."""
        ctx, self._last_root_ctx = self._last_root_ctx, None
        batch, self._since_commit = self._since_commit, 0
        self._commit = (None if ctx is None else
                        self.tracer.start_span("commit", context=ctx, attributes={"batch.items": batch}))

    def commit_ended(self) -> None:
        span, self._commit = self._commit, None
        if span is not None:
            span.end()


class _StageAttributes:
    """What a stage's span says: ``before`` snapshots engine state, ``after`` turns the change into attributes."""

    def __init__(self, before: Any, after: Any) -> None:
        self.before = before
        self.after = after


_STAGE_ATTRIBUTES: dict[str, _StageAttributes] = {
    "quality": _StageAttributes(lambda engine: None, lambda engine, _, verdict: {"verdict": verdict.status}),
    "fill": _StageAttributes(lambda engine: engine.fill_count,
                             lambda engine, fills, _: {"fills": engine.fill_count - fills}),
    "prediction": _StageAttributes(
        lambda engine: None,
        lambda engine, _, signal: {"signal": signal.side} if signal is not None else {"skipped": "feature lookback"}),
    "risk": _StageAttributes(
        lambda engine: len(engine.pending),
        lambda engine, pending, _: ({"order": ", ".join(f"{o.side}:{o.reason}" for o in engine.pending[pending:])}
                                    if len(engine.pending) > pending else {})),
}


def sampling_stride(settings: Any, live_or_paced: bool, env: Mapping[str, str] | None = None) -> int:
    """Every how many candles to trace (0: never) under the rules in the module docstring."""
    env = os.environ if env is None else env
    if env.get("OTEL_TRACES_SAMPLER") or live_or_paced:
        return 1
    ratio = settings.trace_replay_sample_ratio
    if ratio <= 0:
        return 0
    return max(1, round(1.0 / ratio))
