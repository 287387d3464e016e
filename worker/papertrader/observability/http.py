"""The worker's aiohttp server (docs/worker-http.md): probes, health JSON, metrics and halt/resume control."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from papertrader.observability.wiring import Observability

log = logging.getLogger("papertrader.http")

MAX_CONTROL_BODY = 4096


class HttpServer:
    """``GET /healthz /readyz /health /metrics``, ``POST /control/halt /control/resume``."""

    def __init__(self, obs: Observability, host: str, port: int) -> None:
        self.obs = obs
        self.host, self.port = host, port
        self.bound_port: int | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_CONTROL_BODY)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/control/halt", self._halt)
        app.router.add_post("/control/resume", self._resume)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - the only way to learn the bound port of port 0
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("http server listening on %s:%d", self.host, self.bound_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- probes --------------------------------------------------------------------------------------------
    async def _healthz(self, _: web.Request) -> web.Response:
        alive, detail = self.obs.health.liveness()
        return web.json_response(detail, status=200 if alive else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        reasons = self.obs.health.not_ready_reasons()
        if reasons:
            return web.json_response({"ready": False, "reason": "; ".join(reasons), "reasons": reasons}, status=503)
        return web.json_response({"ready": True})

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response(self.obs.health.report())

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.obs.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- control -------------------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            raw = await request.read()
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}',
                                     content_type="application/json") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}', content_type="application/json")
        return data

    async def _halt(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        reason = str(data.get("reason") or "halted via /control/halt")[:500]
        self.obs.halt(reason, source="http")
        return web.json_response(self._control_state())

    async def _resume(self, request: web.Request) -> web.Response:
        await self._body(request)
        self.obs.resume(source="http")
        return web.json_response(self._control_state())

    def _control_state(self) -> dict[str, Any]:
        halts = self.obs.runner.engine.risk.state.halts
        return {"entries_halted": bool(halts), "halts": dict(halts),
                "halt_reason": "; ".join(f"{k}: {v}" for k, v in sorted(halts.items())) or None}
