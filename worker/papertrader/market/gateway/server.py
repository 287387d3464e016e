"""The client-facing side of the gateway: Bitvavo's REST and WebSocket wire format, served from the cache.

REST: ``/v2/time`` from the gateway's exchange clock (synchronised upstream every few seconds), ``/v2/markets``
cached for a TTL, ``/v2/{market}/candles`` from the cache when it covers the range, else only the uncovered tail (or
the whole request) upstream, coalesced. When what is missing begins at the bar the stream is still forming (a client
whose clock has just passed the bar's end), the gateway waits up to ``GATEWAY_CLOSE_WAIT_SECONDS`` for the stream's
next updates, which close it, instead of asking the exchange (a quiet market: then it asks). Budget refusals and
upstream rate limits are answered with HTTP 429, errorCode 110 and ``bitvavo-ratelimit-resetat`` (gateway exchange
time); an unreachable exchange with 503.
WebSocket ``/v2/``: ``subscribe`` / ``unsubscribe`` to ``candles`` and ``getTime``; frames are forwarded as
received, through a bounded queue per client (a client that stops reading is closed, never waited for). Until the
gateway is ready (upstream connected, clock synchronised twice), upgrades are refused (503), and every client socket
is closed on a drop, so workers gap-fill through REST exactly as after a drop of the exchange itself. ``/healthz``
(alive), ``/readyz`` (upstream connected and clock synchronised), ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from papertrader.market.bitvavo.clock import ExchangeClock
from papertrader.market.candle import INTERVAL_MS
from papertrader.market.gateway.budget import WeightBudget
from papertrader.market.gateway.cache import PairCache, row_text
from papertrader.market.gateway.client_link import ClientLink
from papertrader.market.gateway.settings import GatewaySettings
from papertrader.market.gateway.upstream_rest import DOWN_BODY, Answer, Refused, UpstreamRest
from papertrader.market.gateway.upstream_ws import Pair, UpstreamStream, listed_pairs

log = logging.getLogger("papertrader.gateway")

FIRST_SYNCS_GAP_S = 0.25  # local seconds between the first two clock syncs (a rate needs a baseline of >= 20 ms)

RATE_LIMITED_BODY = {"errorCode": 110, "error": "Rate limit exceeded: the market gateway's shared upstream budget "
                                                "is spent or the exchange is limiting it; retry at "
                                                "bitvavo-ratelimit-resetat."}


def _valid_rows(body: Any) -> bool:
    return isinstance(body, list) and all(isinstance(r, list) and len(r) >= 6 and isinstance(r[0], int)
                                          for r in body)


class Gateway:
    """The market gateway: upstream connections, caches and the client server."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.clock = ExchangeClock()
        self.budget = WeightBudget(self.clock, settings.rest_budget, int(settings.budget_window_seconds * 1000))
        self.rest = UpstreamRest(settings.bitvavo_rest_url, self.clock, self.budget, settings.api_timeout_seconds)
        self.stream = UpstreamStream(settings.bitvavo_ws_url, self._on_frame, self._on_connection,
                                     open_timeout_s=settings.api_timeout_seconds, stale_s=settings.ws_stale_seconds,
                                     linger_s=settings.unsubscribe_linger_seconds,
                                     max_backoff_s=settings.reconnect_max_backoff_seconds,
                                     on_unsubscribed=self._on_unsubscribed)
        self.caches: dict[Pair, PairCache] = {}
        self._markets: dict[str, tuple[float, int, Any]] = {}  # query -> (expires, status, body)
        self.clients: dict[web.WebSocketResponse, ClientLink] = {}
        self._last_frame: dict[Pair, float] = {}
        self._frame_seen: dict[Pair, asyncio.Event] = {}  # set (and replaced) at each frame of a pair
        self.hits: dict[str, int] = {"candles": 0, "markets": 0}
        self.misses: dict[str, int] = {"candles": 0, "markets": 0}
        self.refusals = 0
        self.slow_clients_closed = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.port = settings.port

    # --- life cycle ---------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/", self._ws_handler)
        app.router.add_get("/v2", self._ws_handler)
        app.router.add_get("/v2/time", self._time)
        app.router.add_get("/v2/markets", self._markets_handler)
        app.router.add_get("/v2/{market}/candles", self._candles)
        app.router.add_get("/healthz", self._alive)
        app.router.add_get("/readyz", self._ready)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the bound port (port 0 picks a free one)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.stream.run()), loop.create_task(self._clock_loop())]
        log.info("market gateway listening on %s:%d (upstream %s, %s; budget %d per %g s)", self.settings.host,
                 self.port, self.settings.bitvavo_rest_url, self.settings.bitvavo_ws_url, self.budget.limit,
                 self.settings.budget_window_seconds)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in list(self.clients.values()):
            await link.close(1001, b"gateway shutting down")
        await self.rest.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _clock_loop(self) -> None:
        while True:
            ok = await self.rest.sync_time()
            pause = self.settings.clock_sync_seconds if ok else min(1.0, self.settings.clock_sync_seconds)
            if ok and not self.clock_ready():
                pause = min(pause, FIRST_SYNCS_GAP_S)  # the second sync measures the rate: soon
            await asyncio.sleep(pause)

    def clock_ready(self) -> bool:
        """Whether the gateway's exchange clock can be served: synchronised twice, so that it runs at the
        exchange's measured rate (until then it would run at 1x, and every worker's rate estimate taken from it
        would be wrong against an exchange whose clock runs faster, as the fake's does in tests)."""
        return self.clock.syncs >= 2

    def ready(self) -> bool:
        return self.clock_ready() and self.stream.connected.is_set()

    async def _alive(self, _request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def _metrics(self, _request: web.Request) -> web.Response:
        from papertrader.market.gateway.metrics import render_metrics

        return web.Response(body=render_metrics(self.snapshot()), content_type="text/plain")

    async def _ready(self, _request: web.Request) -> web.Response:
        ok = self.ready()
        return web.json_response({"ready": ok, "clock_synced": self.clock_ready(),
                                  "upstream_connected": self.stream.connected.is_set()}, status=200 if ok else 503)

    # --- REST ---------------------------------------------------------------------------------------------
    def _json(self, body: Any, status: int = 200) -> web.Response:
        return web.json_response(body, status=status, headers=self.budget.headers())

    def _refused(self, refused: Refused) -> web.Response:
        self.refusals += 1
        headers = {"bitvavo-ratelimit-limit": str(self.budget.limit), "bitvavo-ratelimit-remaining": "0"}
        if refused.retry_at_ms > 0:  # 0: not known in exchange time yet (the worker then waits its default)
            headers["bitvavo-ratelimit-resetat"] = str(refused.retry_at_ms)
        return web.json_response(RATE_LIMITED_BODY, status=429, headers=headers)

    def _answer(self, answer: Answer | Refused) -> web.Response:
        if isinstance(answer, Refused):
            return self._refused(answer)
        return self._json(answer.body, answer.status)

    async def _time(self, _request: web.Request) -> web.Response:
        if not self.clock_ready():
            return self._json(DOWN_BODY, 503)
        return self._json({"time": self.clock.now_ms()})

    async def _markets_handler(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        key = json.dumps(params, sort_keys=True)
        cached = self._markets.get(key)
        if cached is not None and cached[0] > time.monotonic():
            self.hits["markets"] += 1
            return self._json(cached[2], cached[1])
        self.misses["markets"] += 1
        answer = await self.rest.get("markets", params or None)
        if isinstance(answer, Answer) and answer.status == 200:
            self._markets[key] = (time.monotonic() + self.settings.markets_ttl_seconds, 200, answer.body)
        return self._answer(answer)

    def _cache(self, pair: Pair) -> PairCache:
        cache = self.caches.get(pair)
        if cache is None:
            cache = self.caches[pair] = PairCache(INTERVAL_MS[pair[1]], self.settings.cache_candles)
        return cache

    async def _candles(self, request: web.Request) -> web.Response:
        market, q = request.match_info["market"], dict(request.query)
        path = f"{market}/candles"
        interval = q.get("interval", "")
        step = INTERVAL_MS.get(interval)
        try:
            start, end, limit = int(q["start"]), int(q["end"]), int(q.get("limit", "1440"))
        except (KeyError, ValueError):
            step = None
        if step is None or not 1 <= limit <= 1440 or start % step or end % step or end <= start:
            self.misses["candles"] += 1
            return self._answer(await self.rest.get(path, q))  # the exchange's own answer (errors included)
        cache = self._cache((market, interval))
        rows = cache.serve(start, end, limit)
        if rows is None and cache.awaiting_stream(start, end):
            rows = await self._serve_when_closed((market, interval), cache, start, end, limit)
        if rows is not None:
            self.hits["candles"] += 1
            return web.Response(text="[" + ",".join(rows) + "]", content_type="application/json",
                                headers=self.budget.headers())
        self.misses["candles"] += 1
        covered = cache.covered_end(start)
        fetch_from = covered if covered is not None else start
        params = dict(q, start=str(fetch_from))
        answer = await self.rest.get(path, params)
        if isinstance(answer, Refused) or answer.status != 200 or not _valid_rows(answer.body):
            return self._answer(answer)
        cache.add_page(answer.body, fetch_from, end, limit, answer.sent_exchange_ms)
        if fetch_from == start:
            return self._json(answer.body)
        head = cache.rows_text(start, fetch_from, limit)  # newest first, all older than the tail
        merged = [row_text(row) for row in answer.body] + head
        return web.Response(text="[" + ",".join(merged[:limit]) + "]", content_type="application/json",
                            headers=self.budget.headers())

    async def _serve_when_closed(self, pair: Pair, cache: PairCache, start: int, end: int,
                                 limit: int) -> list[str] | None:
        """Wait (bounded) for the stream to close the forming bar, then serve from the cache; None on timeout."""
        deadline = time.monotonic() + self.settings.close_wait_seconds
        while cache.awaiting_stream(start, end) and self.stream.connected.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            event = self._frame_seen.setdefault(pair, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), left)
            except TimeoutError:
                return None
        return cache.serve(start, end, limit)

    # --- WebSocket ----------------------------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if not self.ready():  # no stream yet, or no clock to answer the gap-fills that follow a connect
            return web.json_response(DOWN_BODY, status=503)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        link = self.clients[ws] = ClientLink(ws, self.settings.client_queue_frames, request.remote or "?")
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    link.offer(json.dumps({"event": "error", "errorCode": 102, "error": "Invalid JSON."}))
                    continue
                action = data.get("action") if isinstance(data, dict) else None
                if action in ("subscribe", "unsubscribe"):
                    await self._on_subscription(link, action, data)
                elif action == "getTime":
                    link.offer(json.dumps({"action": "getTime", "response": {"time": self.clock.now_ms()}}))
        finally:
            self.clients.pop(ws, None)
            if link.overflowed:
                self.slow_clients_closed += 1
            link.stop()
            for pair in link.pairs:
                self.stream.release(pair)
        return ws

    async def _on_subscription(self, link: ClientLink, action: str, data: dict[str, Any]) -> None:
        """Replies go through the client's queue, so a ``subscribed`` always precedes the pair's frames."""
        pairs = link.pairs
        wanted = {(m, i) for m, i in listed_pairs({"candles": {
            iv: ch.get("markets") for ch in data.get("channels") or [] if isinstance(ch, dict)
            and ch.get("name") == "candles" for iv in ch.get("interval") or []}}) if i in INTERVAL_MS}
        if not wanted:
            link.offer(json.dumps({"event": "error", "errorCode": 205, "error": "Invalid parameter: channels"}))
            return
        if action == "subscribe":
            added = [pair for pair in sorted(wanted - pairs) if await self.stream.acquire(pair)]
            if not added and not wanted & pairs:
                link.offer(json.dumps({"event": "error", "errorCode": 205, "error": "Invalid parameter: channels"}))
                return
        else:
            added = []
            for pair in wanted & pairs:
                pairs.discard(pair)
                self.stream.release(pair)
        by_interval: dict[str, list[str]] = {}
        for market, interval in sorted(pairs | set(added)):
            by_interval.setdefault(interval, []).append(market)
        link.offer(json.dumps({"event": f"{action}d",
                               "subscriptions": {"candles": by_interval} if by_interval else {}}))
        pairs.update(added)  # after the reply is queued: the pair's frames follow it

    async def _on_frame(self, text: str, message: dict[str, Any]) -> None:
        market, interval = message.get("market"), message.get("interval")
        if not isinstance(market, str) or not isinstance(interval, str) or interval not in INTERVAL_MS:
            return
        pair = (market, interval)
        cache = self._cache(pair)
        rows = message.get("candle")
        if isinstance(rows, list):
            for row in rows:
                if isinstance(row, list) and len(row) >= 6 and isinstance(row[0], int):
                    cache.on_stream(row)
                    self.clock.observe(row[0])
        self._last_frame[pair] = time.monotonic()
        seen = self._frame_seen.pop(pair, None)
        if seen is not None:
            seen.set()
        for link in list(self.clients.values()):
            if pair in link.pairs:
                link.offer(text)

    async def _on_connection(self, connected: bool) -> None:
        if connected:
            return
        for cache in self.caches.values():
            cache.stream_lost()
        for link in list(self.clients.values()):
            await link.close(1012, b"upstream connection lost")

    def _on_unsubscribed(self, pairs: list[Pair]) -> None:
        for pair in pairs:
            cache = self.caches.get(pair)
            if cache is not None:
                cache.stream_lost()

    # --- state for metrics --------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "upstream_connected": 1 if self.stream.connected.is_set() else 0,
            "upstream_connects": self.stream.connects,
            "weight_used": self.budget.used_total, "weight_remaining": self.budget.remaining(),
            "weight_limit": self.budget.limit, "refused": self.refusals,
            "upstream_rate_limited": self.budget.rate_limited_total, "coalesced": self.rest.coalesced,
            "upstream_requests": dict(self.rest.requests_by_path),
            "hits": dict(self.hits), "misses": dict(self.misses),
            "clients": len(self.clients), "slow_clients_closed": self.slow_clients_closed,
            "subscriptions": len(self.stream.wanted),
            "data_age": {pair: now - t for pair, t in self._last_frame.items()},
            "cached_candles": {pair: len(cache) for pair, cache in self.caches.items()},
        }
