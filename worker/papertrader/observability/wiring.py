"""The observability and control surfaces of one worker, composed from what they need.

:class:`Observability` builds the metrics listener and Prometheus registry, health monitor, HTTP server (8766),
WebSocket feed (8765), notifier (Telegram or the fleet notifier), performance reports and, when the OTEL_*
variables ask for it, tracing. Each part receives the worker's read-only view
(:class:`~papertrader.engine.facts.WorkerView`), its own settings group and the other parts it talks to; halts and
resumes go through :class:`~papertrader.engine.facts.WorkerControl`. ``papertrader.cli.build_worker`` adds the
hub's engine listeners and the hub itself (one service: it starts its parts in order and stops them in reverse)
to the runner.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from papertrader.events import EngineListener
from papertrader.feed.ws import WsFeed
from papertrader.notify.telegram import Notifier, NotifyListener, read_token
from papertrader.observability.commands import RECENT_FILLS, AnnouncedControl, RecentFills, WorkerCommands
from papertrader.observability.control_auth import ControlCredential
from papertrader.observability.health import HealthMonitor
from papertrader.observability.http import HttpServer
from papertrader.observability.metrics import (
    ErrorCounter,
    ErrorLogHandler,
    MetricsListener,
    WorkerCollector,
    build_registry,
)
from papertrader.observability.performance import PerformanceMonitor
from papertrader.observability.tracing import (
    EngineTracer,
    Tracing,
    install_log_correlation,
    sampling_stride,
    tracing_requested,
)
from papertrader.resilience import BreakerState

if TYPE_CHECKING:
    from papertrader.config import Settings
    from papertrader.config_groups import HttpSettings, NotifySettings
    from papertrader.engine.facts import WorkerControl, WorkerView
    from papertrader.engine.pipeline import Engine
    from papertrader.ledger.store import LedgerStore
    from papertrader.notify.forward import FleetForwarder
    from papertrader.resilience import BreakerRegistry, BreakerState, CircuitBreaker

log = logging.getLogger("papertrader.observability")


class Observability:
    """Everything a worker shows and accepts from outside.

    ``ledger`` seeds the trade counters and the last fills (they survive a restart); ``breakers`` are watched for
    notifications (``notifications`` also gates the Telegram sender). Tracing, when requested or given an
    ``tracing_exporter`` (tests), wraps ``trace_engine``; ``live_or_paced`` picks its sampling."""

    def __init__(self, settings: Settings, *, view: WorkerView, control: WorkerControl, ledger: LedgerStore,
                 breakers: BreakerRegistry, trace_engine: Engine, live_or_paced: bool,
                 tracing_exporter: Any = None) -> None:
        self.view = view
        self.symbol = settings.symbol
        self.source_name, self.strategy_name = settings.source, settings.strategy
        self.errors = ErrorCounter()
        self.metrics = MetricsListener(self.errors)
        self.metrics.trades.update(ledger.fills_by_side())
        self.recent = RecentFills(ledger.recent_fills(RECENT_FILLS))
        self.health = HealthMonitor(view, settings.health)
        self.notifier = _notifier(settings.notify, breakers.get("notifications"))
        self.control = AnnouncedControl(view, control, self.symbol, self.notifier.notify)
        if isinstance(self.notifier, Notifier):
            self.notifier.answer_with(WorkerCommands(view, self.control, self.health.report, self.recent))
        self.feed: WsFeed | None = WsFeed(view, settings.feed, self.health.report)
        self.health.set_fanout(self.feed)
        self.registry = build_registry(WorkerCollector(view, self.metrics, self.health, self.feed, self.notifier))
        self.http = HttpServer(settings.http, symbol=self.symbol, health=self.health, control=self.control,
                               recent=self.recent, registry=self.registry, credential=control_credential(settings.http))
        self.performance = (PerformanceMonitor(view, settings.performance, self.metrics, self.health, self.feed,
                                               self.notifier)
                            if settings.performance.enable_performance_monitoring else None)
        self.error_handler = ErrorLogHandler(self.errors, self._on_logged_error)
        for breaker in breakers.breakers.values():
            breaker.listeners.append(self._on_breaker)
        self.health.listeners.append(self._on_health)
        self.tracing: Tracing | None = None
        self.engine_tracer: EngineTracer | None = None
        self._trace_engine = trace_engine
        self._tracing_stride = sampling_stride(settings.tracing, live_or_paced)
        self._tracing_exporter = tracing_exporter
        self.started = False

    def engine_listeners(self) -> list[EngineListener]:
        """What the engine must report to: metrics, the last fills, the feed, trade notifications."""
        listeners: list[EngineListener] = [self.metrics, self.recent]
        if self.feed is not None:
            listeners.append(self.feed)
        if self.notifier.enabled:
            listeners.append(NotifyListener(self.notifier, self.symbol))
        return listeners

    def cache_lookups(self) -> int:
        """New WebSocket clients served a snapshot so far."""
        return self.feed.cache_lookups() if self.feed is not None else 0

    def cache_hit_ratio(self) -> float | None:
        """Share of new WebSocket clients served an already built snapshot; None before the first."""
        return self.feed.cache_hit_ratio() if self.feed is not None else None

    # --- service -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        logging.getLogger("papertrader").addHandler(self.error_handler)
        self._start_tracing()
        await self.health.start()
        for name, server in (("http", self.http), ("websocket", self.feed)):
            if server is None:
                continue
            try:
                await server.start()
            except OSError as exc:
                # The worker keeps trading; without its probe port the kubelet will restart it.
                log.error("%s server: cannot listen on %s:%s (%s)", name, server.host, server.port,
                          exc.strerror or exc)
                if name == "websocket":
                    self.feed = None
                    self.health.set_fanout(None)
        await self.notifier.start()
        self.notifier.notify("system", f"{self.symbol} worker started ({self.source_name}, {self.strategy_name})",
                             "low")
        if self.performance is not None:
            await self.performance.start()
        self.started = True

    async def stop(self) -> None:
        if self.performance is not None:
            await self.performance.stop()
        summary = self.view.summary()
        self.notifier.notify("system", f"{self.symbol} worker stopping: {summary['candles']} candles, "
                                       f"{summary['trades']} trades, equity {summary['final_equity']:.2f}", "low")
        await self.notifier.stop()
        if self.feed is not None:
            await self.feed.stop()
        await self.http.stop()
        await self.health.stop()
        logging.getLogger("papertrader").removeHandler(self.error_handler)
        if self.engine_tracer is not None:
            self.engine_tracer.uninstall()
        if self.tracing is not None:  # flushes the batch; off the loop (the exporter is synchronous)
            await asyncio.to_thread(self.tracing.shutdown)

    def _start_tracing(self) -> None:
        if self._tracing_exporter is None and not tracing_requested():
            return
        stride = self._tracing_stride
        self.tracing = Tracing.from_env(self._tracing_exporter)
        install_log_correlation()
        if stride:
            self.engine_tracer = EngineTracer(self._trace_engine, self.tracing.tracer, stride,
                                              sampler_decides=self.tracing.explicit_sampler)
            self.engine_tracer.install()
        log.info("tracing on: one trace per %s", "candle" if stride == 1 else f"{stride} candles" if stride
                 else "(none: TRACE_REPLAY_SAMPLE_RATIO=0)")

    # --- hooks ---------------------------------------------------------------------------------------------
    def _on_logged_error(self, kind: str, message: str, levelno: int = logging.ERROR) -> None:
        if kind != "notify":
            self.notifier.error(kind, message, "critical" if levelno >= logging.CRITICAL else "high")

    def _on_breaker(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        if breaker.name == "notifications":
            return
        if new is BreakerState.OPEN:
            priority = "critical" if breaker.name in ("data_collection", "trading") else "high"
            self.notifier.notify("system", f"{self.symbol}: circuit breaker {breaker.name} OPEN", priority)
        elif new is BreakerState.CLOSED:
            self.notifier.notify("system", f"{self.symbol}: circuit breaker {breaker.name} closed again", "normal")

    def _on_health(self, report: dict[str, Any]) -> None:
        if self.feed is not None:
            self.feed.publish_health(report)
        if report.get("change"):
            level = report["level"]
            priority = {"critical": "critical", "poor": "high"}.get(level, "normal")
            reasons = "" if report["ready"] else f"\nnot ready: {'; '.join(report['not_ready'])}"
            self.notifier.notify("status", f"{self.symbol} health {report.get('previous_level')} -> {level} "
                                           f"(score {report['score']:.1f}){reasons}", priority)


def control_credential(settings: HttpSettings) -> ControlCredential:
    """The control endpoints' credential from CONTROL_TOKEN_FILE / CONTROL_TOKEN; says once when there is none."""
    token = settings.control_token.get_secret_value() if settings.control_token is not None else None
    credential = ControlCredential(token, settings.control_token_file)
    if not credential.required:
        log.warning("control endpoints (POST /control/halt, /control/resume) take no credential: set "
                    "CONTROL_TOKEN or CONTROL_TOKEN_FILE (in a cluster the operator does)")
    return credential


def _notifier(settings: NotifySettings, breaker: CircuitBreaker | None) -> Notifier | FleetForwarder:
    """The fleet notifier's client when NOTIFIER_URL is set (imported only then: it needs aiohttp, which a replay
    worker never loads), else the worker's own Telegram bot (off without a token and chat)."""
    if settings.notifier_url:
        from papertrader.notify.forward import FleetForwarder

        return FleetForwarder(settings)
    token = read_token(settings)
    notifier = Notifier(settings, token, breaker)
    if not notifier.enabled:
        log.info("telegram notifications off: %s not set", "TELEGRAM_BOT_TOKEN" if not token else "TELEGRAM_CHAT_ID")
    return notifier
