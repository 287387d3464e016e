"""A fake Bitvavo (aiohttp, 127.0.0.1): the real REST and WebSocket wire formats over a candle file.

The exchange has a *virtual clock*: it starts at the open time of candle ``start_index`` and runs ``speed`` times
faster than real time (``speed=12000`` plays a 1-minute candle every 5 ms). Candles before the clock's *now* are
history (REST ``/candles``: newest first, at most 1440 per page, ``start``/``end`` on interval boundaries,
``start <= ts < end``; the forming bar is included with its values so far, like the real API). From
``start_index`` on, the WebSocket ``candles`` channel plays each candle as ``updates_per_candle`` events of the
still-forming bar (growing volume, moving close), the last of which carries the candle's final values, spread over
the bar's interval on the virtual clock. ``/time`` follows the virtual clock. REST and WS always agree on closed
bars, so a client that takes the last update before a newer bar and one that takes REST see the same candle.

Scriptable faults (:class:`FakeScript`), keyed by the index of the candle being streamed: drop every connection,
stall (stop sending for some real seconds while the connection stays open), malformed JSON frames and rows,
duplicate and out-of-order updates, NaN or negative prices, gaps (intervals without trades), forced HTTP 429
storms with the real ``bitvavo-ratelimit-*`` headers and errorCode 110, REST 5xx errors and slow REST answers.
A per-window weight budget is always enforced (1000 per virtual minute by default).

Several markets and intervals: ``extra_feeds={("ETH-EUR", "5m"): candles, ...}`` serves more (market, interval)
feeds behind the same REST and WebSocket endpoints, on the same virtual clock (each feed streams from its first
candle at or after the primary feed's first streamed candle; faults apply to the primary feed). A client may
subscribe to any set of them and ``unsubscribe`` again. ``paused=True`` freezes the clock at its start until
:meth:`FakeBitvavo.resume`: every client that starts meanwhile sees the same history, so fleet runs are
deterministic.

Use it from tests (``async with FakeBitvavo(candles) as fake: fake.rest_url, fake.ws_url``) or from the command
line: ``papertrader fake-exchange --candles FILE.csv --speed 60`` (or ``--synthetic 5000``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from aiohttp import WSMsgType, web

from papertrader.aio import cancel_and_wait
from papertrader.market.candle import Candle, interval_ms
from papertrader.market.candle_file import CandleFileReader

log = logging.getLogger("papertrader.fake_exchange")


@dataclass
class FakeScript:
    """Faults, keyed by the index (in the candle list) of the candle being streamed when they happen."""

    drop_at: set[int] = field(default_factory=set)  # close every WS connection before this candle's first update
    stall_at: dict[int, float] = field(default_factory=dict)  # stop sending to current connections (real seconds)
    malformed_at: set[int] = field(default_factory=set)  # send a malformed JSON frame and an unparseable row
    duplicate_at: set[int] = field(default_factory=set)  # repeat the previous candle's final update
    out_of_order_at: set[int] = field(default_factory=set)  # send an update of the candle two bars back
    nan_at: set[int] = field(default_factory=set)  # this candle's close is NaN (REST and WS)
    negative_at: set[int] = field(default_factory=set)  # this candle's low and close are negative
    gap_at: dict[int, int] = field(default_factory=dict)  # remove this many candles starting here (no trades)
    storm_at: dict[int, float] = field(default_factory=dict)  # every REST call gets 429 for this many virtual ms
    rest_errors: int = 0  # the next N REST calls (after /time once) answer HTTP 500
    rest_delay_s: float = 0.0  # real seconds every REST answer is delayed (timeouts)


def _num(value: float) -> str:
    return repr(float(value))


def _row(candle: Candle) -> list[Any]:
    return [candle.ts, _num(candle.open), _num(candle.high), _num(candle.low), _num(candle.close),
            _num(candle.volume)]


def _partial(candle: Candle, step: int, steps: int) -> Candle:
    """The bar after ``step`` of ``steps`` updates; the last step is the candle itself."""
    if step >= steps:
        return candle
    values = candle[1:]
    if not all(math.isfinite(v) for v in values) or not (candle.low <= min(candle.open, candle.close)
                                                        <= max(candle.open, candle.close) <= candle.high):
        return candle  # a bad candle is sent as it is
    share = step / steps
    close = round(candle.open + (candle.close - candle.open) * share, 8)
    return Candle(candle.ts, candle.open, max(candle.open, close), min(candle.open, close), close,
                  round(candle.volume * share, 8))


class _Feed:
    """The candles of one (market, interval) and what of them has been streamed."""

    def __init__(self, market: str, interval: str, candles: list[Candle], start_index: int,
                 updates_per_candle: int, rest_includes_forming: bool) -> None:
        self.market = market
        self.interval = interval
        self.interval_ms = interval_ms(interval)
        self.candles = candles
        self.start_index = start_index
        self.updates_per_candle = updates_per_candle
        self.rest_includes_forming = rest_includes_forming
        self.streamed_index = start_index - 1  # last candle whose first update was sent

    def available(self, now: int) -> list[Candle]:
        """Closed candles up to ``now``, plus the forming one as far as it has traded."""
        candles = self.candles
        closed_end = self._bisect(now - self.interval_ms)
        out = candles[:closed_end]
        if self.rest_includes_forming and closed_end < len(candles):
            forming = candles[closed_end]
            if forming.ts <= now:
                steps = self.updates_per_candle
                done = int((now - forming.ts) * (steps + 1) // self.interval_ms)
                if done >= 1:
                    out = out + [_partial(forming, min(done, steps), steps)]
        return out

    def _bisect(self, ts: int) -> int:
        lo, hi = 0, len(self.candles)
        candles = self.candles
        while lo < hi:
            mid = (lo + hi) // 2
            if candles[mid].ts <= ts:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def event(self, candle: Candle) -> str:
        return json.dumps({"event": "candle", "market": self.market, "interval": self.interval,
                           "candle": [_row(candle)]}, separators=(",", ":"))


class FakeBitvavo:
    """The fake exchange. ``await start()`` / ``await stop()`` or ``async with``."""

    def __init__(self, candles: list[Candle], *, market: str = "BTC-EUR", interval: str = "1m",
                 start_index: int = 0, speed: float = 1.0, updates_per_candle: int = 3,
                 script: FakeScript | None = None, budget: int = 1000, window_ms: int = 60_000,
                 tick_size: str | None = None, min_order_quote: str = "5", min_order_base: str = "0.0001",
                 quantity_decimals: int = 8, serve_markets: bool = True, rest_includes_forming: bool = True,
                 extra_feeds: Mapping[tuple[str, str], list[Candle]] | None = None, paused: bool = False,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.script = script or FakeScript()
        self.market = market
        self.interval = interval
        self.interval_ms = interval_ms(interval)
        steps = max(1, updates_per_candle)
        primary = self._apply_data_faults(list(candles), start_index)
        first_streamed = candles[start_index] if start_index < len(candles) else candles[-1]
        self._origin_ms = first_streamed.ts - first_streamed.ts % self.interval_ms
        self._primary = _Feed(market, interval, primary,
                              next((i for i, c in enumerate(primary) if c.ts >= first_streamed.ts), len(primary)),
                              steps, rest_includes_forming)
        self.feeds: dict[tuple[str, str], _Feed] = {(market, interval): self._primary}
        for (feed_market, feed_interval), feed_candles in (extra_feeds or {}).items():
            first = next((i for i, c in enumerate(feed_candles) if c.ts >= self._origin_ms), len(feed_candles))
            self.feeds[(feed_market, feed_interval)] = _Feed(feed_market, feed_interval, list(feed_candles), first,
                                                             steps, rest_includes_forming)
        self.speed = speed
        self.updates_per_candle = steps
        self.budget = budget
        self.window_ms = window_ms
        self.markets_entries = {
            name: {
                "market": name, "status": "trading", "base": name.split("-")[0], "quote": name.split("-")[-1],
                "pricePrecision": None, "minOrderInBaseAsset": min_order_base,
                "minOrderInQuoteAsset": min_order_quote, "maxOrderInBaseAsset": "1000000000",
                "maxOrderInQuoteAsset": "1000000000", "quantityDecimals": quantity_decimals, "notionalDecimals": 2,
                "tickSize": tick_size, "maxOpenOrders": 100, "feeCategory": "A", "orderTypes": ["market", "limit"]}
            for name in dict.fromkeys(m for m, _ in self.feeds)}
        self.serve_markets = serve_markets
        self.rest_includes_forming = rest_includes_forming
        self.host = host
        self.port = port
        self._t0 = time.monotonic()
        self._running = asyncio.Event()
        self._paused = paused
        self._clients: dict[web.WebSocketResponse, dict[str, Any]] = {}
        self._runner: web.AppRunner | None = None
        self._drivers: list[asyncio.Task[None]] = []
        self._window_start = 0
        self._spent = 0
        self._storm_until = -1
        self._storm_armed_ms: int | None = None  # a storm that the next REST request starts
        self.storm_started = asyncio.Event()
        self._rest_errors = self.script.rest_errors
        self.finished = asyncio.Event()
        # what happened (for assertions and the demo log)
        self.requests: list[tuple[int, str, int]] = []  # (virtual ms, path, status)
        self.weight_spent = 0  # REST weight counted against the budget, over the whole run
        self.ws_connections = 0
        self.frames_sent = 0

    @property
    def candles(self) -> list[Candle]:
        """The primary feed's candles (after the scripted data faults)."""
        return self._primary.candles

    @property
    def start_index(self) -> int:
        return self._primary.start_index

    @property
    def streamed_index(self) -> int:
        return self._primary.streamed_index

    def _apply_data_faults(self, candles: list[Candle], start_index: int) -> list[Candle]:
        s = self.script
        for i in s.nan_at:
            candles[i] = candles[i]._replace(close=float("nan"))
        for i in s.negative_at:
            c = candles[i]
            candles[i] = c._replace(low=-abs(c.low), close=-abs(c.close))
        removed: set[int] = set()
        for i, count in s.gap_at.items():
            removed.update(range(i, i + count))
        return [c for i, c in enumerate(candles) if i not in removed]

    # --- clock ------------------------------------------------------------------------------------------------
    def now_ms(self) -> int:
        if self._paused:
            return self._origin_ms
        return int(self._origin_ms + (time.monotonic() - self._t0) * 1000.0 * self.speed)

    def _local_delay(self, virtual_ms: float) -> float:
        return max(0.0, (virtual_ms - self.now_ms()) / 1000.0 / self.speed)

    def resume(self) -> None:
        """Start the clock of a fake created with ``paused=True`` (the stream begins now)."""
        if self._paused:
            self._paused = False
            self._t0 = time.monotonic()
        self._running.set()

    # --- life cycle ---------------------------------------------------------------------------------------------
    async def start(self) -> Self:
        app = web.Application()
        app.router.add_get("/v2/", self._ws_handler)
        app.router.add_get("/v2", self._ws_handler)
        app.router.add_get("/v2/time", self._time)
        app.router.add_get("/v2/markets", self._markets)
        app.router.add_get("/v2/{market}/candles", self._candles)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the bound port (port 0 picks a free one)
        self._t0 = time.monotonic()
        if not self._paused:
            self._running.set()
        loop = asyncio.get_running_loop()
        self._drivers = [loop.create_task(self._drive(feed)) for feed in self.feeds.values()]
        loop.create_task(self._finish_when_done(list(self._drivers)))
        return self

    async def _finish_when_done(self, drivers: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*drivers, return_exceptions=True)
        self.finished.set()

    async def stop(self) -> None:
        for driver in self._drivers:
            await cancel_and_wait(driver)
        for ws in list(self._clients):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}/v2"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/v2/"

    # --- REST ---------------------------------------------------------------------------------------------------
    def _headers(self, now: int) -> dict[str, str]:
        return {"bitvavo-ratelimit-limit": str(self.budget),
                "bitvavo-ratelimit-remaining": str(max(self.budget - self._spent, 0)),
                "bitvavo-ratelimit-resetat": str(self._window_start + self.window_ms)}

    def _error(self, status: int, code: int, message: str, now: int) -> web.Response:
        return web.json_response({"errorCode": code, "error": message}, status=status, headers=self._headers(now))

    async def _gate(self, request: web.Request, weight: int = 1) -> web.Response | None:
        """Rate limits and scripted REST faults; None when the request may be answered."""
        if self.script.rest_delay_s:
            await asyncio.sleep(self.script.rest_delay_s)
        now = self.now_ms()
        if now >= self._window_start + self.window_ms:
            self._window_start = now - now % self.window_ms
            self._spent = 0
        path = request.path
        if self._storm_armed_ms is not None:
            self.start_storm(self._storm_armed_ms)
            self._storm_armed_ms = None
        if now < self._storm_until:
            self.requests.append((now, path, 429))
            return web.json_response(
                {"errorCode": 110, "error": "Rate limit exceeded."}, status=429,
                headers={"bitvavo-ratelimit-limit": str(self.budget), "bitvavo-ratelimit-remaining": "0",
                         "bitvavo-ratelimit-resetat": str(self._storm_until)})
        if self._spent + weight > self.budget:
            self.requests.append((now, path, 429))
            self._spent = self.budget
            return self._error(429, 110, "Rate limit exceeded.", now)
        self._spent += weight
        self.weight_spent += weight
        if self._rest_errors > 0 and not path.endswith("/time"):
            self._rest_errors -= 1
            self.requests.append((now, path, 500))
            return self._error(500, 101, "Unknown error. Operation may or may not have succeeded.", now)
        self.requests.append((now, path, 200))
        return None

    async def _time(self, request: web.Request) -> web.Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        now = self.now_ms()
        return web.json_response({"time": now}, headers=self._headers(now))

    async def _markets(self, request: web.Request) -> web.Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        now = self.now_ms()
        if not self.serve_markets:
            return self._error(404, 110, "Invalid endpoint. Please check url and HTTP method.", now)
        wanted = request.query.get("market")
        if wanted is not None:
            if wanted not in self.markets_entries:
                return self._error(400, 205, "market parameter is invalid.", now)
            return web.json_response(self.markets_entries[wanted], headers=self._headers(now))
        return web.json_response(list(self.markets_entries.values()), headers=self._headers(now))

    async def _candles(self, request: web.Request) -> web.Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        now = self.now_ms()
        q = request.query
        market = request.match_info["market"]
        if market not in self.markets_entries:
            return self._error(400, 205, "market parameter is invalid.", now)
        feed = self.feeds.get((market, q.get("interval", "")))
        if feed is None:
            return self._error(400, 205, "interval parameter is invalid.", now)
        try:
            limit = int(q.get("limit", "1440"))
            start = int(q["start"]) if "start" in q else None
            end = int(q["end"]) if "end" in q else None
        except ValueError:
            return self._error(400, 205, "start parameter is invalid.", now)
        if not 1 <= limit <= 1440:
            return self._error(400, 205, "limit parameter is invalid.", now)
        for name, value in (("start", start), ("end", end)):
            if value is not None and value % feed.interval_ms:
                return self._error(400, 205, f"{name} parameter is invalid.", now)
        rows: list[list[Any]] = []
        for candle in reversed(feed.available(now)):
            if end is not None and candle.ts >= end:
                continue
            if start is not None and candle.ts < start:
                break
            rows.append(_row(candle))
            if len(rows) >= limit:
                break
        return web.json_response(rows, headers=self._headers(now))

    # --- WebSocket ----------------------------------------------------------------------------------------------
    def _requested(self, data: dict[str, Any]) -> set[tuple[str, str]]:
        """The (market, interval) pairs a subscribe/unsubscribe message names that this exchange serves."""
        wanted: set[tuple[str, str]] = set()
        for channel in data.get("channels") or []:
            if not isinstance(channel, dict) or channel.get("name") != "candles":
                continue
            for interval in channel.get("interval") or []:
                for market in channel.get("markets") or []:
                    if (market, interval) in self.feeds:
                        wanted.add((market, interval))
        return wanted

    @staticmethod
    def _subscriptions(pairs: set[tuple[str, str]]) -> dict[str, dict[str, list[str]]]:
        by_interval: dict[str, list[str]] = {}
        for market, interval in sorted(pairs):
            by_interval.setdefault(interval, []).append(market)
        return {"candles": by_interval} if by_interval else {}

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.ws_connections += 1
        state: dict[str, Any] = {"pairs": set(), "stalled_until": 0.0}
        self._clients[ws] = state
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    await ws.send_str(json.dumps({"event": "error", "errorCode": 102, "error": "Invalid JSON."}))
                    continue
                action = data.get("action") if isinstance(data, dict) else None
                if action in ("subscribe", "unsubscribe"):
                    pairs = self._requested(data)
                    if not pairs:
                        await ws.send_str(json.dumps({"event": "error", "errorCode": 205,
                                                      "error": "Invalid parameter: channels"}))
                        continue
                    if action == "subscribe":
                        state["pairs"] |= pairs
                    else:
                        state["pairs"] -= pairs
                    await ws.send_str(json.dumps({"event": f"{action}d",
                                                  "subscriptions": self._subscriptions(state["pairs"])}))
                elif action == "getTime":
                    await ws.send_str(json.dumps({"action": "getTime", "response": {"time": self.now_ms()}}))
        finally:
            self._clients.pop(ws, None)
        return ws

    async def _broadcast(self, text: str, feed: _Feed | None = None) -> None:
        feed = feed or self._primary
        pair = (feed.market, feed.interval)
        now = time.monotonic()
        for ws, state in list(self._clients.items()):
            if pair not in state["pairs"] or state["stalled_until"] > now or ws.closed:
                continue
            try:
                await ws.send_str(text)
                self.frames_sent += 1
            except (ConnectionError, RuntimeError):
                self._clients.pop(ws, None)

    def _event(self, candle: Candle) -> str:
        return self._primary.event(candle)

    async def _faults(self, index: int) -> None:
        s = self.script
        if index in s.drop_at:
            log.info("fake exchange: dropping %d connection(s) at candle %d", len(self._clients), index)
            for ws in list(self._clients):
                await ws.close()
        if index in s.stall_at:
            until = time.monotonic() + s.stall_at[index]
            log.info("fake exchange: stalling the stream for %.2f s at candle %d", s.stall_at[index], index)
            for state in self._clients.values():
                state["stalled_until"] = until
        if index in s.storm_at:
            self.start_storm(int(s.storm_at[index]))
            log.info("fake exchange: 429 storm until virtual %d", self._storm_until)

    async def _after_first_update(self, index: int) -> None:
        s = self.script
        candles = self.candles
        if index in s.malformed_at:
            await self._broadcast('{"event":"candle","market":"' + self.market + '","candle":[[')
            await self._broadcast(json.dumps({"event": "candle", "market": self.market, "interval": self.interval,
                                              "candle": [[candles[index].ts, "abc", "1", "1", "1", "1"]]}))
        if index in s.duplicate_at and index >= 1:
            await self._broadcast(self._event(candles[index - 1]))
        if index in s.out_of_order_at and index >= 2:
            await self._broadcast(self._event(candles[index - 2]))

    async def _drive(self, feed: _Feed) -> None:
        """Play a feed's candles from its start index on the virtual clock (faults: the primary feed only)."""
        await self._running.wait()
        steps = self.updates_per_candle
        candles = feed.candles
        primary = feed is self._primary
        for index in range(feed.start_index, len(candles)):
            candle = candles[index]
            for step in range(1, steps + 1):
                due = candle.ts + feed.interval_ms * step / (steps + 1)
                delay = self._local_delay(due)
                if delay > 0:
                    await asyncio.sleep(max(delay, 0.0005))
                if step == 1:
                    if primary:
                        await self._faults(index)
                    feed.streamed_index = index
                await self._broadcast(feed.event(_partial(candle, step, steps)), feed)
                if step == 1 and primary:
                    await self._after_first_update(index)
            await asyncio.sleep(0)

    def start_storm(self, virtual_ms: int) -> int:
        """Answer every REST call with HTTP 429 / errorCode 110 for ``virtual_ms``; returns the resetat (ms)."""
        self._storm_until = self.now_ms() + int(virtual_ms)
        self.storm_started.set()
        return self._storm_until

    def arm_storm(self, virtual_ms: int) -> None:
        """Start a ``virtual_ms`` storm of 429s at the next REST request, whenever it comes (``storm_started``
        is set then and ``storm_until`` holds its resetat): the first request after this call always meets it."""
        self._storm_armed_ms = int(virtual_ms)
        self.storm_started.clear()

    @property
    def storm_until(self) -> int:
        """The resetat (virtual ms) of the latest storm; -1 before any."""
        return self._storm_until

    def stats(self) -> dict[str, Any]:
        statuses: dict[int, int] = {}
        for _, _, status in self.requests:
            statuses[status] = statuses.get(status, 0) + 1
        return {"requests": len(self.requests), "statuses": statuses, "weight_spent": self.weight_spent,
                "ws_connections": self.ws_connections, "open_connections": len(self._clients),
                "frames_sent": self.frames_sent, "streamed_index": self.streamed_index, "now_ms": self.now_ms()}


# --- command line -------------------------------------------------------------------------------------------
def load_candles(path: Path | str) -> list[Candle]:
    reader = CandleFileReader(path)
    out: list[Candle] = []
    while True:
        batch = reader.read(10_000)
        if not batch:
            break
        out.extend(item for item in batch if isinstance(item, Candle))
    reader.close()
    return out


def _synthetic(count: int, interval: str, seed: int) -> list[Candle]:
    from papertrader.market.sources.synthetic import SyntheticSource

    source = SyntheticSource(seed, interval_ms(interval), 1_704_067_200_000)
    return list(asyncio.run(source.next_batch(count)))  # type: ignore[arg-type]  # synthetic: never None


def _indices(text: str | None) -> set[int]:
    return {int(part) for part in text.split(",") if part.strip()} if text else set()


def _pairs(text: str | None) -> dict[int, float]:
    out: dict[int, float] = {}
    for part in (text or "").split(","):
        if part.strip():
            index, _, value = part.partition(":")
            out[int(index)] = float(value or 1)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="papertrader fake-exchange",
                                description="Serve a candle file as a local fake Bitvavo (REST + WebSocket).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--candles", type=Path, help="candle CSV (timestamp_ms,open,high,low,close,volume)")
    src.add_argument("--synthetic", type=int, metavar="N", help="serve N seeded synthetic candles instead")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--market", "--symbol", dest="market", default="BTC-EUR")
    p.add_argument("--interval", default="1m")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    p.add_argument("--history", type=int, default=1440, help="candles served as history before the stream starts")
    p.add_argument("--speed", type=float, default=1.0, help="virtual seconds per real second (12000: 1m bar / 5 ms)")
    p.add_argument("--updates-per-candle", type=int, default=3)
    p.add_argument("--budget", type=int, default=1000, help="rate-limit weight per window")
    p.add_argument("--window-ms", type=int, default=60_000, help="rate-limit window (virtual ms)")
    p.add_argument("--tick-size", default=None, help="tickSize served by /markets (default null: auto)")
    p.add_argument("--no-markets", action="store_true", help="answer /markets with 404")
    p.add_argument("--drop-at", help="candle indices where every connection is dropped, e.g. 1500,1600")
    p.add_argument("--stall-at", help="INDEX:SECONDS,... stop sending for SECONDS (real) at candle INDEX")
    p.add_argument("--malformed-at", help="candle indices with a malformed frame")
    p.add_argument("--duplicate-at", help="candle indices followed by a duplicate of the previous candle")
    p.add_argument("--out-of-order-at", help="candle indices followed by an update of an older candle")
    p.add_argument("--nan-at", help="candle indices whose close is NaN")
    p.add_argument("--negative-at", help="candle indices with negative prices")
    p.add_argument("--gap-at", help="INDEX:COUNT,... remove COUNT candles from INDEX (no trades)")
    p.add_argument("--storm-at", help="INDEX:VIRTUAL_MS,... every REST call gets 429 for that long")
    p.add_argument("--rest-delay", type=float, default=0.0, help="real seconds every REST answer is delayed")
    p.add_argument("--exit-when-done", action="store_true", help="exit once every candle was streamed")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    candles = load_candles(args.candles) if args.candles else _synthetic(args.synthetic, args.interval, args.seed)
    if len(candles) < 2:
        print("papertrader fake-exchange: need at least 2 candles", flush=True)
        return 2
    script = FakeScript(drop_at=_indices(args.drop_at), stall_at=_pairs(args.stall_at),
                        malformed_at=_indices(args.malformed_at), duplicate_at=_indices(args.duplicate_at),
                        out_of_order_at=_indices(args.out_of_order_at), nan_at=_indices(args.nan_at),
                        negative_at=_indices(args.negative_at),
                        gap_at={k: int(v) for k, v in _pairs(args.gap_at).items()},
                        storm_at=_pairs(args.storm_at), rest_delay_s=max(args.rest_delay, 0.0))
    start_index = min(max(args.history, 0), len(candles) - 1)
    fake = FakeBitvavo(candles, market=args.market.upper(), interval=args.interval, start_index=start_index,
                       speed=args.speed, updates_per_candle=args.updates_per_candle, script=script,
                       budget=args.budget, window_ms=args.window_ms, tick_size=args.tick_size,
                       serve_markets=not args.no_markets, host=args.host, port=args.port)

    async def serve() -> None:
        await fake.start()
        print(f"BITVAVO_REST_URL={fake.rest_url}", flush=True)
        print(f"BITVAVO_WS_URL={fake.ws_url}", flush=True)
        print(f"fake exchange: {len(candles)} candles, stream from index {start_index}, speed {args.speed:g}x",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        waiters = [loop.create_task(stop.wait())]
        if args.exit_when_done:
            waiters.append(loop.create_task(fake.finished.wait()))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        print(f"fake exchange: {json.dumps(fake.stats())}", flush=True)
        await fake.stop()

    asyncio.run(serve())
    return 0
