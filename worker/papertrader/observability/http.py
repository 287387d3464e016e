"""The worker's HTTP server (docs/worker-http.md): probes, health JSON, metrics, the HTML report and halt/resume
control.

A small HTTP/1.1 server on asyncio streams rather than a web framework: five fixed routes do not need one, and
leaving aiohttp's server out of the worker saves about 10 MiB of RSS, which matters next to torch's 220 MiB in
an ML worker. Limits: request line and each header line at most 8 KiB, 100 headers (else 431), a body of at most
4 KiB (else 413), chunked bodies refused (411); idle keep-alive connections close after 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from papertrader.observability.control_auth import ControlCredential

if TYPE_CHECKING:
    from papertrader.observability.wiring import Observability

log = logging.getLogger("papertrader.http")
CONTROL_PREFIX = "/control/"  # every path under it needs the control credential when one is configured
CONTROL_SCOPES = ("manual", "portfolio")  # portfolio: set and lifted by the operator only

MAX_CONTROL_BODY = 4096
MAX_LINE = 8192
MAX_HEADERS = 100
IDLE_TIMEOUT = 60.0
HEADER_TIMEOUT = 10.0
JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"


class HttpError(Exception):
    """Answer with this status and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Response:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int, body: bytes, content_type: str = JSON,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.status, self.body, self.content_type, self.headers = status, body, content_type, headers

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return cls(status, json.dumps(data, default=str).encode(), headers=headers)


class HttpServer:
    """``GET /healthz /readyz /health /metrics /report``, ``POST /control/halt /control/resume``."""

    def __init__(self, obs: Observability, host: str, port: int, state_dir: Path | None = None, *,
                 credential: ControlCredential | None = None) -> None:
        self.obs = obs
        self.host, self.port = host, port
        self.state_dir = state_dir
        self.credential = credential or ControlCredential()
        self._refused_control = 0
        self._report_lock = asyncio.Lock()  # one report at a time: it runs in a thread next to the engine
        self.bound_port: int | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._routes = {
            ("GET", "/healthz"): self._healthz,
            ("GET", "/readyz"): self._readyz,
            ("GET", "/health"): self._health,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/report"): self._report,
            ("POST", "/control/halt"): self._halt,
            ("POST", "/control/resume"): self._resume,
        }

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_LINE)
        sockets = self._server.sockets or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("http server listening on %s:%d", self.host, self.bound_port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._connections):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    # --- protocol ------------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    request = await self._read_request(reader)
                except HttpError as exc:
                    await self._write(writer, Response.json({"error": str(exc)}, exc.status), keep_alive=False)
                    return
                if request is None:
                    return
                method, path, headers, body = request
                if path.startswith(CONTROL_PREFIX) and not self.credential.allows(headers.get("authorization")):
                    response = self._refuse_control(method, path, writer)
                else:
                    response = await self._dispatch(method, path, body)
                keep_alive = headers.get("connection", "").lower() != "close"
                await self._write(writer, response, keep_alive)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
        """One request, or None when the client closed the connection between requests."""
        line = await self._read_line(reader, IDLE_TIMEOUT)
        if not line:
            return None
        try:
            method, target, version = line.decode("latin-1").split()
        except ValueError:
            raise HttpError(400, "malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise HttpError(505, "HTTP/1.x only")
        headers: dict[str, str] = {}
        while True:
            header = await self._read_line(reader, HEADER_TIMEOUT)
            if header in (b"\r\n", b"\n", b""):
                break
            if len(headers) >= MAX_HEADERS:
                raise HttpError(431, "too many headers")
            name, sep, value = header.decode("latin-1").partition(":")
            if not sep:
                raise HttpError(400, "malformed header")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise HttpError(411, "send a Content-Length, not a chunked body")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if length < 0:
            raise HttpError(400, "bad Content-Length")
        if length > MAX_CONTROL_BODY:
            raise HttpError(413, f"body larger than {MAX_CONTROL_BODY} bytes")
        body = await asyncio.wait_for(reader.readexactly(length), HEADER_TIMEOUT) if length else b""
        return method.upper(), target.split("?", 1)[0], headers, body

    @staticmethod
    async def _read_line(reader: asyncio.StreamReader, timeout: float) -> bytes:
        try:
            return await asyncio.wait_for(reader.readline(), timeout)
        except (ValueError, asyncio.LimitOverrunError):  # a line longer than MAX_LINE
            raise HttpError(431, f"request line or header longer than {MAX_LINE} bytes") from None

    async def _dispatch(self, method: str, path: str, body: bytes) -> Response:
        handler = self._routes.get((method, path))
        if handler is None:
            allowed = [m for (m, p) in self._routes if p == path]
            if allowed:
                return Response.json({"error": f"use {', '.join(allowed)}"}, 405)
            return Response.json({"error": "not found"}, 404)
        try:
            return await handler(body)
        except HttpError as exc:
            return Response.json({"error": str(exc)}, exc.status)
        except Exception:  # noqa: BLE001 - a broken handler answers 500 and the worker keeps trading
            log.exception("http handler %s %s failed", method, path)
            return Response.json({"error": "internal error"}, 500)

    def _refuse_control(self, method: str, path: str, writer: asyncio.StreamWriter) -> Response:
        """401 for a control request without the credential; logged (the first 20, then every 100th)."""
        self._refused_control += 1
        count = self._refused_control
        if count <= 20 or count % 100 == 0:
            peer = writer.get_extra_info("peername")
            log.warning("refused %s %s from %s: no valid control credential (%d refused so far)", method, path,
                        peer[0] if peer else "?", count)
        return Response.json({"error": "control needs the trader's credential: Authorization: Bearer <token>"}, 401,
                             headers=(("WWW-Authenticate", 'Bearer realm="papertrader-control"'),))

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, response: Response, keep_alive: bool) -> None:
        extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
        head = (f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}\r\n"
                f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n{extra}"
                f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
        writer.write(head.encode("latin-1") + response.body)
        await writer.drain()

    # --- probes --------------------------------------------------------------------------------------------
    async def _healthz(self, _: bytes) -> Response:
        alive, detail = self.obs.health.liveness()
        return Response.json(detail, status=200 if alive else 503)

    async def _readyz(self, _: bytes) -> Response:
        reasons = self.obs.health.not_ready_reasons()
        if reasons:
            return Response.json({"ready": False, "reason": "; ".join(reasons), "reasons": reasons}, status=503)
        return Response.json({"ready": True})

    async def _health(self, _: bytes) -> Response:
        return Response.json(self.obs.health.report())

    async def _metrics(self, _: bytes) -> Response:
        return Response(200, generate_latest(self.obs.registry), CONTENT_TYPE_LATEST)

    async def _report(self, _: bytes) -> Response:
        """The same page as ``papertrader report STATE_DIR``, from a consistent snapshot of the live ledger."""
        if self.state_dir is None:
            raise HttpError(404, "no state directory to report on")
        from papertrader.report import render_report  # numpy-only, imported on first request

        async with self._report_lock:
            page = await asyncio.to_thread(render_report, [self.state_dir])
        return Response(200, page.encode("utf-8"), HTML)

    # --- control -------------------------------------------------------------------------------------------
    @staticmethod
    def _body(raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "body must be a JSON object") from None
        if not isinstance(data, dict):
            raise HttpError(400, "body must be a JSON object")
        return data

    async def _halt(self, raw: bytes) -> Response:
        data = self._body(raw)
        reason = str(data.get("reason") or "halted via /control/halt")[:500]
        self.obs.halt(reason, source="http", kind=self._scope(data))
        return Response.json(self._control_state())

    async def _resume(self, raw: bytes) -> Response:
        self.obs.resume(source="http", kind=self._scope(self._body(raw)))
        return Response.json(self._control_state())

    @staticmethod
    def _scope(data: dict[str, Any]) -> str:
        """Which halt a control call sets or lifts: ``manual`` (default) or ``portfolio`` (the operator's)."""
        scope = data.get("scope") or "manual"
        if scope not in CONTROL_SCOPES:
            raise HttpError(400, f"scope must be one of {', '.join(CONTROL_SCOPES)}")
        return str(scope)

    def _control_state(self) -> dict[str, Any]:
        halts = self.obs.runner.engine.risk.state.halts
        return {"entries_halted": bool(halts), "halts": dict(halts),
                "halt_reason": "; ".join(f"{k}: {v}" for k, v in sorted(halts.items())) or None}
