"""Plugs the observability and control surfaces into a :class:`~papertrader.engine.runner.WorkerRunner`.

:func:`start_observability` is registered in ``runner.SERVICE_FACTORIES``. It builds one
:class:`Observability` hub per runner: metrics listener and Prometheus registry, health monitor, HTTP server
(8766), WebSocket feed (8765), Telegram notifier, performance reports and, when the OTEL_* variables ask for
it, tracing. The hub is a single runner service; it starts its parts in that order and stops them in reverse.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from papertrader.events import BaseListener
from papertrader.feed.ws import WsFeed
from papertrader.notify.telegram import Notifier, NotifyListener, read_token
from papertrader.observability.health import HealthMonitor
from papertrader.observability.control_auth import ControlCredential
from papertrader.observability.http import HttpServer
from papertrader.observability.metrics import (ErrorCounter, ErrorLogHandler, MetricsListener, build_registry,
                                               observe_exchange_request)
from papertrader.observability.performance import PerformanceMonitor
from papertrader.resilience import BreakerState
from papertrader.observability.tracing import EngineTracer, Tracing, install_log_correlation, sampling_stride, \
    tracing_requested

if TYPE_CHECKING:
    from papertrader.config import Settings
    from papertrader.notify.forward import FleetForwarder
    from papertrader.engine.runner import WorkerRunner
    from papertrader.events import Fill
    from papertrader.resilience import CircuitBreaker

log = logging.getLogger("papertrader.observability")


class _RecentFills(BaseListener):
    """Keeps the last fills for /trades (seeded from the ledger)."""

    def __init__(self, rows: list[Any]) -> None:
        self.fills: deque[Any] = deque(rows, maxlen=10)

    def on_fill(self, fill: Fill) -> None:
        self.fills.append((fill.ts, fill.side, fill.quantity, fill.price, fill.fee, fill.realized_pnl, fill.reason))


class Observability:
    """Everything a worker shows and accepts from outside, for one runner."""

    def __init__(self, runner: WorkerRunner, tracing_exporter: Any = None) -> None:
        self.runner = runner
        settings = runner.settings
        self.symbol = runner.engine.symbol
        self.errors = ErrorCounter()
        self.metrics = MetricsListener(self.errors)
        self._seed_from_ledger()
        self.health = HealthMonitor(self)
        token = None if settings.notifier_url else read_token(settings)
        self.notifier: Notifier | FleetForwarder | None = (
            _fleet_forwarder(settings) if settings.notifier_url
            else Notifier(settings, token, runner.breakers.get("notifications"), self))
        if not self.notifier.enabled:
            missing = "TELEGRAM_BOT_TOKEN" if not token else "TELEGRAM_CHAT_ID"
            log.info("telegram notifications off: %s not set", missing)
        self.feed: WsFeed | None = WsFeed(self, settings.http_host, settings.ws_port)
        self.http = HttpServer(self, settings.http_host, settings.http_port, settings.state_dir,
                               credential=control_credential(settings))
        self.performance = PerformanceMonitor(self) if settings.enable_performance_monitoring else None
        self.registry = build_registry(self)
        self.error_handler = ErrorLogHandler(self.errors, self._on_logged_error)
        self.tracing: Tracing | None = None
        self.engine_tracer: EngineTracer | None = None
        self._tracing_exporter = tracing_exporter
        self.started = False

    # --- set-up --------------------------------------------------------------------------------------------
    def _seed_from_ledger(self) -> None:
        """Trades by side and the last fills survive a restart (the ledger has them)."""
        rows: list[Any] = []
        try:
            db = self.runner.store.db
            for side, count in db.execute("SELECT side, COUNT(*) FROM fills GROUP BY side"):
                self.metrics.trades[side] = int(count)
            rows = db.execute("SELECT ts, side, quantity, price, fee, realized_pnl, reason FROM fills"
                              " ORDER BY id DESC LIMIT 10").fetchall()[::-1]
        except Exception:  # noqa: BLE001 - a ledger without those columns: start from zero
            log.debug("could not seed trade counters from the ledger", exc_info=True)
        self.recent = _RecentFills(rows)

    def attach(self) -> None:
        """Register listeners, breaker and health hooks and the error handler (before the loop starts)."""
        runner = self.runner
        listeners: list[Any] = [self.metrics, self.recent]
        if self.feed is not None:
            listeners.append(self.feed)
        if self.notifier is not None and self.notifier.enabled:
            listeners.append(NotifyListener(self.notifier, self.symbol))
        runner.listeners.extend(listeners)  # the engine shares this list
        for breaker in runner.breakers.breakers.values():
            breaker.listeners.append(self._on_breaker)
        self.health.listeners.append(self._on_health)
        logging.getLogger("papertrader").addHandler(self.error_handler)
        self._wrap_exchange_client()
        self._setup_tracing()

    def _wrap_exchange_client(self) -> None:
        """Time the live source's REST calls (``papertrader_exchange_request_duration_seconds{endpoint}``)."""
        rest = getattr(self.runner.source, "rest", None)
        get = getattr(rest, "get", None)
        if rest is None or get is None or getattr(get, "_papertrader_timed", False):
            return

        @functools.wraps(get)
        async def timed_get(path: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await get(path, *args, **kwargs)
            finally:
                endpoint = "GET /" + str(path).lstrip("/").split("/")[0].split("?")[0]
                observe_exchange_request(endpoint, time.perf_counter() - started)

        timed_get._papertrader_timed = True  # type: ignore[attr-defined]  # a marker on the wrapper function
        rest.get = timed_get

    def _setup_tracing(self) -> None:
        if self._tracing_exporter is None and not tracing_requested():
            return
        runner = self.runner
        live_or_paced = runner.source.live or runner.settings.speed_factor is not None
        stride = sampling_stride(runner.settings, live_or_paced)
        self.tracing = Tracing.from_env(self._tracing_exporter)
        install_log_correlation()
        if stride:
            self.engine_tracer = EngineTracer(runner.engine, self.tracing.tracer, stride,
                                              sampler_decides=self.tracing.explicit_sampler)
            self.engine_tracer.install()
        log.info("tracing on: one trace per %s", "candle" if stride == 1 else f"{stride} candles" if stride
                 else "(none: TRACE_REPLAY_SAMPLE_RATIO=0)")

    # --- service -------------------------------------------------------------------------------------------
    async def start(self) -> None:
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
        if self.notifier is not None:
            await self.notifier.start()
            self.notifier.notify("system", f"{self.symbol} worker started ({self.runner.settings.source}, "
                                           f"{self.runner.settings.strategy})", "low")
        if self.performance is not None:
            await self.performance.start()
        self.started = True

    async def stop(self) -> None:
        if self.performance is not None:
            await self.performance.stop()
        if self.notifier is not None:
            summary = self.runner.engine.summary()
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

    # --- hooks ---------------------------------------------------------------------------------------------
    def _on_logged_error(self, kind: str, message: str, levelno: int = logging.ERROR) -> None:
        if self.notifier is not None and kind != "notify":
            self.notifier.error(kind, message, "critical" if levelno >= logging.CRITICAL else "high")

    def _on_breaker(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        if self.notifier is None or breaker.name == "notifications":
            return
        if new is BreakerState.OPEN:
            priority = "critical" if breaker.name in ("data_collection", "trading") else "high"
            self.notifier.notify("system", f"{self.symbol}: circuit breaker {breaker.name} OPEN", priority)
        elif new is BreakerState.CLOSED:
            self.notifier.notify("system", f"{self.symbol}: circuit breaker {breaker.name} closed again", "normal")

    def _on_health(self, report: dict[str, Any]) -> None:
        if self.feed is not None:
            self.feed.publish_health(report)
        if report.get("change") and self.notifier is not None:
            level = report["level"]
            priority = {"critical": "critical", "poor": "high"}.get(level, "normal")
            reasons = "" if report["ready"] else f"\nnot ready: {'; '.join(report['not_ready'])}"
            self.notifier.notify("status", f"{self.symbol} health {report.get('previous_level')} -> {level} "
                                           f"(score {report['score']:.1f}){reasons}", priority)

    # --- facts for health, metrics and commands -------------------------------------------------------------
    def model_status(self) -> dict[str, Any]:
        """``version``, ``age_seconds``, ``required``, ``loaded`` from the strategy's ``status()``."""
        try:
            status = self.runner.engine.strategy.status() or {}
        except Exception:  # noqa: BLE001 - a strategy's status() failing reads as no model
            status = {}
        version = status.get("model_version")
        required = bool(version is not None or "model_dir" in status or "model_loaded" in status
                        or self.runner.settings.model is not None)
        age = status.get("model_age_seconds")
        if age is None and status.get("model_created_at") is not None:
            try:
                age = time.time() - float(status["model_created_at"])
            except (TypeError, ValueError):
                age = None
        loaded = bool(status.get("model_loaded", version is not None))
        return {"version": version, "age_seconds": age, "required": required, "loaded": loaded}

    def cache_lookups(self) -> int:
        """New WebSocket clients served a snapshot so far (the snapshot cache's lookups)."""
        feed = self.feed
        return feed.stat("snapshot_hits") + feed.stat("snapshot_misses") if feed is not None else 0

    def cache_hit_ratio(self) -> float | None:
        """Share of new WebSocket clients served an already built snapshot (FEATURE_CACHE_SIZE / CACHE_TTL_SECONDS),
        None before the first client."""
        total = self.cache_lookups()
        return self.feed.stat("snapshot_hits") / total if self.feed is not None and total else None

    def source_connected(self) -> bool:
        try:
            status = self.runner.source.status()
        except Exception:  # noqa: BLE001 - a source's status() failing reads as disconnected
            return False
        return bool(status.get("connected", True))

    def halt(self, reason: str, source: str, kind: str = "manual") -> None:
        engine = self.runner.engine
        already = engine.risk.state.halts.get(kind) == reason
        engine.halt_entries(reason, kind=kind, durable=True)
        if not already and self.notifier is not None:
            self.notifier.notify("status", f"{self.symbol}: new entries halted via {source}: {reason}", "high")

    def resume(self, source: str, kind: str = "manual") -> None:
        """Lift the ``kind`` halt; ``portfolio`` (the operator's) leaves the worker's own halts in place."""
        engine = self.runner.engine
        was = bool(engine.risk.state.halts)
        engine.resume_entries(kind=kind, durable=True)
        if was and self.notifier is not None:
            self.notifier.notify("status", f"{self.symbol}: entries resumed via {source}", "normal")

    def describe(self, command: str) -> str:
        """Text answers for the Telegram commands."""
        engine = self.runner.engine
        report = self.health.report()
        p = report["portfolio"]
        if command == "status":
            halted = f"\nentries halted: {report['halt_reason']}" if report["entries_halted"] else ""
            return (f"{self.symbol} {report['status']} ({self.runner.settings.source}, "
                    f"{self.runner.settings.strategy})\ncandles {report['candles_processed']}, trades {p['trades']}"
                    f"\nequity {p['equity']} ({p['return_pct']:+.2f} %)\nhealth {report['score']:.1f} "
                    f"{report['level']}{'' if report['ready'] else ' (not ready)'}{halted}")
        if command == "positions":
            lots = engine.portfolio.lots
            if not lots:
                return f"{self.symbol}: no open positions"
            mark = engine.last_candle.close if engine.last_candle else 0.0
            lines = [f"#{lot.id} {lot.quantity} @ {lot.entry_price} (now {mark:g}, "
                     f"{(mark / float(lot.entry_price) - 1) * 100:+.2f} %)" for lot in lots]
            return f"{self.symbol} open positions:\n" + "\n".join(lines)
        if command == "trades":
            if not self.recent.fills:
                return f"{self.symbol}: no trades yet"
            lines = [f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(int(ts) / 1000))} {side} {qty} @ {price}"
                     f" fee {fee}" + (f" pnl {pnl}" if side == "sell" else "") + f" ({reason})"
                     for ts, side, qty, price, fee, pnl, reason in self.recent.fills]
            return f"{self.symbol} last trades:\n" + "\n".join(lines)
        if command == "pnl":
            s = engine.summary()
            return (f"{self.symbol} P&L\nequity {p['equity']} (start {p['initial_capital']})\nreturn "
                    f"{p['return_pct']:+.2f} %, max drawdown {p['max_drawdown_pct']:.2f} %\nrealized "
                    f"{s['realized_pnl']:.2f}, fees {s['fees_paid']:.2f}\nround trips {s['round_trips']}, "
                    f"win rate {s['win_rate']} %")
        if command == "health":
            lines = [f"{name}: {c['score']:.0f} ({c['detail']})" for name, c in report["components"].items()]
            ready = "ready" if report["ready"] else "not ready: " + "; ".join(report["not_ready"])
            return f"{self.symbol} health {report['score']:.1f} {report['level']}, {ready}\n" + "\n".join(lines)
        return "unknown command"


def control_credential(settings: Settings) -> ControlCredential:
    """The control endpoints' credential from CONTROL_TOKEN_FILE / CONTROL_TOKEN; says once when there is none."""
    token = settings.control_token.get_secret_value() if settings.control_token is not None else None
    credential = ControlCredential(token, settings.control_token_file)
    if not credential.required:
        log.warning("control endpoints (POST /control/halt, /control/resume) take no credential: set "
                    "CONTROL_TOKEN or CONTROL_TOKEN_FILE (in a cluster the operator does)")
    return credential


async def start_observability(runner: WorkerRunner) -> None:
    """``SERVICE_FACTORIES`` entry: build the hub, attach it, and run it as one service."""
    obs = Observability(runner, tracing_exporter=getattr(runner, "tracing_exporter", None))
    obs.attach()
    runner.observability = obs  # type: ignore[attr-defined]  # set from outside until the explicit composition
    runner.services.append(obs)


def _fleet_forwarder(settings: Settings) -> FleetForwarder:
    """The notifier client, imported only when configured (it needs aiohttp, which a replay worker never loads)."""
    from papertrader.notify.forward import FleetForwarder

    return FleetForwarder(settings)
