"""The seed's performance monitoring without Prometheus: a periodic report in ``performance.log`` and custom
alert rules evaluated against it, sent as notifications (``send_performance_alert``).

Report metrics (names usable in rules): ``candles_per_minute``, ``predictions_per_minute``, ``api_response_time_s``
(mean exchange request time in the period), ``error_rate_pct`` (errors per 100 candles in the period),
``errors_per_minute``, ``memory_mb``, ``cache_hit_ratio`` (0-1, the WebSocket snapshot cache, once 20 clients were
served), ``tick_p99_s``, ``health_score``, ``data_quality_score``, ``drawdown_pct``, ``win_rate_pct``.

Rules (PERFORMANCE_ALERT_RULES, JSON or YAML list): ``{"metric": ..., "op": ">"|"<"|">="|"<=", "threshold": x,
"recommendation": "...", "alert_type": "..."}``. A rule alerts when it starts to hold and again at most once
an hour while it keeps holding. Defaults are the seed's targets (memory under 1 GB, API under 1 s, error rate
under 1 %, cache hit rate over 70 %).
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from papertrader.aio import cancel_and_wait
from papertrader.ledger.returns import drawdown
from papertrader.logs import PERFORMANCE_LOGGER
from papertrader.observability.metrics import FeedStats, MetricsListener, exchange_request_stats

if TYPE_CHECKING:
    from papertrader.config_groups import PerformanceSettings
    from papertrader.engine.facts import WorkerView
    from papertrader.observability.health import HealthMonitor

log = logging.getLogger("papertrader.observability")
perf_log = logging.getLogger(PERFORMANCE_LOGGER)

OPS = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}
REALERT_SECONDS = 3600.0
MIN_CACHE_LOOKUPS = 20  # a hit ratio from a handful of WebSocket clients says nothing: no value, no alert


@dataclass
class AlertRule:
    metric: str
    op: str
    threshold: float
    recommendation: str
    alert_type: str = "Performance"

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)


DEFAULT_RULES = (
    AlertRule("memory_mb", ">", 1024.0, "Reduce FEATURE_CACHE_SIZE or the number of symbols per worker", "Memory"),
    AlertRule("api_response_time_s", ">", 1.0, "Check network latency to the exchange; API calls are slow", "API"),
    AlertRule("error_rate_pct", ">", 1.0, "Look at errors.log for the failing component", "Errors"),
    AlertRule("cache_hit_ratio", "<", 0.7, "Clients reconnect often or each needs its own snapshot: check "
              "FEATURE_CACHE_SIZE > 0 and CACHE_TTL_SECONDS", "Cache"),
)


def parse_rules(text: str | None) -> list[AlertRule]:
    """PERFORMANCE_ALERT_RULES -> rules; raises ValueError naming the problem."""
    if not text:
        return list(DEFAULT_RULES)
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, list):
        raise ValueError("PERFORMANCE_ALERT_RULES: expected a list of rules")
    rules = []
    for raw in loaded:
        if not isinstance(raw, dict) or "metric" not in raw or "threshold" not in raw:
            raise ValueError("PERFORMANCE_ALERT_RULES: each rule needs metric and threshold")
        op = str(raw.get("op", ">"))
        if op not in OPS:
            raise ValueError(f"PERFORMANCE_ALERT_RULES: op must be one of {', '.join(OPS)}")
        rules.append(AlertRule(str(raw["metric"]), op, float(raw["threshold"]),
                               str(raw.get("recommendation", "")), str(raw.get("alert_type", "Custom"))))
    return rules


class AlertSink(Protocol):
    """Where performance alerts go (the notifier)."""

    def send_performance_alert(self, alert_type: str, metric_name: str, current_value: float, threshold: float,
                               recommendation: str) -> bool: ...


class PerformanceMonitor:
    """Writes the periodic report and evaluates alert rules."""

    def __init__(self, view: WorkerView, settings: PerformanceSettings, listener: MetricsListener,
                 health: HealthMonitor, feed: FeedStats | None = None, alerts: AlertSink | None = None,
                 rules: list[AlertRule] | None = None) -> None:
        self.view = view
        self.listener = listener
        self.health = health
        self.feed = feed
        self.alerts = alerts
        self.interval = settings.performance_report_interval
        self.rules = rules if rules is not None else parse_rules(settings.performance_alert_rules)
        self.symbol = settings.symbol
        self._last: dict[str, Any] = self._counters()
        self._alerted: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.reports = 0
        self.alerts_sent = 0

    def _counters(self) -> dict[str, Any]:
        requests = exchange_request_stats()
        return {
            "time": time.monotonic(),
            "candles": self.view.summary()["candles"],  # not facts(): a live source may not have started yet
            "predictions": self.listener.predictions,
            "errors": self.listener.errors.total,
            "api_count": sum(c for c, _ in requests.values()),
            "api_seconds": sum(s for _, s in requests.values()),
        }

    def sample(self) -> dict[str, float]:
        """The report's metrics since the previous sample."""
        now = self._counters()
        last, self._last = self._last, now
        minutes = max(1e-9, (now["time"] - last["time"]) / 60.0)
        candles = now["candles"] - last["candles"]
        errors = now["errors"] - last["errors"]
        api_count = now["api_count"] - last["api_count"]
        f = self.view.facts()
        values: dict[str, float] = {
            "candles_per_minute": candles / minutes,
            "predictions_per_minute": (now["predictions"] - last["predictions"]) / minutes,
            "api_response_time_s": (now["api_seconds"] - last["api_seconds"]) / api_count if api_count else 0.0,
            "errors_per_minute": errors / minutes,
            "error_rate_pct": 100.0 * errors / candles if candles else (100.0 if errors else 0.0),
            "memory_mb": self.health.memory_bytes / 1e6,
            "tick_p99_s": self.listener.tick.quantile(0.99),
            "health_score": self.health.report()["score"],
            "data_quality_score": f.quality_score,
            "drawdown_pct": drawdown(f.peak_equity, f.equity_f) * 100.0,
            "win_rate_pct": 100.0 * f.winning_lots / f.closed_lots if f.closed_lots else 0.0,
        }
        feed = self.feed
        ratio = feed.cache_hit_ratio() if feed is not None else None
        if ratio is not None and feed is not None and feed.cache_lookups() >= MIN_CACHE_LOOKUPS:
            values["cache_hit_ratio"] = ratio
        return values

    def report(self) -> dict[str, float]:
        values = self.sample()
        self.reports += 1
        perf_log.info("Performance report %s: %s", self.symbol,
                      ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
        self.evaluate(values)
        return values

    def evaluate(self, values: dict[str, float]) -> list[AlertRule]:
        fired = []
        now = time.monotonic()
        for index, rule in enumerate(self.rules):
            value = values.get(rule.metric)
            if value is None:
                continue
            if not rule.holds(value):
                self._alerted.pop(index, None)
                continue
            last = self._alerted.get(index)
            if last is not None and now - last < REALERT_SECONDS:
                continue
            self._alerted[index] = now
            fired.append(rule)
            perf_log.warning("Performance alert %s: %s=%.4g %s %.4g - %s", rule.alert_type, rule.metric, value,
                             rule.op, rule.threshold, rule.recommendation)
            if self.alerts is not None:
                if self.alerts.send_performance_alert(rule.alert_type, rule.metric, value, rule.threshold,
                                                            rule.recommendation):
                    self.alerts_sent += 1
        return fired

    async def start(self) -> None:
        self._last = self._counters()  # the first period starts now (after a restart's checkpoint is restored)
        self._task = asyncio.create_task(self._run(), name="performance-report")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        try:
            self.report()
        except Exception:  # noqa: BLE001 - best effort final report
            log.exception("final performance report failed")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.report()
            except Exception:  # noqa: BLE001 - a report failing must not end the loop
                log.exception("performance report failed")
