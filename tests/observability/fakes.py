"""Fakes that speak the real protocols, on 127.0.0.1 with free ports.

- :class:`FakeTelegram`: the Bot API subset the worker uses (``getMe``, ``sendMessage``, ``getUpdates``,
  ``deleteWebhook``, ``close``) at ``/bot<token>/<method>``, with the real JSON envelopes, including
  ``429 {"ok": false, "error_code": 429, "parameters": {"retry_after": N}}`` and 5xx failures on demand; 409
  Conflict to a ``getUpdates`` while another one is in flight (Telegram's one consumer per token), counted with
  the most concurrent consumers ever seen; optionally 429 for a second message to a chat within ``chat_interval``.
- :class:`OtlpReceiver`: an OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf, optionally gzip) that
  decodes ``ExportTraceServiceRequest`` into plain span dicts.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from typing import Any

from aiohttp import web


class _Server:
    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> Any:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - aiohttp has no public way to read a TCPSite's bound port
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class FakeTelegram(_Server):
    """A Telegram Bot API look-alike."""

    def __init__(self, token: str, bot_id: int = 4242) -> None:
        super().__init__()
        self.token = token
        self.bot_id = bot_id
        self.messages: list[dict[str, Any]] = []  # accepted sendMessage calls
        self.calls: list[tuple[str, float]] = []  # (method, time) of every call
        self.rate_limit_next = 0  # answer this many sendMessage calls with 429
        self.retry_after = 1
        self.fail_next = 0  # answer this many sendMessage calls with 502
        self.delay = 0.0  # seconds before answering sendMessage
        self.updates: list[dict[str, Any]] = []
        # getUpdates consumers: Telegram allows one at a time per token and answers 409 to another one
        self.polling = 0  # getUpdates requests in flight now
        self.max_polling = 0  # the most ever in flight at once (1: a single consumer)
        self.conflicts = 0  # 409 answers given
        self.pollers: set[str] = set()  # peers (ip:port) that ever polled
        # Telegram's per-chat rate: a second message to a chat within this many seconds gets 429 (0: off)
        self.chat_interval = 0.0
        self.long_poll_cap = 1.0  # seconds a getUpdates without updates is held (Telegram: its timeout)
        self.chat_rate_limited = 0
        self._last_to_chat: dict[str, float] = {}
        self._update_id = 1000
        self._message_id = 1
        self._new_update = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        return app

    def push_command(self, chat_id: int, text: str) -> None:
        self._update_id += 1
        self.updates.append({"update_id": self._update_id, "message": {
            "message_id": self._update_id, "date": int(time.time()), "text": text,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Tester"},
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]}})
        self._new_update.set()

    def texts(self) -> list[str]:
        return [str(m.get("text", "")) for m in self.messages]

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        data = await request.post()
        out: dict[str, Any] = {}
        for key, value in data.items():
            out[key] = value if isinstance(value, str) else str(value)
        return out

    async def _dispatch(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls.append((method, time.monotonic()))
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        params = await self._params(request)
        if method == "getMe":
            return self._ok({"id": self.bot_id, "is_bot": True, "first_name": "papertrader-test",
                             "username": "papertrader_test_bot", "can_join_groups": True,
                             "can_read_all_group_messages": False, "supports_inline_queries": False})
        if method == "sendMessage":
            if self.delay:
                await asyncio.sleep(self.delay)
            chat_key = str(params.get("chat_id"))
            last = self._last_to_chat.get(chat_key)
            if self.chat_interval and last is not None and time.monotonic() - last < self.chat_interval:
                self.chat_rate_limited += 1
                return self._too_many(1)
            self._last_to_chat[chat_key] = time.monotonic()
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                return self._too_many(self.retry_after)
            if self.fail_next > 0:
                self.fail_next -= 1
                return web.json_response({"ok": False, "error_code": 502, "description": "Bad Gateway"},
                                         status=502)
            self._message_id += 1
            self.messages.append(params)
            chat = params.get("chat_id")
            return self._ok({"message_id": self._message_id, "date": int(time.time()), "text": params.get("text"),
                             "chat": {"id": int(chat) if str(chat).lstrip("-").isdigit() else 0, "type": "private"}})
        if method == "getUpdates":
            peer = request.transport.get_extra_info("peername") if request.transport else None
            self.pollers.add(f"{peer[0]}:{peer[1]}" if peer else "?")
            if self.polling:
                self.conflicts += 1
                return web.json_response({"ok": False, "error_code": 409, "description": (
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
                    "running")}, status=409)
            self.polling += 1
            self.max_polling = max(self.max_polling, self.polling)
            try:
                return await self._get_updates(params)
            finally:
                self.polling -= 1
        if method in ("deleteWebhook", "close", "logOut"):
            return self._ok(True)
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    def _too_many(self, retry_after: int) -> web.Response:
        return web.json_response({"ok": False, "error_code": 429,
                                  "description": f"Too Many Requests: retry after {retry_after}",
                                  "parameters": {"retry_after": retry_after}}, status=429)

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        pending = [u for u in self.updates if u["update_id"] >= offset]
        if not pending and timeout:
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), min(timeout, self.long_poll_cap))
            except TimeoutError:
                pass
            pending = [u for u in self.updates if u["update_id"] >= offset]
        return self._ok(pending)

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})


class OtlpReceiver(_Server):
    """Collects spans sent with OTLP/HTTP protobuf."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict[str, Any]] = []
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        return app

    async def _traces(self, request: web.Request) -> web.Response:
        from google.protobuf.json_format import MessageToDict
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.requests += 1
        for resource_spans in message.resource_spans:
            resource = {kv.key: MessageToDict(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {}
                    for kv in span.attributes:
                        value = MessageToDict(kv.value)
                        attributes[kv.key] = next(iter(value.values())) if value else None
                    self.spans.append({
                        "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(), "name": span.name,
                        "attributes": attributes, "resource": resource,
                        "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                    })
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def traces(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for span in self.spans:
            out.setdefault(span["trace_id"], []).append(span)
        return out


def dumps(value: Any) -> str:
    return json.dumps(value)
