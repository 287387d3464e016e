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
from typing import TYPE_CHECKING, Any, Protocol

from papertrader.aio import cancel_and_wait
from papertrader.ledger.returns import drawdown, return_pct
from papertrader.resilience import BreakerState

if TYPE_CHECKING:
    from papertrader.config_groups import HealthSettings
    from papertrader.engine.facts import WorkerFacts, WorkerView

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


class Fanout(Protocol):
    """The WebSocket feed's fan-out process, as health sees it."""

    @property
    def fanout_pid(self) -> int | None: ...

    def fanout_status(self) -> dict[str, Any]: ...


class HealthMonitor:
    """Scores one worker's health and decides liveness and readiness, from the worker's facts."""

    def __init__(self, view: WorkerView, settings: HealthSettings, fanout: Fanout | None = None) -> None:
        self.view = view
        self.fanout = fanout
        self.state_dir = settings.state_dir
        interval_s = settings.interval_ms / 1000.0
        self.interval_s = interval_s
        self.stuck_after = settings.pipeline_stuck_seconds or AUTO_STUCK_SECONDS
        self.stale_after = settings.data_stale_seconds or 2 * interval_s + 30.0
        self.stall_after = settings.event_loop_stall_seconds
        self.probe_interval = settings.health_probe_interval
        self.report_interval = settings.health_check_interval
        self.model_max_age = settings.model_max_age_seconds
        self.loop_lag = 0.0
        self.max_loop_lag = 0.0
        self.last_tick = time.monotonic()
        self.last_progress = time.monotonic()
        self._last_items: int | None = None  # the first look counts as progress
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
        self._sample_resources()  # not the facts: nothing may ask a live source before it has started

    # --- lifecycle -----------------------------------------------------------------------------------------
    def set_fanout(self, fanout: Fanout | None) -> None:
        """Watch this fan-out process (None: the feed is off, e.g. its port could not be bound)."""
        self.fanout = fanout

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
        pid = self.fanout.fanout_pid if self.fanout is not None else None
        if pid is None:
            return 0
        if self._fanout_process is None or self._fanout_process.pid != pid:
            self._fanout_process = psutil.Process(pid)
        try:
            return int(self._fanout_process.memory_info().rss)
        except psutil.Error:  # it exited just now; the feed restarts it
            return 0

    def _sample(self) -> None:
        self._note_progress(self.view.facts().items)
        self._sample_resources()

    def _sample_resources(self) -> None:
        """Memory (the worker and its fan-out process) and the state directory's free disk."""
        try:
            import psutil

            if self._process is None:
                self._process = psutil.Process(os.getpid())
            self.fanout_memory_bytes = self._fanout_rss(psutil)
            self.memory_bytes = self._process.memory_info().rss + self.fanout_memory_bytes
        except Exception:  # noqa: BLE001 - psutil missing or restricted
            self.memory_bytes = 0
        try:
            usage = shutil.disk_usage(self.state_dir)
            self.disk_free_ratio = usage.free / usage.total if usage.total else 1.0
        except OSError:
            self.disk_free_ratio = 0.0

    # --- verdicts ------------------------------------------------------------------------------------------
    def _note_progress(self, items: int) -> None:
        if items != self._last_items:  # progress since the last look
            self._last_items = items
            self.last_progress = time.monotonic()

    def _facts(self, facts: WorkerFacts | None) -> WorkerFacts:
        return facts if facts is not None else self.view.facts()

    def progress_age(self, facts: WorkerFacts | None = None) -> float:
        self._note_progress(self._facts(facts).items)
        return time.monotonic() - self.last_progress

    def working_age(self, facts: WorkerFacts | None = None) -> float:
        """Seconds the pipeline has worked on what it has without consuming an item; 0 while it waits for data."""
        f = self._facts(facts)
        age = self.progress_age(f)
        if f.waiting_since is not None:
            return 0.0
        return min(age, max(0.0, time.monotonic() - f.last_wait_end))

    def stuck(self, facts: WorkerFacts | None = None) -> bool:
        """No progress past the deadline while working. Not while storage fails: then trading is paused on purpose
        and retried (``/readyz`` says why); a restart would not help and could loop."""
        f = self._facts(facts)
        return not f.finished and f.storage_error is None and self.working_age(f) > self.stuck_after

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        f = self.view.facts()
        lag = time.monotonic() - self.last_tick - self.probe_interval
        stalled = max(self.loop_lag, lag) > self.stall_after
        stuck = self.stuck(f)
        alive = not (stalled or stuck)
        detail: dict[str, Any] = {
            "alive": alive,
            "pipeline_stuck": stuck,
            "seconds_since_progress": round(self.progress_age(f), 3),
            "seconds_working_without_progress": round(self.working_age(f), 3),
            "waiting_for_market_data": f.waiting_since is not None,
            "pipeline_stuck_seconds": self.stuck_after,
            "event_loop_lag_seconds": round(max(self.loop_lag, lag, 0.0), 4),
            "finished": f.finished,
        }
        return alive, detail

    def data_age(self, facts: WorkerFacts | None = None) -> float | None:
        """Seconds since the last candle closed, on the exchange's clock when the source keeps one (so local clock
        skew does not make data look stale or fresh), else on the local clock; None before the first candle."""
        f = self._facts(facts)
        if f.data_age_ms is not None:
            return f.data_age_ms / 1000.0
        if f.last_candle is None:
            return None
        return time.time() - (f.last_candle.ts + f.interval_ms) / 1000.0

    def not_ready_reasons(self, facts: WorkerFacts | None = None) -> list[str]:
        f = self._facts(facts)
        reasons: list[str] = []
        if f.accepted < f.warmup:
            reasons.append(f"warming up ({f.accepted}/{f.warmup} candles)")
        if f.live:
            age = self.data_age(f)
            if age is None:
                reasons.append("no market data yet")
            elif age > self.stale_after:
                reasons.append(f"stale data: last candle closed {age:.0f} s ago (limit {self.stale_after:.0f} s)")
            if not f.source_connected:
                reasons.append("market data source disconnected")
        elif self.stuck(f):
            reasons.append(f"no candle for {self.progress_age(f):.0f} s")
        if f.model.required and not f.model.loaded:
            reasons.append("model not loaded")
        if f.breaker_open("data_collection"):
            reasons.append("data_collection circuit breaker open")
        if f.storage_error is not None:
            reasons.append(f"ledger commits failing: {f.storage_error}")
        return reasons

    # --- score -------------------------------------------------------------------------------------------
    def components(self, facts: WorkerFacts | None = None) -> dict[str, dict[str, Any]]:
        f = self._facts(facts)
        out: dict[str, dict[str, Any]] = {}

        # data freshness
        if f.live:
            age = self.data_age(f)
            if age is None:
                score, detail = 0.0, "no candle yet"
            else:
                grace = self.interval_s + 15.0
                score = 100.0 if age <= grace else max(0.0, 100.0 * (1 - (age - grace) / max(self.stale_after, 1)))
                detail = f"last candle closed {age:.0f} s ago"
        else:
            age = self.progress_age(f)
            score = 100.0 if f.finished or age <= self.stuck_after / 2 else (
                50.0 if age <= self.stuck_after else 0.0)
            detail = "run finished" if f.finished else f"last item {age:.1f} s ago"
        out["data_freshness"] = {"score": round(score, 1), "detail": detail}

        out["data_quality"] = {"score": f.quality_score,
                               "detail": ", ".join(f"{k} {v:.0f}" for k, v in f.quality_parts.items())}

        model = f.model
        if not model.required:
            out["model"] = {"score": 100.0, "detail": "strategy needs no model"}
        elif not model.loaded:
            out["model"] = {"score": 0.0, "detail": "model not loaded"}
        else:
            age_s = model.age_seconds
            score = 100.0 if age_s is None or age_s <= self.model_max_age else 60.0
            out["model"] = {"score": score, "detail": f"version {model.version}"
                            + (f", {age_s / 86400:.1f} days old" if age_s is not None else "")}

        states = {name: state.value for name, state in f.breakers.items()}
        opened = [n for n, st in states.items() if st == BreakerState.OPEN]
        half = [n for n, st in states.items() if st == BreakerState.HALF_OPEN]
        score = 0.0 if "data_collection" in opened else max(0.0, 100.0 - 40.0 * len(opened) - 15.0 * len(half))
        out["circuit_breakers"] = {"score": score, "detail": ", ".join(f"{n} {st}" for n, st in states.items())}

        stuck = self.stuck(f)
        age = self.progress_age(f)
        out["pipeline"] = {"score": 0.0 if stuck else 100.0,
                           "detail": "finished" if f.finished else f"last item {age:.1f} s ago"
                           + (" (stuck)" if stuck else "")}

        free = self.disk_free_ratio
        score = 100.0 if free >= 0.10 else (50.0 if free >= 0.05 else 0.0)
        detail = f"disk {free * 100:.1f} % free"
        if f.storage_error is not None:
            score, detail = 0.0, f"ledger commits failing: {f.storage_error}; {detail}"
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
        f = self.view.facts()
        components = self.components(f)
        score = round(sum(WEIGHTS[name] * c["score"] / 100.0 for name, c in components.items()), 1)
        for name, c in components.items():
            c["weight"] = WEIGHTS[name]
        reasons = self.not_ready_reasons(f)
        if f.finished:
            status = "finished"
        elif self.stuck(f):
            status = "stuck"
        elif f.last_candle is None:
            status = "starting"
        else:
            status = "running"
        return {
            "symbol": f.symbol,
            "score": score,
            "level": level_for(score),
            "ready": not reasons,
            "not_ready": reasons,
            "status": status,
            "components": components,
            "portfolio": {
                "initial_capital": str(f.initial_capital),
                "cash": str(f.cash),
                "position_value": str(f.position_value),
                "equity": str(f.equity),
                "return_pct": round(return_pct(f.equity, f.initial_capital), 4),
                "drawdown_pct": round(drawdown(f.peak_equity, float(f.equity)) * 100, 4),
                "max_drawdown_pct": round(f.max_drawdown * 100, 4),
                "open_positions": len(f.lots),
                "trades": f.trades,
            },
            "candles_processed": f.accepted,
            "last_candle_ms": f.last_candle.ts if f.last_candle is not None else None,
            "model_version": f.model.version,
            "model_age_seconds": f.model.age_seconds,
            "entries_halted": bool(f.halts),
            "halt_reason": f.halt_reason,
            "halts": dict(f.halts),
            "circuit_breakers": {name: state.value for name, state in f.breakers.items()},
            "websocket_fanout": self.fanout.fanout_status() if self.fanout is not None else None,
        }
