"""The REST client (aiohttp): one session, a timeout on every request, rate limits, typed errors.

Candle fetches follow the API's rules: ``limit`` at most 1440, ``start``/``end`` on interval boundaries, newest
first. Ranges are fetched in *windows* of at most ``limit - 1`` intervals, so a window can never hold more candles
than one page returns, whatever the server's end-inclusivity; pages are merged ascending and de-duplicated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from papertrader.errors import PapertraderError
from papertrader.market.bitvavo.clock import ExchangeClock
from papertrader.market.bitvavo.parse import (
    MarketInfo,
    ParseError,
    api_error,
    parse_market,
    parse_rest_candles,
)
from papertrader.market.bitvavo.ratelimit import RateLimiter
from papertrader.market.bitvavo.session import LazySession
from papertrader.market.candle import Candle

log = logging.getLogger("papertrader.market.bitvavo")

MAX_CANDLES_PER_REQUEST = 1440


class RestError(PapertraderError, RuntimeError):
    """A failed REST request (network, timeout, HTTP error, error payload, unparseable body)."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimitedError(RestError):
    """HTTP 429 or errorCode 105/110; the limiter now blocks until resetat."""

    def __init__(self, message: str, wait_s: float, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message, status, code)
        self.wait_s = wait_s


def endpoint_label(path: str) -> str:
    """``candles/BTC-EUR?x`` -> ``GET /candles``: the request-duration metric's ``endpoint`` label."""
    return "GET /" + str(path).lstrip("/").split("/")[0].split("?")[0]


class BitvavoRest:
    """Public market-data endpoints of one Bitvavo REST base URL.

    ``on_request(endpoint, seconds)``, when given, is called after every :meth:`get` (answered or failed) with
    :func:`endpoint_label` and the time it took, rate-limit wait included."""

    def __init__(self, base_url: str, clock: ExchangeClock, limiter: RateLimiter, timeout_s: float = 10.0,
                 on_request: Callable[[str, float], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.on_request = on_request
        self.clock = clock
        self.limiter = limiter
        self._http = LazySession(timeout_s)
        self.pages = 0
        self.errors = 0

    async def close(self) -> None:
        await self._http.close()

    async def get(self, path: str, params: dict[str, Any] | None = None, weight: int = 1) -> Any:
        """GET ``path`` and return the decoded JSON body; raises RestError / RateLimitedError."""
        if self.on_request is None:
            return await self._get(path, params, weight)
        started = time.perf_counter()
        try:
            return await self._get(path, params, weight)
        finally:
            self.on_request(endpoint_label(path), time.perf_counter() - started)

    async def _get(self, path: str, params: dict[str, Any] | None, weight: int) -> Any:
        await self.limiter.acquire(weight)
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            async with self._http.session().get(url, params=params) as response:
                self.limiter.update(response.headers)
                text = await response.text()
                status = response.status
                headers = response.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.errors += 1
            kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
            raise RestError(f"GET /{path.lstrip('/')}: {kind} {str(exc)[:120]}".rstrip()) from None
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        error = api_error(body)
        if status == 429 or (error is not None and error.rate_limited and status not in (404, 405)):
            wait = self.limiter.on_rate_limited(headers, error.ban_expiry_ms() if error else None)
            self.errors += 1
            code = f", errorCode {error.code}" if error else ""
            raise RateLimitedError(f"GET /{path.lstrip('/')}: rate limited (HTTP {status}{code}), waiting "
                                   f"{wait:.2f} s until resetat", wait, status, error.code if error else None)
        if status >= 400 or error is not None:
            self.errors += 1
            detail = f"errorCode {error.code}: {error.message[:120]}" if error else text[:120]
            raise RestError(f"GET /{path.lstrip('/')}: HTTP {status} {detail}", status,
                            error.code if error else None)
        if body is None:
            self.errors += 1
            raise RestError(f"GET /{path.lstrip('/')}: body is not JSON ({text[:60]!r})", status)
        return body

    # --- endpoints ------------------------------------------------------------------------------------------
    async def sync_time(self) -> int:
        """``GET /time`` and feed the exchange clock; returns the server time (ms)."""
        sent = time.monotonic()
        body = await self.get("time")
        received = time.monotonic()
        try:
            server_ms = int(body["time"])
        except (KeyError, TypeError, ValueError):
            raise RestError(f"GET /time: unexpected body {str(body)[:80]}") from None
        self.clock.record_sync(server_ms, sent, received)
        return server_ms

    async def market(self, symbol: str) -> MarketInfo:
        body = await self.get("markets", {"market": symbol})
        try:
            return parse_market(body, symbol)
        except ParseError as exc:
            raise RestError(f"GET /markets: {exc}") from None

    async def candles(self, symbol: str, interval: str, start: int, end: int,
                      limit: int = MAX_CANDLES_PER_REQUEST) -> list[Candle]:
        """One page: candles with ``start <= ts < end`` (ascending). ``start``/``end`` must be on boundaries."""
        body = await self.get(f"{symbol}/candles",
                              {"interval": interval, "start": str(start), "end": str(end), "limit": str(limit)})
        try:
            candles = parse_rest_candles(body)
        except ParseError as exc:
            raise RestError(f"GET /{symbol}/candles: {exc}") from None
        self.pages += 1
        return [c for c in candles if start <= c.ts < end]

    async def candles_range(self, symbol: str, interval: str, interval_ms: int, first_ts: int,
                            end: int) -> list[Candle]:
        """Every candle with ``first_ts <= ts < end`` (ascending), fetched forward in windows."""
        out: list[Candle] = []
        window = (MAX_CANDLES_PER_REQUEST - 1) * interval_ms
        start = first_ts
        while start < end:
            stop = min(start + window, end)
            out.extend(await self.candles(symbol, interval, start, stop))
            start = stop
        return out

    async def candles_before(self, symbol: str, interval: str, interval_ms: int, end: int, count: int,
                             max_empty_windows: int = 3) -> list[Candle]:
        """The ``count`` newest candles with ``ts < end`` (ascending), paging backwards; fewer if history ends.

        History is considered exhausted after ``max_empty_windows`` consecutive windows without a candle.
        """
        collected: list[Candle] = []
        window = (MAX_CANDLES_PER_REQUEST - 1) * interval_ms
        empty = 0
        while len(collected) < count and empty < max_empty_windows:
            start = end - window
            page = await self.candles(symbol, interval, start, end)
            if page:
                empty = 0
                collected = page + collected
            else:
                empty += 1
            end = start
        return collected[-count:] if count else []
