"""Client-side view of Bitvavo's weight budget (1000 points per minute per IP for public data).

Every REST response carries ``bitvavo-ratelimit-remaining`` / ``-resetat`` (epoch ms) / ``-limit``. Before each
request :meth:`RateLimiter.acquire` spends the request's weight from the last known ``remaining`` (so concurrent
callers cannot overspend between responses). When fewer than ``margin`` points would be left it waits until
``resetat`` instead of spending the reserve; the margin is at most a tenth of the advertised limit (or of the
largest ``remaining`` seen). After HTTP 429 / errorCode 110 (or 105 with its ban expiry) all requests stop until
``resetat`` (or the expiry; without either, ``default_wait_s``), never a tight retry loop.

``resetat`` is exchange time. It is converted to a local delay with the exchange clock (offset and rate); if that
delay is implausible (more than 16 minutes) but ``resetat`` is plausible on the local wall clock, the wall clock is
used, and when it is plausible on neither, the default wait applies. Waits are capped at 16 minutes (the longest
documented ban).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from papertrader.market.bitvavo.clock import ExchangeClock

log = logging.getLogger("papertrader.market.bitvavo")

MAX_WAIT_S = 16 * 60.0
_PLAUSIBLE_MS = MAX_WAIT_S * 1000.0


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    for key in (name, name.title(), name.lower()):
        value = headers.get(key)
        if value is not None:
            try:
                return int(float(value))
            except ValueError:
                return None
    return None


class RateLimiter:
    """Spends and tracks the weight budget; waits instead of overspending."""

    def __init__(self, clock: ExchangeClock, margin: int = 50, default_wait_s: float = 60.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.clock = clock
        self.margin = margin
        self.default_wait_s = default_wait_s
        self._sleep = sleep
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at_ms: int | None = None
        self._blocked_until = 0.0  # local monotonic seconds
        self._peak_remaining: int | None = None  # the budget's size when no -limit header is sent
        self.requests = 0
        self.rate_limited = 0  # 429 / errorCode 105/110 answers
        self.waits = 0  # times a request waited for the budget
        self.waited_s = 0.0

    # --- before a request ---------------------------------------------------------------------------------
    async def acquire(self, weight: int = 1) -> None:
        """Return when a request of ``weight`` may be sent now (its weight is then spent)."""
        while True:
            now = time.monotonic()
            if self._blocked_until > now:
                await self._wait(self._blocked_until - now)
                continue
            budget = self.limit if self.limit is not None else self._peak_remaining
            margin = self.margin if budget is None else min(self.margin, budget // 10)
            if self.remaining is not None and self.remaining - weight < margin:
                delay = self._delay_until(self.reset_at_ms) if self.reset_at_ms is not None else None
                if delay is not None and delay > 0:
                    log.warning("rate limit: %d of %s points left (margin %d), waiting %.2f s until resetat",
                                self.remaining, self.limit, margin, delay)
                    self._blocked_until = time.monotonic() + delay
                    self.remaining = None
                    continue
                self.remaining = None  # the window has passed: unknown until the next response
            if self.remaining is not None:
                self.remaining -= weight
            self.requests += 1
            return

    async def _wait(self, seconds: float) -> None:
        self.waits += 1
        self.waited_s += seconds
        await self._sleep(seconds)

    def _delay_until(self, reset_at_ms: int | None) -> float | None:
        """Local seconds until ``reset_at_ms`` (exchange epoch ms), or None if it is not plausible."""
        if reset_at_ms is None:
            return None
        rate = self.clock.rate if self.clock.rate > 0 else 1.0
        local_s = (reset_at_ms - self.clock.now_ms()) / 1000.0 / rate
        if abs(local_s) <= MAX_WAIT_S:
            return max(local_s, 0.0) + 0.005
        wall_now = time.time() * 1000.0
        if abs(reset_at_ms - wall_now) <= _PLAUSIBLE_MS:
            return min(max(reset_at_ms - wall_now, 0.0) / 1000.0 + 0.005, MAX_WAIT_S)
        return None

    # --- after a response ---------------------------------------------------------------------------------
    def update(self, headers: Mapping[str, str]) -> None:
        """Take the budget the server reports."""
        remaining = _header_int(headers, "bitvavo-ratelimit-remaining")
        if remaining is not None:
            self._peak_remaining = max(self._peak_remaining or 0, remaining)
            # responses may arrive out of order: never believe in more budget than we already spent down to
            self.remaining = remaining if self.remaining is None else min(self.remaining, remaining)
        reset_at = _header_int(headers, "bitvavo-ratelimit-resetat")
        if reset_at is not None:
            if self.reset_at_ms is not None and reset_at > self.reset_at_ms and remaining is not None:
                self.remaining = remaining  # a new window began
            self.reset_at_ms = reset_at
        limit = _header_int(headers, "bitvavo-ratelimit-limit")
        if limit is not None:
            self.limit = limit

    def on_rate_limited(self, headers: Mapping[str, str], ban_expiry_ms: int | None = None) -> float:
        """A 429 / errorCode 105/110: block every request until resetat. Returns the wait in local seconds."""
        self.rate_limited += 1
        self.update(headers)
        delay = self._delay_until(ban_expiry_ms) if ban_expiry_ms is not None else None
        if delay is None:
            delay = self._delay_until(_header_int(headers, "bitvavo-ratelimit-resetat"))
        if delay is None:
            delay = self.default_wait_s
        self._blocked_until = max(self._blocked_until, time.monotonic() + delay)
        self.remaining = None
        return delay

    def snapshot(self) -> dict[str, Any]:
        return {"ratelimit_remaining": self.remaining, "ratelimit_limit": self.limit,
                "ratelimit_reset_at_ms": self.reset_at_ms, "rest_requests": self.requests,
                "rate_limited_responses": self.rate_limited, "ratelimit_waits": self.waits,
                "ratelimit_waited_s": round(self.waited_s, 3)}
