"""Health: a 0-100 score from weighted components, the seed's levels, and the liveness/readiness verdicts.

Every HEALTH_PROBE_INTERVAL (1 s) a cheap tick measures event-loop lag, notices pipeline progress (the engine's
item counter moved), samples memory and disk, and recomputes the level; a level change is published at once.
Every HEALTH_CHECK_INTERVAL (300 s, the seed's setting) a full report is logged and published. ``/health``,
``/readyz`` and the metrics compute the report on demand from cached samples (tens of microseconds).

What the probes mean:

- **alive** (``/healthz``): the event loop answers (a stalled loop cannot answer at all, so the kubelet's probe
  times out; a watchdog thread also logs the stall) and the pipeline is not stuck on what it has: while it works
  (not waiting for market data) it consumes an item within PIPELINE_STUCK_SECONDS (auto: 60 s, whatever the candle
  interval, so a 1d worker that hangs is restarted within a minute and the probe budget). Waiting for market data
  (a live source, a paced replay, the source's start-up) never fails liveness: a quiet market is not a fault and
  a restart would only spend exchange budget; missing data is readiness's business. A replay source whose
  ``next_batch`` never returns is "stuck"; restarting resumes from the checkpoint.
- **ready** (``/readyz``): warmed up, data fresh (live: last candle closed within DATA_STALE_SECONDS; replay:
  not stuck), model loaded where the strategy needs one, data circuit breaker not open.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from papertrader.aio import cancel_and_wait
from papertrader.resilience import BreakerState

if TYPE_CHECKING:
    from papertrader.observability.wiring import Observability

log = logging.getLogger("papertrader.health")

class HealthLevel(StrEnum):
    """The seed's health levels, best first (the plain value is what /health, the feed and Telegram show)."""

    EXCELLENT = "excellent"
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"
    CRITICAL = "critical"


#: the lowest score of each level but the last
LEVELS: tuple[tuple[float, HealthLevel], ...] = (
    (90.0, HealthLevel.EXCELLENT), (75.0, HealthLevel.GOOD), (60.0, HealthLevel.FAIR), (40.0, HealthLevel.POOR))

#: component -> weight (sums to 100)
WEIGHTS: dict[str, float] = {
    "data_freshness": 20.0,
    "data_quality": 20.0,
    "model": 15.0,
    "circuit_breakers": 15.0,
    "pipeline": 10.0,
    "ledger": 10.0,
    "event_loop": 5.0,
    "memory": 5.0,
}

MEMORY_GOOD_BYTES = 1 << 30  # the seed's "keep under 1 GB"
AUTO_STUCK_SECONDS = 60.0  # working on what it has without progress for this long: stuck (any candle interval)


def level_for(score: float) -> HealthLevel:
    """The seed's levels: excellent >= 90, good >= 75, fair >= 60, poor >= 40, critical below."""
    for threshold, name in LEVELS:
        if score >= threshold:
            return name
    return HealthLevel.CRITICAL


class HealthMonitor:
    """Scores one worker's health and decides liveness and readiness."""

    def __init__(self, obs: Observability) -> None:
        self.obs = obs
        settings = obs.runner.settings
        interval_s = settings.interval_ms / 1000.0
        self.interval_s = interval_s
        self.stuck_after = settings.pipeline_stuck_seconds or AUTO_STUCK_SECONDS
        self.stale_after = settings.data_stale_seconds or 2 * interval_s + 30.0
        self.stall_after = settings.event_loop_stall_seconds
        self.probe_interval = settings.health_probe_interval
        self.report_interval = settings.health_check_interval
        self.loop_lag = 0.0
        self.max_loop_lag = 0.0
        self.last_tick = time.monotonic()
        self.last_progress = time.monotonic()
        self._last_items = obs.runner.engine.items
        self.memory_bytes = 0  # the worker and its WebSocket fan-out process (the pod's processes)
        self.fanout_memory_bytes = 0
        self.disk_free_ratio = 1.0
        self.level: str | None = None
        self.listeners: list[Callable[[dict[str, Any]], None]] = []  # full reports and level changes
        self._task: asyncio.Task[None] | None = None
        self._watchdog: threading.Thread | None = None
        self._stopping = threading.Event()
        self._process: Any = None
        self._fanout_process: Any = None
        self._sample()

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.last_tick = self.last_progress = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="health-monitor")
        self._watchdog = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._watchdog.start()

    async def stop(self) -> None:
        self._stopping.set()
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        next_report = time.monotonic() + self.report_interval
        while True:
            expected = time.monotonic() + self.probe_interval
            await asyncio.sleep(self.probe_interval)
            now = time.monotonic()
            self.loop_lag = max(0.0, now - expected)
            self.max_loop_lag = max(self.max_loop_lag, self.loop_lag)
            self.last_tick = now
            self._sample()
            report = self.report()
            if report["level"] != self.level:
                if self.level is not None:
                    log.info("health level %s -> %s (score %.1f)", self.level, report["level"], report["score"])
                    self._publish(dict(report, change=True, previous_level=self.level))
                self.level = report["level"]
            if now >= next_report:
                next_report = now + self.report_interval
                log.info("Health: %s score %.1f (%s)%s", report["symbol"], report["score"], report["level"],
                         "" if report["ready"] else f", not ready: {'; '.join(report['not_ready'])}")
                self._publish(dict(report, change=False))

    def _publish(self, report: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(report)
            except Exception:  # noqa: BLE001 - a listener must never stop the health loop
                log.exception("health listener failed")

    def _watch(self) -> None:
        """Logs an event-loop stall from outside the loop (the loop itself cannot)."""
        reported = False
        while not self._stopping.wait(1.0):
            stalled = time.monotonic() - self.last_tick - self.probe_interval
            if stalled > self.stall_after and not reported:
                log.error("event loop stalled for %.1f s (EVENT_LOOP_STALL_SECONDS %.0f): /healthz cannot answer",
                          stalled, self.stall_after)
                reported = True
            elif stalled <= self.stall_after:
                reported = False

    def _fanout_rss(self, psutil: Any) -> int:
        feed = self.obs.feed
        pid = feed.fanout_pid if feed is not None else None
        if pid is None:
            return 0
        if self._fanout_process is None or self._fanout_process.pid != pid:
            self._fanout_process = psutil.Process(pid)
        try:
            return int(self._fanout_process.memory_info().rss)
        except psutil.Error:  # it exited just now; the feed restarts it
            return 0

    def _sample(self) -> None:
        runner = self.obs.runner
        items = runner.engine.items
        now = time.monotonic()
        if items != self._last_items:
            self._last_items = items
            self.last_progress = now
        try:
            import psutil

            if self._process is None:
                self._process = psutil.Process(os.getpid())
            self.fanout_memory_bytes = self._fanout_rss(psutil)
            self.memory_bytes = self._process.memory_info().rss + self.fanout_memory_bytes
        except Exception:  # noqa: BLE001 - psutil missing or restricted
            self.memory_bytes = 0
        try:
            usage = shutil.disk_usage(runner.settings.state_dir)
            self.disk_free_ratio = usage.free / usage.total if usage.total else 1.0
        except OSError:
            self.disk_free_ratio = 0.0

    # --- verdicts ------------------------------------------------------------------------------------------
    def progress_age(self) -> float:
        items = self.obs.runner.engine.items
        if items != self._last_items:  # progress since the last tick
            self._last_items = items
            self.last_progress = time.monotonic()
        return time.monotonic() - self.last_progress

    def working_age(self) -> float:
        """Seconds the pipeline has worked on what it has without consuming an item; 0 while it waits for data."""
        runner = self.obs.runner
        age = self.progress_age()
        if runner.waiting_since is not None:
            return 0.0
        return min(age, max(0.0, time.monotonic() - runner.last_wait_end))

    def stuck(self) -> bool:
        """No progress past the deadline while working. Not while storage fails: then trading is paused on purpose
        and retried (``/readyz`` says why); a restart would not help and could loop."""
        runner = self.obs.runner
        return not runner.finished and runner.storage_error is None and self.working_age() > self.stuck_after

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        lag = time.monotonic() - self.last_tick - self.probe_interval
        stalled = max(self.loop_lag, lag) > self.stall_after
        stuck = self.stuck()
        detail: dict[str, Any] = {
            "alive": not (stalled or stuck),
            "pipeline_stuck": stuck,
            "seconds_since_progress": round(self.progress_age(), 3),
            "seconds_working_without_progress": round(self.working_age(), 3),
            "waiting_for_market_data": self.obs.runner.waiting_since is not None,
            "pipeline_stuck_seconds": self.stuck_after,
            "event_loop_lag_seconds": round(max(self.loop_lag, lag, 0.0), 4),
            "finished": self.obs.runner.finished,
        }
        return detail["alive"], detail

    def data_age(self) -> float | None:
        """Seconds since the last candle closed, on the exchange's clock when the source keeps one (so local clock
        skew does not make data look stale or fresh), else on the local clock; None before the first candle."""
        status_age = self.obs.runner.source.status().get("data_age_ms")
        if status_age is not None:
            return status_age / 1000.0
        candle = self.obs.runner.engine.last_candle
        if candle is None:
            return None
        return time.time() - (candle.ts + self.obs.runner.settings.interval_ms) / 1000.0

    def not_ready_reasons(self) -> list[str]:
        obs = self.obs
        runner, engine = obs.runner, obs.runner.engine
        reasons: list[str] = []
        if engine.accepted < engine.warmup:
            reasons.append(f"warming up ({engine.accepted}/{engine.warmup} candles)")
        if runner.source.live:
            age = self.data_age()
            if age is None:
                reasons.append("no market data yet")
            elif age > self.stale_after:
                reasons.append(f"stale data: last candle closed {age:.0f} s ago (limit {self.stale_after:.0f} s)")
            if not obs.source_connected():
                reasons.append("market data source disconnected")
        elif self.stuck():
            reasons.append(f"no candle for {self.progress_age():.0f} s")
        model = obs.model_status()
        if model.get("required") and not model.get("loaded"):
            reasons.append("model not loaded")
        breaker = runner.breakers.get("data_collection")
        if breaker is not None and breaker.is_open:
            reasons.append("data_collection circuit breaker open")
        if runner.storage_error is not None:
            reasons.append(f"ledger commits failing: {runner.storage_error}")
        return reasons

    # --- score -------------------------------------------------------------------------------------------
    def components(self) -> dict[str, dict[str, Any]]:
        obs = self.obs
        runner, engine = obs.runner, obs.runner.engine
        out: dict[str, dict[str, Any]] = {}

        # data freshness
        if runner.source.live:
            age = self.data_age()
            if age is None:
                score, detail = 0.0, "no candle yet"
            else:
                grace = self.interval_s + 15.0
                score = 100.0 if age <= grace else max(0.0, 100.0 * (1 - (age - grace) / max(self.stale_after, 1)))
                detail = f"last candle closed {age:.0f} s ago"
        else:
            age = self.progress_age()
            score = 100.0 if runner.finished or age <= self.stuck_after / 2 else (
                50.0 if age <= self.stuck_after else 0.0)
            detail = "run finished" if runner.finished else f"last item {age:.1f} s ago"
        out["data_freshness"] = {"score": round(score, 1), "detail": detail}

        quality, parts = engine.gate.score()
        out["data_quality"] = {"score": quality, "detail": ", ".join(f"{k} {v:.0f}" for k, v in parts.items())}

        model = obs.model_status()
        if not model.get("required"):
            out["model"] = {"score": 100.0, "detail": "strategy needs no model"}
        elif not model.get("loaded"):
            out["model"] = {"score": 0.0, "detail": "model not loaded"}
        else:
            age_s = model.get("age_seconds")
            max_age = runner.settings.model_max_age_seconds
            score = 100.0 if age_s is None or age_s <= max_age else 60.0
            out["model"] = {"score": score, "detail": f"version {model.get('version')}"
                            + (f", {age_s / 86400:.1f} days old" if age_s is not None else "")}

        states = {name: b.state for name, b in runner.breakers.breakers.items()}
        opened = [n for n, st in states.items() if st is BreakerState.OPEN]
        half = [n for n, st in states.items() if st is BreakerState.HALF_OPEN]
        score = 0.0 if "data_collection" in opened else max(0.0, 100.0 - 40.0 * len(opened) - 15.0 * len(half))
        out["circuit_breakers"] = {"score": score, "detail": ", ".join(f"{n} {st}" for n, st in states.items())}

        stuck = self.stuck()
        age = self.progress_age()
        out["pipeline"] = {"score": 0.0 if stuck else 100.0,
                           "detail": "finished" if runner.finished else f"last item {age:.1f} s ago"
                           + (" (stuck)" if stuck else "")}

        free = self.disk_free_ratio
        score = 100.0 if free >= 0.10 else (50.0 if free >= 0.05 else 0.0)
        detail = f"disk {free * 100:.1f} % free"
        if runner.storage_error is not None:
            score, detail = 0.0, f"ledger commits failing: {runner.storage_error}; {detail}"
        out["ledger"] = {"score": score, "detail": detail}

        lag = max(self.loop_lag, time.monotonic() - self.last_tick - self.probe_interval, 0.0)
        score = 100.0 if lag < 0.1 else 75.0 if lag < 1.0 else 40.0 if lag < self.stall_after else 0.0
        out["event_loop"] = {"score": score, "detail": f"lag {lag * 1000:.1f} ms"}

        rss = self.memory_bytes
        score = 100.0 if rss <= MEMORY_GOOD_BYTES else 50.0 if rss <= 2 * MEMORY_GOOD_BYTES else 0.0
        out["memory"] = {"score": score, "detail": f"rss {rss / 1e6:.0f} MB"
                         + (f" (WebSocket fan-out {self.fanout_memory_bytes / 1e6:.0f} MB)"
                            if self.fanout_memory_bytes else "")}
        return out

    def report(self) -> dict[str, Any]:
        """The ``GET /health`` document (docs/worker-http.md)."""
        obs = self.obs
        runner, engine = obs.runner, obs.runner.engine
        components = self.components()
        score = round(sum(WEIGHTS[name] * c["score"] / 100.0 for name, c in components.items()), 1)
        for name, c in components.items():
            c["weight"] = WEIGHTS[name]
        reasons = self.not_ready_reasons()
        portfolio, risk = engine.portfolio, engine.risk
        candle = engine.last_candle
        snapshot = portfolio.snapshot(candle.ts, candle.close) if candle is not None else None
        equity = snapshot.equity if snapshot is not None else portfolio.cash
        position_value = snapshot.position_value if snapshot is not None else portfolio.cash - portfolio.cash
        initial = portfolio.initial_capital
        equity_f = float(equity)
        halts = risk.state.halts
        model = obs.model_status()
        if runner.finished:
            status = "finished"
        elif self.stuck():
            status = "stuck"
        elif candle is None:
            status = "starting"
        else:
            status = "running"
        return {
            "symbol": engine.symbol,
            "score": score,
            "level": level_for(score),
            "ready": not reasons,
            "not_ready": reasons,
            "status": status,
            "components": components,
            "portfolio": {
                "initial_capital": str(initial),
                "cash": str(portfolio.cash),
                "position_value": str(position_value),
                "equity": str(equity),
                "return_pct": round(float((equity - initial) / initial * 100), 4) if initial else 0.0,
                "drawdown_pct": round(risk.current_drawdown(equity_f) * 100, 4),
                "max_drawdown_pct": round(risk.state.max_drawdown_pct * 100, 4),
                "open_positions": len(portfolio.lots),
                "trades": portfolio.fills,
            },
            "candles_processed": engine.accepted,
            "last_candle_ms": candle.ts if candle is not None else None,
            "model_version": model.get("version"),
            "model_age_seconds": model.get("age_seconds"),
            "entries_halted": bool(halts),
            "halt_reason": "; ".join(f"{kind}: {reason}" for kind, reason in sorted(halts.items())) or None,
            "halts": dict(halts),
            "circuit_breakers": {name: b.state.value for name, b in runner.breakers.breakers.items()},
            "websocket_fanout": obs.feed.fanout_status() if obs.feed is not None else None,
        }
