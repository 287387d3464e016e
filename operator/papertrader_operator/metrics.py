"""The operator's Prometheus metrics and its own HTTP endpoint (`/metrics`, `/healthz`, `/readyz`)."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


class OperatorMetrics:
    """The operator's Prometheus metrics, on a registry of their own (one per running operator)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._reconciles = Counter("papertrader_operator_reconcile_total", "Reconciles of a PaperTrader, by result",
                                   ["result"], registry=registry)
        self._reconcile_seconds = Histogram(
            "papertrader_operator_reconcile_duration_seconds", "Duration of one reconcile",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=registry)
        self._errors = Counter("papertrader_operator_errors_total", "Errors, by kind", ["kind"], registry=registry)
        self._child_changes = Counter("papertrader_operator_child_changes_total",
                                      "Children created, patched or deleted", ["kind", "action"], registry=registry)
        self._traders = Gauge("papertrader_operator_traders", "PaperTraders known to the operator", registry=registry)
        self._workers_desired = Gauge("papertrader_operator_workers_desired", "Workers wanted (not paused)",
                                      registry=registry)
        self._workers_ready = Gauge("papertrader_operator_workers_ready", "Workers ready", registry=registry)
        self._risk_halted = Gauge("papertrader_operator_risk_halted_traders",
                                  "PaperTraders under a portfolio risk halt", registry=registry)
        self._health_polls = Counter("papertrader_operator_health_polls_total", "Worker /health polls, by result",
                                     ["result"], registry=registry)
        self._last_resync = Gauge("papertrader_operator_last_resync_timestamp_seconds",
                                  "When the last resync pass ended", registry=registry)

    def reconciled(self, result: str) -> None:
        """One reconcile ended with `result` (ok, invalid, error)."""
        self._reconciles.labels(result=result).inc()

    def reconcile_took(self, seconds: float) -> None:
        self._reconcile_seconds.observe(seconds)

    def error(self, kind: str) -> None:
        self._errors.labels(kind=kind).inc()

    def child_changed(self, kind: str, action: str) -> None:
        self._child_changes.labels(kind=kind, action=action).inc()

    def health_polled(self, result: str) -> None:
        self._health_polls.labels(result=result).inc()

    def traders(self, count: int) -> None:
        self._traders.set(count)

    def workers(self, ready: int, desired: int, risk_halted: int) -> None:
        self._workers_ready.set(ready)
        self._workers_desired.set(desired)
        self._risk_halted.set(risk_halted)

    def resynced(self) -> None:
        self._last_resync.set(time.time())

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


def exported_metric_names() -> set[str]:
    """Every sample name this operator exports (with the `_total`, `_bucket`, `_sum`, `_count` suffixes)."""
    return {metric.name + suffix for metric in OperatorMetrics().registry.collect()
            for suffix in _SUFFIXES[metric.type]}


class OperatorHttp:
    """aiohttp server for the operator's probes and metrics."""

    def __init__(self, host: str, port: int, stale_after: float, metrics: OperatorMetrics) -> None:
        self.host, self.port = host, port
        self._metrics = metrics
        self.stale_after = stale_after
        self.started = time.monotonic()
        self.last_loop_beat = time.monotonic()
        self._runner: web.AppRunner | None = None

    def beat(self) -> None:
        """Called by the resync loop; /healthz fails once the loop stops beating."""
        self.last_loop_beat = time.monotonic()

    async def _healthz(self, _: web.Request) -> web.Response:
        age = time.monotonic() - self.last_loop_beat
        ok = age <= self.stale_after
        return web.json_response({"status": "ok" if ok else "stale", "resync_loop_age_seconds": round(age, 3)},
                                 status=200 if ok else 503)

    async def _metrics_page(self, _: web.Request) -> web.Response:
        return web.Response(body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> int:
        """Start serving; returns the bound port (port 0 picks a free one)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._healthz)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        logger.info("operator http server listening on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
