"""``--source bitvavo``: live closed candles from Bitvavo (WebSocket stream + REST backfill and gap-fill).

**Closed candles.** The ``candles`` channel repeats the still-forming bar after every trade. A bar is *closed*
- when the stream shows a bar with a newer open time (every earlier bar has ended on the exchange); its values
  are the last update received before the newer bar appeared (updates carry the full bar so far), or
- when no newer bar arrives (a quiet market, a stall, a reconnect): once the exchange clock reaches
  ``ts + interval + grace`` (CANDLE_CLOSE_GRACE_SECONDS, exchange time) for the first bar after the last one
  queued, ``/time`` confirms it and REST ``/candles`` returns *every* bar closed since (the catch-up); the REST
  values are used. Intervals REST confirms empty are not asked again.
Bars fetched from REST (warm-up, restart backfill, gap-fill after a reconnect) are closed when
``ts + interval <= exchange time`` (or an even newer bar exists); REST values are then final, so they are used.
Each bar is handed to the engine exactly once and in timestamp order: the source tracks the last queued open time
and drops any later update of an older bar (counted as ``late_updates`` / ``out_of_order_updates``). Everything
else (NaN, negative, inconsistent, gapped candles) is passed through and judged by the data-quality gate.

**Clock.** Decisions about time use :class:`~papertrader.market.bitvavo.clock.ExchangeClock` (``/time``,
re-synchronised every CLOCK_SYNC_INTERVAL_SECONDS, offset exposed as ``clock_offset_ms``), never ``sleep(60)``.

**Start, backfill, gap-fill.** A fresh worker fetches exactly ``warmup_candles`` closed candles ending at the last
closed bar before the exchange's *now*. A restarted worker (cursor or ``last_processed_ts``) fetches every
candle after the last one it processed, up to now. Both are queued before the stream starts, so the engine
processes them first. After every reconnect (closed, stale, error) the catch-up runs at once, whether or not a
newer bar has arrived on the stream; and whenever the stream shows a bar ``T`` later than the one after the last
queued (the first bar of a connection, a bar after a stall or a gap), REST fills the bars between. Intervals
without trades have no candle: they stay gaps. The result equals a replay of the same candles.

**Resilience.** Every REST call has API_TIMEOUT_SECONDS; failures are retried with exponential backoff and
jitter (seeded) up to RECONNECT_MAX_BACKOFF_SECONDS, the WebSocket reconnects the same way, and a watchdog
reconnects after WS_STALE_SECONDS without a message. Rate limits: :mod:`papertrader.market.bitvavo.ratelimit`.
Failures and successes of data collection are recorded in the ``data_collection`` circuit breaker; the source
keeps trying while it is open (the runner halts new entries meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from papertrader.broker.market_rules import MarketRules
from papertrader.config_groups import ExchangeSettings
from papertrader.errors import PapertraderError
from papertrader.market.bitvavo.clock import ExchangeClock
from papertrader.market.bitvavo.parse import (
    MarketInfo,
    ParseError,
    api_error,
    parse_ws_message,
    ws_candles,
)
from papertrader.market.bitvavo.ratelimit import RateLimiter
from papertrader.market.bitvavo.rest import BitvavoRest, RateLimitedError, RestError
from papertrader.market.bitvavo.stream import (
    CandleStream,
    StaleStreamError,
    StreamError,
)
from papertrader.market.candle import INTERVAL_MS, Candle
from papertrader.market.sources.base import CandleSource, SourceItem
from papertrader.resilience.circuit_breaker import CircuitBreaker

log = logging.getLogger("papertrader.market.bitvavo")

T = TypeVar("T")

_LOGGED_PER_KIND = 20  # one line per event up to this many, then every 100th
_CLOSE_CHECK_S = 0.25  # how often the time-based closer looks (no requests unless a bar is due)
_QUIET_S = 0.25  # the stream must have been quiet this long (local) before the closer asks REST


class SourceClosed(PapertraderError):
    """The source was closed while waiting."""


class BitvavoSource(CandleSource):
    """Closed candles for one market from the Bitvavo public API (or anything speaking its wire format)."""

    live = True

    def __init__(self, exchange: ExchangeSettings, symbol: str, interval: str, *, breaker: CircuitBreaker,
                 seed: int = 0, on_request: Callable[[str, float], None] | None = None) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.interval = interval
        self.interval_ms = INTERVAL_MS[interval]
        self.breaker = breaker
        self.clock = ExchangeClock()
        self.limiter = RateLimiter(self.clock, exchange.rate_limit_margin, exchange.rate_limit_default_wait_seconds)
        self.rest = BitvavoRest(exchange.bitvavo_rest_url, self.clock, self.limiter, exchange.api_timeout_seconds,
                                on_request)
        self.grace_ms = int(exchange.candle_close_grace_seconds * 1000)
        self._rng = random.Random(seed)
        self._ready: deque[Candle] = deque()
        self._wake = asyncio.Event()
        self._fill_lock = asyncio.Lock()
        self._tail_ts: int | None = None  # open time of the last candle queued
        self._emitted_ts: int | None = None  # open time of the last candle handed to the engine (the cursor)
        self._forming: Candle | None = None  # latest update of the bar the stream is building
        self._need_fill = True  # the next streamed bar is the first of a connection: fill the gap before it
        self._catch_up_requested = False  # a reconnect: fetch every closed bar from REST now
        self._checked_end = 0  # REST confirmed every bar opening before this (queued, or no trades)
        self._market: MarketInfo | None = None
        self._market_restored = False
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.connected = False
        self._last_message = time.monotonic()
        self._last_candle_message = time.monotonic()
        self._next_close_attempt = 0.0
        self._logged: dict[str, int] = {}
        # counters (status / metrics)
        self.counts: dict[str, int] = {
            "stream_closed_candles": 0, "rest_closed_candles": 0, "backfilled_candles": 0, "gap_filled_candles": 0,
            "stream_updates": 0, "malformed_frames": 0, "malformed_rows": 0, "late_updates": 0,
            "out_of_order_updates": 0, "connections": 0, "disconnects": 0, "stale_reconnects": 0,
            "ws_errors": 0, "rest_failures": 0,
        }
        self.reconnect_seconds: list[float] = []
        self.backfill: dict[str, float] = {}

    # --- CandleSource -------------------------------------------------------------------------------------
    async def start(self, last_processed_ts: int | None, warmup_candles: int) -> None:
        if self._emitted_ts is None and last_processed_ts is not None:
            self._emitted_ts = last_processed_ts
        self._tail_ts = self._emitted_ts
        self._wake = asyncio.Event()
        self._fill_lock = asyncio.Lock()
        now = await self._first_sync()
        log.info("%s exchange clock synchronised: offset %.0f ms, rate %.4g, round trip %.1f ms", self.symbol,
                 self.clock.offset_ms, self.clock.rate, self.clock.round_trip_ms)
        await self._load_market()
        end = now - now % self.interval_ms  # bars before this boundary have ended
        started = time.monotonic()
        pages = self.rest.pages
        if self._tail_ts is None:
            what = "warm-up"
            candles = await self._retry("warm-up history", lambda: self.rest.candles_before(
                self.symbol, self.interval, self.interval_ms, end, warmup_candles)) if warmup_candles > 0 else []
            if len(candles) < warmup_candles:
                log.warning("%s exchange history has only %d of the %d warm-up candles", self.symbol,
                            len(candles), warmup_candles)
        else:
            what = "restart backfill"
            first = self._tail_ts + self.interval_ms
            candles = await self._retry("restart backfill", lambda: self.rest.candles_range(
                self.symbol, self.interval, self.interval_ms, first, end)) if first < end else []
        for candle in candles:
            self._enqueue(candle)
        self.counts["backfilled_candles"] += len(candles)
        elapsed = time.monotonic() - started
        self.backfill = {"candles": len(candles), "seconds": round(elapsed, 4), "pages": self.rest.pages - pages,
                         "candles_per_s": round(len(candles) / elapsed, 1) if elapsed > 0 else 0.0}
        log.info("%s %s: %d closed candles from REST in %.3f s (%d pages, %.0f candles/s), last ts=%s",
                 self.symbol, what, len(candles), elapsed, self.backfill["pages"], self.backfill["candles_per_s"],
                 self._tail_ts)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._guard("stream", self._stream_loop)),
                       loop.create_task(self._guard("closer", self._closer_loop)),
                       loop.create_task(self._guard("clock", self._clock_loop))]

    async def next_batch(self, max_items: int) -> list[SourceItem] | None:
        ready = self._ready
        while not ready:
            if self._closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        batch: list[SourceItem] = [ready.popleft() for _ in range(min(max_items, len(ready)))]
        self._emitted_ts = batch[-1].ts  # type: ignore[union-attr]  # only Candles are queued
        return batch

    def cursor(self) -> dict[str, Any]:
        return {"last_ts": self._emitted_ts, "market": self._market.as_dict() if self._market else None}

    def restore(self, cursor: dict[str, Any]) -> None:
        last = cursor.get("last_ts")
        self._emitted_ts = int(last) if last is not None else None
        if "market" in cursor:  # the rules this ledger was built with stay in force across restarts
            market = cursor["market"]
            self._market = MarketInfo.from_dict(market) if isinstance(market, dict) else None
            self._market_restored = True

    def market_rules(self) -> MarketRules | None:
        """Broker rules from ``/markets`` (None: use the offline defaults / auto tick)."""
        market, s = self._market, self.exchange
        if not s.exchange_market_rules or market is None or market.tick_size is None:
            return None
        return MarketRules(
            market.tick_size,
            market.quantity_decimals if market.quantity_decimals is not None else s.quantity_decimals,
            market.min_order_quote if market.min_order_quote is not None else s.min_order_quote,
            market.min_order_base if market.min_order_base is not None else s.min_order_base,
        )

    def status(self) -> dict[str, Any]:
        now = self.clock.now_ms()
        last = self._emitted_ts
        out: dict[str, Any] = {
            "source": "bitvavo", "live": True, "symbol": self.symbol, "interval": self.interval,
            "connected": self.connected, "breaker": self.breaker.state.value,
            "last_closed_ts": last, "forming_ts": self._forming.ts if self._forming else None,
            "queued": len(self._ready),
            "data_age_ms": (now - (last + self.interval_ms)) if last is not None else None,
            "seconds_since_message": round(time.monotonic() - self._last_message, 3),
            "exchange_time_ms": now, "market": self._market.as_dict() if self._market else None,
            "reconnect_seconds_last": self.reconnect_seconds[-1] if self.reconnect_seconds else None,
            "reconnect_seconds": list(self.reconnect_seconds[-20:]),
            "backfill": dict(self.backfill),
        }
        out.update(self.counts)
        out.update(self.clock.snapshot())
        out.update(self.limiter.snapshot())
        return out

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=5.0)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.debug("%s source task ended with %r", self.symbol, task.exception())
            if pending:
                log.warning("%s %d source task(s) did not stop within 5 s", self.symbol, len(pending))
        self._tasks = []
        await self.rest.close()

    # --- queueing -----------------------------------------------------------------------------------------
    def _enqueue(self, candle: Candle) -> bool:
        tail = self._tail_ts
        if tail is not None and candle.ts <= tail:
            return False
        self._ready.append(candle)
        self._tail_ts = candle.ts
        forming = self._forming
        if forming is not None and forming.ts <= candle.ts:
            self._forming = None
        self._wake.set()
        return True

    # --- helpers ------------------------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with (seeded) jitter: half fixed, half random."""
        s = self.exchange
        base = min(s.reconnect_max_backoff_seconds, s.reconnect_initial_backoff_seconds * 2 ** max(attempt - 1, 0))
        return base * (0.5 + 0.5 * self._rng.random())

    def _log_limited(self, kind: str, level: int, message: str, *args: Any) -> None:
        count = self._logged[kind] = self._logged.get(kind, 0) + 1
        if count <= _LOGGED_PER_KIND or count % 100 == 0:
            log.log(level, message + (" (further ones are logged every 100th)" if count == _LOGGED_PER_KIND
                                      else ""), *args)

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Call until it succeeds (or the source closes), with backoff; records the data breaker."""
        attempt = 0
        while True:
            if self._closed:
                raise SourceClosed(what)
            try:
                result = await call()
            except RateLimitedError as exc:
                self.counts["rest_failures"] += 1
                self.breaker.record_failure(str(exc))
                log.warning("%s %s: %s", self.symbol, what, exc)
                continue  # the limiter blocks the next request until resetat
            except RestError as exc:
                self.counts["rest_failures"] += 1
                self.breaker.record_failure(str(exc))
                attempt += 1
                delay = self._backoff(attempt)
                log.warning("%s %s failed: %s; retry %d in %.2f s", self.symbol, what, exc, attempt, delay)
                await asyncio.sleep(delay)
                continue
            self.breaker.record_success()
            return result

    async def _first_sync(self) -> int:
        """Two ``/time`` syncs 50 ms apart (the second measures the clock's rate: 1.0, or a fast test exchange).
        An exchange without ``/time`` (HTTP 404) falls back to the local clock, with a warning."""
        async def sync_or_404() -> int | None:
            try:
                return await self.rest.sync_time()
            except RestError as exc:
                if exc.status == 404:
                    return None
                raise

        first = await self._retry("clock sync (/time)", sync_or_404)
        if first is None:
            log.warning("%s exchange has no /time (HTTP 404): using the local clock", self.symbol)
            return self.clock.now_ms()
        await asyncio.sleep(0.05)
        second = await self._retry("clock sync (/time)", sync_or_404)
        return second if second is not None else first

    async def _load_market(self) -> None:
        """``/markets`` for the broker's precision and minimums; offline defaults when unavailable. Its failures
        count against the data breaker only when the broker uses the rules (EXCHANGE_MARKET_RULES)."""
        rules_used = self.exchange.exchange_market_rules
        for attempt in range(1, 4):
            try:
                market = await self.rest.market(self.symbol)
            except RateLimitedError as exc:
                self.counts["rest_failures"] += 1
                if rules_used:
                    self.breaker.record_failure(str(exc))
                log.warning("%s /markets: %s", self.symbol, exc)
                continue
            except RestError as exc:
                if exc.status != 404:
                    self.counts["rest_failures"] += 1
                    if rules_used:
                        self.breaker.record_failure(str(exc))
                if exc.status == 404 or attempt == 3:
                    source = "the stored rules" if self._market else "offline defaults"
                    log.warning("%s market metadata unavailable (%s); using %s", self.symbol, exc, source)
                    return
                await asyncio.sleep(self._backoff(attempt))
                continue
            if market.status and market.status != "trading":
                log.warning("%s market status is %r (paper trading continues on its candles)", self.symbol,
                            market.status)
            if self._market_restored:
                if market.as_dict() != (self._market.as_dict() if self._market else None):
                    log.warning("%s /markets changed since this ledger began; keeping the stored rules (%s) so "
                                "that a restart trades like a run that never stopped", self.symbol,
                                self._market.as_dict() if self._market else "offline defaults")
                return
            self._market = market
            log.info("%s market metadata: tick %s, quantity decimals %s, minimum order %s quote / %s base",
                     self.symbol, market.tick_size, market.quantity_decimals, market.min_order_quote,
                     market.min_order_base)
            return

    async def _guard(self, name: str, loop_fn: Callable[[], Awaitable[None]]) -> None:
        """Keep a background loop alive: an unexpected error is logged and the loop restarts."""
        while not self._closed:
            try:
                await loop_fn()
                return
            except (asyncio.CancelledError, SourceClosed):
                return
            except Exception:
                log.exception("%s %s loop failed; restarting it in 1 s", self.symbol, name)
                self.breaker.record_failure(f"{name} loop error")
                await asyncio.sleep(1.0)

    # --- the stream ---------------------------------------------------------------------------------------
    async def _stream_loop(self) -> None:
        s = self.exchange
        attempt = 0
        dropped_at: float | None = None
        while not self._closed:
            stream = CandleStream(s.bitvavo_ws_url, self.symbol, self.interval, s.api_timeout_seconds,
                                  s.ws_stale_seconds)
            try:
                await stream.open()
            except StreamError as exc:
                attempt += 1
                self.breaker.record_failure(str(exc))
                delay = self._backoff(attempt)
                log.warning("%s %s; reconnecting in %.2f s (attempt %d)", self.symbol, exc, delay, attempt)
                await asyncio.sleep(delay)
                continue
            self.connected = True
            self._need_fill = True
            self._catch_up_requested = dropped_at is not None
            self.counts["connections"] += 1
            self._last_message = time.monotonic()
            if dropped_at is not None:
                took = time.monotonic() - dropped_at
                self.reconnect_seconds.append(round(took, 4))
                log.info("%s stream reconnected after %.3f s (attempt %d)", self.symbol, took, attempt)
            else:
                log.info("%s stream connected to %s (candles %s)", self.symbol, s.bitvavo_ws_url, self.interval)
            candles_before = self.counts["stream_updates"]
            reason = "stream ended"
            try:
                async for frame in stream.frames():
                    if self._closed:
                        return
                    self._last_message = time.monotonic()
                    await self._on_frame(frame)
            except StaleStreamError as exc:
                reason = str(exc)
                self.counts["stale_reconnects"] += 1
            except StreamError as exc:
                reason = str(exc)
            finally:
                self.connected = False
                await stream.close()
            dropped_at = time.monotonic()
            self.counts["disconnects"] += 1
            self.breaker.record_failure(reason)
            if self.counts["stream_updates"] > candles_before:
                attempt = 0  # the connection worked: start the backoff afresh
            attempt += 1
            delay = self._backoff(attempt)
            log.warning("%s %s; reconnecting in %.2f s", self.symbol, reason, delay)
            await asyncio.sleep(delay)

    async def _on_frame(self, frame: str | bytes) -> None:
        try:
            message = parse_ws_message(frame)
            batch = ws_candles(message)
        except ParseError as exc:
            self.counts["malformed_frames"] += 1
            self._log_limited("malformed", logging.WARNING, "%s malformed stream frame skipped (%d so far): %s",
                              self.symbol, self.counts["malformed_frames"], exc)
            return
        if batch is None:
            error = api_error(message)
            if error is not None:
                self.counts["ws_errors"] += 1
                log.warning("%s stream error event: errorCode %s: %s", self.symbol, error.code, error.message)
                if error.rate_limited:
                    wait = self.limiter.on_rate_limited({}, error.ban_expiry_ms())
                    raise StreamError(f"stream rate limited (errorCode {error.code}); REST waits {wait:.2f} s")
            elif message.get("event") == "subscribed":
                log.info("%s subscribed: %s", self.symbol, message.get("subscriptions"))
            return
        if batch.bad_rows:
            self.counts["malformed_rows"] += batch.bad_rows
            self._log_limited("malformed_row", logging.WARNING, "%s unparseable candle row skipped (%d so far)",
                              self.symbol, self.counts["malformed_rows"])
        if (batch.market and batch.market != self.symbol) or (batch.interval and batch.interval != self.interval):
            return
        for candle in batch.candles:
            await self._on_candle(candle)

    async def _on_candle(self, candle: Candle) -> None:
        self.clock.observe(candle.ts)
        self.counts["stream_updates"] += 1
        self._last_candle_message = time.monotonic()
        tail = self._tail_ts
        if tail is not None and candle.ts <= tail:
            self.counts["late_updates"] += 1
            if not self._need_fill:
                self._log_limited("late", logging.WARNING, "%s update of already closed bar ts=%d skipped "
                                  "(duplicate or late, %d so far)", self.symbol, candle.ts, self.counts["late_updates"])
            return
        forming = self._forming
        if forming is not None and candle.ts == forming.ts:
            self._forming = candle
            self._need_fill = False
            return
        if forming is not None and candle.ts < forming.ts:
            self.counts["out_of_order_updates"] += 1
            self._log_limited("out_of_order", logging.WARNING,
                              "%s out-of-order stream update skipped: ts=%d while bar %d is forming",
                              self.symbol, candle.ts, forming.ts)
            return
        # a newer bar: every earlier one has ended on the exchange
        if forming is not None and not self._need_fill:
            self._enqueue(forming)  # its last update carries its final values
            self.counts["stream_closed_candles"] += 1
            self.breaker.record_success()
        # after a reconnect the forming bar's final state was not seen, and bars the stream skipped (a stall, a
        # drop) are only on REST: fill every bar between the last queued one and this one
        self._need_fill = False
        self._forming = None
        async with self._fill_lock:
            await self._fill_before(candle.ts)
        if self._tail_ts is not None and candle.ts <= self._tail_ts:
            self.counts["late_updates"] += 1
            return
        self._forming = candle

    async def _fill_before(self, ts: int) -> None:
        """Queue every REST candle between the last queued one and ``ts`` (a bar the stream shows: all earlier
        bars have ended)."""
        tail = self._tail_ts
        if tail is None or tail + self.interval_ms >= ts:
            return
        started = time.monotonic()
        candles = await self._retry("gap-fill", lambda: self.rest.candles_range(
            self.symbol, self.interval, self.interval_ms, tail + self.interval_ms, ts))
        added = sum(1 for candle in candles if self._enqueue(candle))
        self._checked_end = max(self._checked_end, ts)
        self.counts["gap_filled_candles"] += added
        missing = (ts - tail) // self.interval_ms - 1 - added
        log.info("%s gap-fill from REST: %d candles between ts=%d and ts=%d in %.3f s%s", self.symbol, added,
                 tail, ts, time.monotonic() - started,
                 f" ({missing} intervals without trades stay gaps)" if missing > 0 else "")

    # --- catch-up from REST (after a reconnect, and in quiet markets) -------------------------------------
    def _next_open_ms(self) -> int | None:
        """Open time of the first bar not yet queued nor confirmed absent by REST (None before any candle)."""
        tail = self._tail_ts
        if tail is None:
            return self._forming.ts if self._forming is not None else None
        return max(tail + self.interval_ms, self._checked_end)

    def _catch_up_due(self) -> bool:
        if self._catch_up_requested:
            return True
        if time.monotonic() - self._last_candle_message < _QUIET_S:
            return False  # the stream is talking: it closes bars itself
        next_open = self._next_open_ms()
        return next_open is not None and self.clock.now_ms() >= next_open + self.interval_ms + self.grace_ms

    async def _closer_loop(self) -> None:
        """The quiet-market timer: whenever a bar may have closed that the stream did not close (no trade since,
        a stall, a reconnect), ask REST for every bar closed after the last one queued."""
        retry_s = max(1.0, self.exchange.candle_close_grace_seconds)
        while not self._closed:
            await asyncio.sleep(_CLOSE_CHECK_S)  # also while disconnected: REST works
            if time.monotonic() < self._next_close_attempt or not self._catch_up_due():
                continue
            async with self._fill_lock:
                if not await self._catch_up():
                    self._next_close_attempt = time.monotonic() + retry_s

    async def _catch_up(self) -> bool:
        """Queue every bar with ``ts + interval + grace <= exchange now`` after the last queued one, whether or
        not the stream has shown a newer bar. False when REST failed (tried again later)."""
        try:
            server_now = await self.rest.sync_time()
            closed_end = server_now - self.grace_ms
            end = closed_end - closed_end % self.interval_ms  # bars opening before this have closed (+ grace)
            first = self._next_open_ms()
            if first is None:
                first = end - self.interval_ms
            candles = (await self.rest.candles_range(self.symbol, self.interval, self.interval_ms, first, end)
                       if first < end else [])
        except RestError as exc:
            self.counts["rest_failures"] += 1
            self.breaker.record_failure(str(exc))
            log.warning("%s REST catch-up after ts=%s failed: %s", self.symbol, self._tail_ts, exc)
            return False
        self.breaker.record_success()
        self._catch_up_requested = False
        added = sum(1 for candle in candles if candle.ts < end and self._enqueue(candle))
        self._checked_end = max(self._checked_end, end)
        self.counts["rest_closed_candles"] += added
        if added:
            log.debug("%s %d bar(s) closed by time and fetched from REST, last ts=%s", self.symbol, added,
                      self._tail_ts)
        return True

    # --- clock --------------------------------------------------------------------------------------------
    async def _clock_loop(self) -> None:
        interval = self.exchange.clock_sync_interval_seconds
        while not self._closed:
            await asyncio.sleep(interval)
            try:
                await self.rest.sync_time()
            except RestError as exc:
                self.counts["rest_failures"] += 1
                log.warning("%s clock re-sync failed: %s", self.symbol, exc)
