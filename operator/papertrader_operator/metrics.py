"""The operator's Prometheus metrics and its own HTTP endpoint (`/metrics`, `/healthz`, `/readyz`)."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter("papertrader_operator_reconcile_total", "Reconciles of a PaperTrader, by result",
                     ["result"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram("papertrader_operator_reconcile_duration_seconds", "Duration of one reconcile",
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                              registry=REGISTRY)
ERRORS = Counter("papertrader_operator_errors_total", "Errors, by kind", ["kind"], registry=REGISTRY)
CHILD_CHANGES = Counter("papertrader_operator_child_changes_total", "Children created, patched or deleted",
                        ["kind", "action"], registry=REGISTRY)
TRADERS = Gauge("papertrader_operator_traders", "PaperTraders known to the operator", registry=REGISTRY)
WORKERS_DESIRED = Gauge("papertrader_operator_workers_desired", "Workers wanted (not paused)", registry=REGISTRY)
WORKERS_READY = Gauge("papertrader_operator_workers_ready", "Workers ready", registry=REGISTRY)
RISK_HALTED = Gauge("papertrader_operator_risk_halted_traders", "PaperTraders under a portfolio risk halt",
                    registry=REGISTRY)
HEALTH_POLLS = Counter("papertrader_operator_health_polls_total", "Worker /health polls, by result",
                       ["result"], registry=REGISTRY)
LAST_RESYNC = Gauge("papertrader_operator_last_resync_timestamp_seconds", "When the last resync pass ended",
                    registry=REGISTRY)


def exported_metric_names() -> set[str]:
    """Every sample name this operator exports (with the `_total`, `_bucket`, `_sum`, `_count` suffixes)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {metric.name + suffix for metric in REGISTRY.collect() for suffix in suffixes[metric.type]}


class OperatorHttp:
    """aiohttp server for the operator's probes and metrics."""

    def __init__(self, host: str, port: int, stale_after: float) -> None:
        self.host, self.port = host, port
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

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> int:
        """Start serving; returns the bound port (port 0 picks a free one)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        logger.info("operator http server listening on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
