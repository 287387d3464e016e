"""The gateway's one upstream WebSocket, shared by every client subscription.

A (market, interval) pair is subscribed upstream when its first client asks for it and unsubscribed ``linger_s``
after its last client has gone (a restarting fleet finds its stream still running; the owner hears of each
unsubscription, since a pair's last frame before it is not that bar's final value). After a drop the connection is
reopened with backoff and every wanted pair is subscribed again. Frames are handed on as received; the owner
routes them (:class:`~papertrader.market.gateway.server.GatewayServer`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

log = logging.getLogger("papertrader.gateway")

Pair = tuple[str, str]  # (market, interval)


def channel_message(action: str, pairs: list[Pair]) -> str:
    by_interval: dict[str, list[str]] = {}
    for market, interval in sorted(pairs):
        by_interval.setdefault(interval, []).append(market)
    return json.dumps({"action": action, "channels": [{"name": "candles", "interval": [interval],
                                                       "markets": markets}
                                                      for interval, markets in by_interval.items()]})


def listed_pairs(subscriptions: Any) -> set[Pair]:
    """The pairs in a ``subscribed`` event's ``{"candles": {"1m": ["BTC-EUR"]}}``."""
    candles = subscriptions.get("candles") if isinstance(subscriptions, dict) else None
    if not isinstance(candles, dict):
        return set()
    return {(market, interval) for interval, markets in candles.items() if isinstance(markets, list)
            for market in markets if isinstance(market, str)}


class UpstreamStream:
    """One WebSocket to the exchange with reference-counted subscriptions."""

    def __init__(self, url: str, on_frame: Callable[[str, dict[str, Any]], Awaitable[None]],
                 on_connection: Callable[[bool], Awaitable[None]], *, open_timeout_s: float = 10.0,
                 stale_s: float = 90.0, linger_s: float = 60.0, subscribe_timeout_s: float = 10.0,
                 max_backoff_s: float = 30.0, seed: int = 0,
                 on_unsubscribed: Callable[[list[Pair]], None] = lambda pairs: None) -> None:
        self.url = url
        self._on_frame = on_frame
        self._on_connection = on_connection
        self._on_unsubscribed = on_unsubscribed
        self.open_timeout_s = open_timeout_s
        self.stale_s = stale_s
        self.linger_s = linger_s
        self.subscribe_timeout_s = subscribe_timeout_s
        self.max_backoff_s = max_backoff_s
        self._rng = random.Random(seed)
        self._ws: ClientConnection | None = None
        self.refs: dict[Pair, int] = {}
        self._linger_until: dict[Pair, float] = {}
        self.subscribed: set[Pair] = set()  # confirmed on the current connection
        self._waiters: dict[Pair, list[asyncio.Future[bool]]] = {}
        self.connected = asyncio.Event()
        self.connects = 0
        self.frames = 0

    @property
    def wanted(self) -> set[Pair]:
        return {pair for pair, count in self.refs.items() if count > 0} | set(self._linger_until)

    # --- subscriptions ------------------------------------------------------------------------------------
    async def acquire(self, pair: Pair) -> bool:
        """A client wants ``pair``: True once it is subscribed upstream (False: refused or timed out)."""
        self.refs[pair] = self.refs.get(pair, 0) + 1
        self._linger_until.pop(pair, None)
        if pair in self.subscribed:
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(pair, []).append(future)
        if len(self._waiters[pair]) == 1:
            await self._send(channel_message("subscribe", [pair]))
        try:
            ok = await asyncio.wait_for(asyncio.shield(future), self.subscribe_timeout_s)
        except TimeoutError:
            ok = False
        if not ok:
            self.release(pair, linger=False)
        return ok

    def release(self, pair: Pair, linger: bool = True) -> None:
        count = self.refs.get(pair, 0) - 1
        if count > 0:
            self.refs[pair] = count
            return
        self.refs.pop(pair, None)
        if linger and pair in self.subscribed:
            self._linger_until[pair] = time.monotonic() + self.linger_s

    async def _send(self, text: str) -> None:
        ws = self._ws
        if ws is None:
            return  # sent on (re)connect
        try:
            await ws.send(text)
        except (WebSocketException, OSError) as exc:
            log.warning("upstream send failed: %s", exc)

    def _resolve(self, pairs: set[Pair], ok: bool) -> None:
        for pair in pairs:
            for future in self._waiters.pop(pair, []):
                if not future.done():
                    future.set_result(ok)

    async def _expire_lingering(self) -> None:
        now = time.monotonic()
        expired = [pair for pair, until in self._linger_until.items() if until <= now]
        for pair in expired:
            del self._linger_until[pair]
        if expired:
            log.info("no client for %d pair(s) since %.0f s: unsubscribing %s", len(expired), self.linger_s, expired)
            self.subscribed -= set(expired)
            self._on_unsubscribed(expired)
            await self._send(channel_message("unsubscribe", expired))

    # --- the connection -----------------------------------------------------------------------------------
    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                self._ws = await connect(self.url, open_timeout=self.open_timeout_s, close_timeout=1.0,
                                         max_size=2**22, ping_interval=20, ping_timeout=20, proxy=None)
            except (TimeoutError, OSError, WebSocketException) as exc:
                attempt += 1
                delay = min(self.max_backoff_s, 0.1 * 2 ** min(attempt, 20)) * (0.5 + 0.5 * self._rng.random())
                log.warning("upstream %s unreachable (%s %s); retry in %.2f s", self.url, type(exc).__name__,
                            str(exc)[:80], delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.connects += 1
            log.info("upstream WebSocket connected to %s (connection %d)", self.url, self.connects)
            try:
                if self.wanted:
                    await self._ws.send(channel_message("subscribe", sorted(self.wanted | set(self._waiters))))
                elif self._waiters:
                    await self._ws.send(channel_message("subscribe", sorted(self._waiters)))
                self.connected.set()
                await self._on_connection(True)
                await self._read(self._ws)
            except (WebSocketException, OSError) as exc:
                log.warning("upstream WebSocket closed: %s %s", type(exc).__name__, str(exc)[:100])
            finally:
                ws, self._ws = self._ws, None
                self.connected.clear()
                self.subscribed.clear()
                await ws.close()
                await self._on_connection(False)
            await asyncio.sleep(0.05 + 0.1 * self._rng.random())

    async def _read(self, ws: ClientConnection) -> None:
        last_message = time.monotonic()
        while True:
            await self._expire_lingering()
            try:
                async with asyncio.timeout(1.0):
                    frame = await ws.recv()
            except TimeoutError:
                if self.subscribed and time.monotonic() - last_message > self.stale_s:
                    log.warning("upstream stream stale: no message for %.0f s; reconnecting", self.stale_s)
                    return
                continue
            last_message = time.monotonic()
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            try:
                message = json.loads(text)
            except ValueError:
                continue  # malformed frame: nothing to route (a worker would skip it too)
            if not isinstance(message, dict):
                continue
            event = message.get("event")
            if event == "candle":
                self.frames += 1
                await self._on_frame(text, message)
            elif event == "subscribed":
                confirmed = listed_pairs(message.get("subscriptions"))
                self.subscribed = confirmed | (self.subscribed & self.wanted)
                self._resolve(confirmed, True)
            elif event == "error" or "errorCode" in message:
                log.warning("upstream stream error event: %s", text[:200])
                self._resolve(set(self._waiters), False)
