"""Prometheus metrics for one worker, read at scrape time.

The engine's hot path never touches prometheus_client: most values are read from the engine, the source, the
breakers and the services when Prometheus scrapes (:class:`WorkerCollector`), and the few per-event values
(tick and prediction durations, trades by side, errors by kind) are plain Python counters and
:class:`FastHistogram` bucket arrays kept by :class:`MetricsListener` (a few hundred nanoseconds per event).

Exchange clients report request durations with :func:`observe_exchange_request` (process-wide).
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import operator
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from papertrader.events import BaseListener, Fill, Prediction
from papertrader.ledger.returns import drawdown, return_pct

if TYPE_CHECKING:
    from papertrader.engine.facts import WorkerView
    from papertrader.market.candle import Candle
    from papertrader.observability.health import HealthMonitor

#: family name -> (type, help, labels). Counters are named with their ``_total`` suffix here.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "papertrader_candles_processed_total": ("counter", "Accepted candles run through the pipeline", ("symbol",)),
    "papertrader_trades_total": ("counter", "Paper fills, by side", ("symbol", "side")),
    "papertrader_equity": ("gauge", "Cash plus position value at the last close, quote currency", ("symbol",)),
    "papertrader_open_positions": ("gauge", "Open lots", ("symbol",)),
    "papertrader_tick_duration_seconds": (
        "histogram", "Candle in to decision persisted (replay: pipeline only; live: pipeline + commit)",
        ("symbol",)),
    "papertrader_prediction_duration_seconds": ("histogram", "Model prediction time", ("symbol",)),
    "papertrader_data_quality_score": ("gauge", "Rolling data-quality score 0-100", ("symbol",)),
    "papertrader_health_score": ("gauge", "Health score 0-100", ("symbol",)),
    "papertrader_circuit_breaker_open": ("gauge", "1 while the circuit breaker is OPEN", ("breaker",)),
    "papertrader_return_pct": ("gauge", "Return on initial capital, percent", ("symbol",)),
    "papertrader_drawdown_pct": ("gauge", "Drawdown from the equity peak, percent", ("symbol",)),
    "papertrader_max_drawdown_pct": ("gauge", "Largest drawdown so far, percent", ("symbol",)),
    "papertrader_last_candle_timestamp_seconds": (
        "gauge", "Open time of the last processed candle, Unix seconds", ("symbol",)),
    "papertrader_price": ("gauge", "Close of the last processed candle", ("symbol",)),
    "papertrader_rejected_candles_total": ("counter", "Candles rejected by the quality gate", ("symbol", "reason")),
    "papertrader_gaps_total": ("counter", "Gaps (missing candles) seen by the quality gate", ("symbol",)),
    "papertrader_model_info": ("gauge", "1 for the loaded model version", ("symbol", "version")),
    "papertrader_model_age_seconds": ("gauge", "Age of the loaded model", ("symbol",)),
    "papertrader_notifications_sent_total": ("counter", "Telegram messages delivered", ("category",)),
    "papertrader_notifications_dropped_total": (
        "counter", "Notifications dropped (queue full, hourly limit, delivery failed)", ("category",)),
    "papertrader_notification_queue_size": ("gauge", "Notifications waiting to be sent", ()),
    "papertrader_ws_clients": ("gauge", "Connected WebSocket clients", ()),
    "papertrader_feature_cache_hit_ratio": ("gauge", "Feature cache hits / lookups", ("symbol",)),
    "papertrader_source_connected": ("gauge", "1 while the market-data source is connected", ("symbol",)),
    "papertrader_exchange_request_duration_seconds": ("histogram", "Exchange API request time", ("endpoint",)),
    "papertrader_errors_total": ("counter", "Errors, by kind", ("kind",)),
    "papertrader_entries_halted": ("gauge", "1 while new entries are halted", ("symbol",)),
    "papertrader_ready": ("gauge", "1 while /readyz succeeds", ("symbol",)),
    "papertrader_event_loop_lag_seconds": ("gauge", "Last measured event-loop lag", ()),
    "papertrader_ws_clients_dropped_total": ("counter", "WebSocket clients disconnected as too slow", ()),
}

_PROCESS_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
                    "process_open_fds", "process_max_fds", "process_start_time_seconds")


def exported_metric_names() -> set[str]:
    """Every metric name a worker exports, as queried in PromQL.

    Counters appear with their ``_total`` suffix, gauges as is, histograms as the family name plus the
    ``_bucket``, ``_sum`` and ``_count`` series; the standard ``process_*`` metrics are included."""
    names: set[str] = set(_PROCESS_METRICS)
    for name, (kind, _, _) in METRICS.items():
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


TICK_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5)
PREDICTION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class FastHistogram:
    """A histogram with fixed buckets and no locks: ``observe`` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def observe_many(self, values: Iterable[float]) -> None:
        """``observe`` each value in turn (the same sum, added in the same order)."""
        values = list(values)
        ordered = sorted(values)
        counts = self.counts
        below = 0  # values <= the previous bound (bucket i holds bounds[i - 1] < value <= bounds[i])
        for index, bound in enumerate(self.bounds):
            upto = bisect.bisect_right(ordered, bound)
            counts[index] += upto - below
            below = upto
        counts[-1] += len(ordered) - below
        self.sum = functools.reduce(operator.add, values, self.sum)  # added one by one, in order, as observe does
        self.count += len(values)

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs including +Inf."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts):
            running += count
            out.append((_le(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (for reports)."""
        total = sum(self.counts)
        if not total:
            return 0.0
        target = q * total
        running = 0
        for bound, count in zip(self.bounds, self.counts):
            running += count
            if running >= target:
                return bound
        return math.inf


def _le(bound: float) -> str:
    return repr(float(bound))


# --- process-wide exchange request timings ------------------------------------------------------------------
_exchange_lock = threading.Lock()
_exchange_requests: dict[str, FastHistogram] = {}


def observe_exchange_request(endpoint: str, seconds: float) -> None:
    """Record one exchange API request (call from the exchange client; ``endpoint`` like ``GET /candles``)."""
    histogram = _exchange_requests.get(endpoint)
    if histogram is None:
        with _exchange_lock:
            histogram = _exchange_requests.setdefault(endpoint, FastHistogram(REQUEST_BUCKETS))
    histogram.observe(seconds)


def exchange_request_stats() -> dict[str, tuple[int, float]]:
    """endpoint -> (requests, total seconds), for performance reports."""
    return {endpoint: (h.count, h.sum) for endpoint, h in list(_exchange_requests.items())}


# --- errors by kind (process-wide; fed by the error log handler) -------------------------------------------
class ErrorCounter:
    def __init__(self) -> None:
        self.by_kind: dict[str, int] = {}

    def add(self, kind: str) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


class ErrorLogHandler(logging.Handler):
    """Counts ERROR records of the ``papertrader`` loggers by kind (the logger name after ``papertrader.``)
    and hands them to a callback (the notifier's error aggregation)."""

    def __init__(self, counter: ErrorCounter, callback: Any = None) -> None:
        super().__init__(logging.ERROR)
        self.counter = counter
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "papertrader_notified", False):
            return
        kind = record.name.removeprefix("papertrader.").split(".")[0] or "worker"
        self.counter.add(kind)
        if self.callback is not None:
            try:
                self.callback(kind, record.getMessage(), record.levelno)
            except Exception:  # noqa: BLE001 - never let reporting break logging
                pass


class MetricsListener(BaseListener):
    """Per-event counters and histograms (cheap; read by :class:`WorkerCollector` at scrape time)."""

    def __init__(self, errors: ErrorCounter) -> None:
        self.trades = {"buy": 0, "sell": 0}
        self.tick = FastHistogram(TICK_BUCKETS)
        self.prediction = FastHistogram(PREDICTION_BUCKETS)
        self.predictions = 0
        self.errors = errors

    def on_fill(self, fill: Fill) -> None:
        self.trades[fill.side] = self.trades.get(fill.side, 0) + 1

    def on_prediction(self, prediction: Prediction) -> None:
        self.prediction.observe(prediction.duration_s)
        self.predictions += 1

    def on_ticks_done(self, items: Sequence[Candle], durations_s: Sequence[float]) -> None:
        self.tick.observe_many(durations_s)


def _gauge(name: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRICS[name][1], labels=list(labels))


def _counter(name: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name.removesuffix("_total"), METRICS[name][1], labels=list(labels))


def _histogram(name: str, labels: Iterable[str], label_values: list[str], hist: FastHistogram
               ) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, METRICS[name][1], labels=list(labels))
    family.add_metric(label_values, hist.buckets(), hist.sum)
    return family


class FeedStats(Protocol):
    """The WebSocket feed's counters, as metrics read them."""

    def client_count(self) -> int: ...

    def stat(self, name: str) -> int: ...

    def cache_hit_ratio(self) -> float | None: ...

    def cache_lookups(self) -> int: ...


class NotifierStats(Protocol):
    """The notifier's counters, as metrics read them."""

    @property
    def sent(self) -> dict[str, int]: ...

    @property
    def dropped(self) -> dict[str, int]: ...

    def queue_size(self) -> int: ...


class WorkerCollector(Collector):
    """Reads one worker's state when Prometheus scrapes: the worker's facts, the listener's counters, health and
    the services' own counters."""

    def __init__(self, view: WorkerView, listener: MetricsListener, health: HealthMonitor,
                 feed: FeedStats | None = None, notifier: NotifierStats | None = None) -> None:
        self.view = view
        self.listener = listener
        self.health = health
        self.feed = feed
        self.notifier = notifier

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:  # noqa: C901 - one flat list of metrics
        listener = self.listener
        f = self.view.facts()
        symbol = f.symbol
        s = [symbol]
        candle = f.last_candle

        family: CounterMetricFamily | GaugeMetricFamily = _counter("papertrader_candles_processed_total", ["symbol"])
        family.add_metric(s, f.accepted)
        yield family
        family = _counter("papertrader_trades_total", ["symbol", "side"])
        for side in ("buy", "sell"):
            family.add_metric([symbol, side], listener.trades.get(side, 0))
        yield family

        equity = f.equity_f
        for name, value in (
            ("papertrader_equity", equity),
            ("papertrader_open_positions", len(f.lots)),
            ("papertrader_return_pct", return_pct(equity, float(f.initial_capital))),
            ("papertrader_drawdown_pct", drawdown(f.peak_equity, equity) * 100.0),
            ("papertrader_max_drawdown_pct", f.max_drawdown * 100.0),
            ("papertrader_data_quality_score", f.quality_score),
            ("papertrader_entries_halted", 1.0 if f.halts else 0.0),
        ):
            family = _gauge(name, ["symbol"])
            family.add_metric(s, value)
            yield family
        if candle is not None:
            for name, value in (("papertrader_last_candle_timestamp_seconds", candle.ts / 1000.0),
                                ("papertrader_price", candle.close)):
                family = _gauge(name, ["symbol"])
                family.add_metric(s, value)
                yield family

        yield _histogram("papertrader_tick_duration_seconds", ["symbol"], s, listener.tick)
        yield _histogram("papertrader_prediction_duration_seconds", ["symbol"], s, listener.prediction)

        family = _counter("papertrader_rejected_candles_total", ["symbol", "reason"])
        for reason, count in sorted(f.rejected_by_reason.items()):
            family.add_metric([symbol, reason], count)
        yield family
        family = _counter("papertrader_gaps_total", ["symbol"])
        family.add_metric(s, f.gaps)
        yield family

        report = self.health.report()
        family = _gauge("papertrader_health_score", ["symbol"])
        family.add_metric(s, report["score"])
        yield family
        family = _gauge("papertrader_ready", ["symbol"])
        family.add_metric(s, 1.0 if report["ready"] else 0.0)
        yield family
        family = _gauge("papertrader_event_loop_lag_seconds")
        family.add_metric([], self.health.loop_lag)
        yield family

        family = _gauge("papertrader_circuit_breaker_open", ["breaker"])
        for name in f.breakers:
            family.add_metric([name], 1.0 if f.breaker_open(name) else 0.0)
        yield family

        model = f.model
        if model.version is not None:
            family = _gauge("papertrader_model_info", ["symbol", "version"])
            family.add_metric([symbol, str(model.version)], 1.0)
            yield family
        if model.age_seconds is not None:
            family = _gauge("papertrader_model_age_seconds", ["symbol"])
            family.add_metric(s, float(model.age_seconds))
            yield family
        feed = self.feed
        ratio = feed.cache_hit_ratio() if feed is not None else None
        if ratio is not None:
            family = _gauge("papertrader_feature_cache_hit_ratio", ["symbol"])
            family.add_metric(s, ratio)
            yield family

        family = _gauge("papertrader_source_connected", ["symbol"])
        family.add_metric(s, 1.0 if f.source_connected else 0.0)
        yield family

        notifier = self.notifier
        sent = _counter("papertrader_notifications_sent_total", ["category"])
        dropped = _counter("papertrader_notifications_dropped_total", ["category"])
        for category in ("trade", "error", "status", "system"):
            sent.add_metric([category], notifier.sent.get(category, 0) if notifier else 0)
            dropped.add_metric([category], notifier.dropped.get(category, 0) if notifier else 0)
        yield sent
        yield dropped
        family = _gauge("papertrader_notification_queue_size")
        family.add_metric([], notifier.queue_size() if notifier else 0)
        yield family

        family = _gauge("papertrader_ws_clients")
        family.add_metric([], feed.client_count() if feed else 0)
        yield family
        family = _counter("papertrader_ws_clients_dropped_total")
        family.add_metric([], feed.stat("slow_disconnects") if feed else 0)
        yield family

        requests = HistogramMetricFamily("papertrader_exchange_request_duration_seconds",
                                         METRICS["papertrader_exchange_request_duration_seconds"][1],
                                         labels=["endpoint"])
        for endpoint, hist in sorted(list(_exchange_requests.items())):
            requests.add_metric([endpoint], hist.buckets(), hist.sum)
        yield requests

        family = _counter("papertrader_errors_total", ["kind"])
        for kind, count in sorted(listener.errors.by_kind.items()):
            family.add_metric([kind], count)
        yield family


def build_registry(collector: WorkerCollector) -> CollectorRegistry:
    """A registry with the worker's collector and the standard process metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry
