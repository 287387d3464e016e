"""The worker's HTTP server (docs/worker-http.md): probes, health JSON, metrics, the HTML report and halt/resume
control.

A small HTTP/1.1 server on asyncio streams rather than a web framework: five fixed routes do not need one, and
leaving aiohttp's server out of the worker saves about 10 MiB of RSS, which matters next to torch's 220 MiB in
an ML worker. Limits: request line and each header line at most 8 KiB, 100 headers (else 431), a body of at most
4 KiB (else 413), chunked bodies refused (411), a JSON body nested at most 32 levels deep (else 400); a request's
line, headers and body must arrive within 10 s of its first byte being awaited (so a slow drip cannot hold a
connection); idle keep-alive connections close after 60 s. At most 256 connections are open at once: a new one
beyond that closes the connection that has waited longest for a request (an idle or slow-drip client), so a
probe is answered at once even under a slowloris of thousands of connections and the worker stays far below
the default open-file limit of 1024.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from papertrader.aio import cancel_and_wait
from papertrader.errors import PapertraderError
from papertrader.observability.control_auth import ControlCredential

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from papertrader.config_groups import HttpSettings
    from papertrader.observability.commands import AnnouncedControl, RecentFills
    from papertrader.observability.health import HealthMonitor

log = logging.getLogger("papertrader.http")
CONTROL_PREFIX = "/control/"  # every path under it needs the control credential when one is configured
CONTROL_SCOPES = ("manual", "portfolio", "trader")  # portfolio, trader: set and lifted by the operator only

MAX_CONTROL_BODY = 4096
MAX_LINE = 8192
MAX_HEADERS = 100
IDLE_TIMEOUT = 60.0
HEADER_TIMEOUT = 10.0
MAX_CONNECTIONS = 256
MAX_JSON_DEPTH = 32
JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"


def json_depth(raw: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest (brackets inside strings do not count), found without
    parsing it: ``json.loads`` recurses, so a deep body would raise RecursionError instead of a clean 400."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


class HttpError(PapertraderError):
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
    """``GET /healthz /readyz /health /metrics /report /trades``, ``POST /control/halt /control/resume``."""

    def __init__(self, settings: HttpSettings, *, symbol: str, health: HealthMonitor, control: AnnouncedControl,
                 recent: RecentFills, registry: CollectorRegistry, credential: ControlCredential | None = None
                 ) -> None:
        self.symbol = symbol
        self.health = health
        self.control = control
        self.recent = recent
        self.registry = registry
        self.host, self.port = settings.http_host, settings.http_port
        self.state_dir = settings.state_dir
        self.credential = credential or ControlCredential()
        self._refused_control = 0
        self._report_lock = asyncio.Lock()  # one report at a time: it runs in a thread next to the engine
        self.bound_port: int | None = None
        self._listener: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = 0  # accepted sockets not yet closed (MAX_CONNECTIONS)
        self._connections: set[asyncio.StreamWriter] = set()
        #: connections waiting for (the rest of) a request, oldest first: the ones evicted at the connection cap
        self._waiting: dict[asyncio.StreamWriter, None] = {}
        self._routes = {
            ("GET", "/healthz"): self._healthz,
            ("GET", "/readyz"): self._readyz,
            ("GET", "/health"): self._health,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/report"): self._report,
            ("GET", "/trades"): self._trades,
            ("POST", "/control/halt"): self._halt,
            ("POST", "/control/resume"): self._resume,
        }

    async def start(self) -> None:
        """Bind (an error here is the worker's, at start) and accept connections in :meth:`_accept_loop`."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.create_server((self.host, self.port), family=family, backlog=1024)
        listener.setblocking(False)
        self._listener = listener
        self.bound_port = listener.getsockname()[1]
        self._acceptor = asyncio.create_task(self._accept_loop(listener), name="http-accept")
        log.info("http server listening on %s:%d", self.host, self.bound_port)

    async def stop(self) -> None:
        if self._acceptor is None:
            return
        await cancel_and_wait(self._acceptor)
        self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for writer in list(self._connections):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    # --- connections -----------------------------------------------------------------------------------------
    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept one connection at a time, enforcing MAX_CONNECTIONS before a transport exists: at the cap the
        connection that has waited longest for a request is closed (a slow-drip or idle client); when every one
        is busy answering, the new one is closed instead. So open files stay bounded whatever arrives."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # EMFILE from elsewhere in the process, ECONNABORTED: keep serving
                log.warning("http accept failed (%s); retrying", exc)
                await asyncio.sleep(0.1)
                continue
            if self._open >= MAX_CONNECTIONS and not self._evict_oldest_waiting():
                conn.close()
                continue
            self._open += 1
            task = asyncio.create_task(self._serve_socket(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0)  # let connections already accepted run before accepting the next one

    def _evict_oldest_waiting(self) -> bool:
        if not self._waiting:
            return False
        oldest = next(iter(self._waiting))
        self._waiting.pop(oldest)
        oldest.transport.abort()
        return True

    async def _serve_socket(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_LINE)
        except OSError:
            conn.close()
            self._open -= 1
            return
        try:
            await self._serve(reader, writer)
        finally:
            self._open -= 1

    # --- protocol ------------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                self._waiting[writer] = None
                try:
                    request = await self._read_request(reader)
                except HttpError as exc:
                    self._waiting.pop(writer, None)
                    await self._write(writer, Response.json({"error": str(exc)}, exc.status), keep_alive=False)
                    return
                self._waiting.pop(writer, None)
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
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(writer)
            self._waiting.pop(writer, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
        """One request, or None when the client closed the connection between requests. The first byte may take
        IDLE_TIMEOUT (keep-alive); the whole request then has HEADER_TIMEOUT."""
        try:
            first = await asyncio.wait_for(reader.read(1), IDLE_TIMEOUT)
        except TimeoutError:
            return None
        if not first:
            return None
        try:
            async with asyncio.timeout(HEADER_TIMEOUT):
                return await self._read_rest(first, reader)
        except TimeoutError:
            raise HttpError(408, f"request not complete within {HEADER_TIMEOUT:g} s") from None

    async def _read_rest(self, first: bytes, reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
        line = first + await self._read_line(reader)
        try:
            method, target, version = line.decode("latin-1").split()
        except ValueError:
            raise HttpError(400, "malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise HttpError(505, "HTTP/1.x only")
        headers: dict[str, str] = {}
        while True:
            header = await self._read_line(reader)
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
        body = await reader.readexactly(length) if length else b""
        return method.upper(), target.split("?", 1)[0], headers, body

    @staticmethod
    async def _read_line(reader: asyncio.StreamReader) -> bytes:
        try:
            return await reader.readline()
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
        alive, detail = self.health.liveness()
        return Response.json(detail, status=200 if alive else 503)

    async def _readyz(self, _: bytes) -> Response:
        reasons = self.health.not_ready_reasons()
        if reasons:
            return Response.json({"ready": False, "reason": "; ".join(reasons), "reasons": reasons}, status=503)
        return Response.json({"ready": True})

    async def _health(self, _: bytes) -> Response:
        return Response.json(self.health.report())

    async def _trades(self, _: bytes) -> Response:
        """The last fills (at most 10, oldest first), for the fleet notifier's /trades."""
        keys = ("ts", "side", "quantity", "price", "fee", "realized_pnl", "reason")
        return Response.json({"symbol": self.symbol,
                              "trades": [dict(zip(keys, row, strict=True)) for row in self.recent.fills]})

    async def _metrics(self, _: bytes) -> Response:
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

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
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise HttpError(400, f"body nested deeper than {MAX_JSON_DEPTH} levels")
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
        self.control.halt(reason, source="http", kind=self._scope(data))
        return Response.json(self.control.state())

    async def _resume(self, raw: bytes) -> Response:
        self.control.resume(source="http", kind=self._scope(self._body(raw)))
        return Response.json(self.control.state())

    @staticmethod
    def _scope(data: dict[str, Any]) -> str:
        """Which halt a control call sets or lifts: ``manual`` (default) or ``portfolio`` (the operator's)."""
        scope = data.get("scope") or "manual"
        if scope not in CONTROL_SCOPES:
            raise HttpError(400, f"scope must be one of {', '.join(CONTROL_SCOPES)}")
        return str(scope)

