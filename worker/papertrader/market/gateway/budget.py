"""The gateway's upstream REST weight budget, shared by every client.

The gateway spends at most ``limit`` weight points per ``window_ms`` of exchange time (default 600 a minute, well
below Bitvavo's 1,000 per IP), and never more than the exchange itself reports left (``bitvavo-ratelimit-remaining``
minus a reserve). After an HTTP 429, errorCode 110 or a ban (errorCode 105 with its expiry) it sends nothing until
``resetat`` / the expiry. A request that cannot be sent is refused at once with the exchange time at which it may be
retried; clients get that as a 429 with ``bitvavo-ratelimit-resetat``, which the worker's own rate limiter waits
for, so no client ever causes a ban. A rate limit met before the clock's first sync (a gateway started while the
exchange limits its IP) cannot be placed in exchange time: it blocks for ``DEFAULT_BLOCK_MS`` of local time, after
which the ``/time`` sync is tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from papertrader.market.bitvavo.clock import ExchangeClock
from papertrader.market.bitvavo.ratelimit import MAX_WAIT_S

log = logging.getLogger("papertrader.gateway")

DEFAULT_BLOCK_MS = 60_000  # a 429 without a usable resetat


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class WeightBudget:
    """Spend weight now or say when; tracks the exchange's own view and its bans."""

    def __init__(self, clock: ExchangeClock, limit: int = 600, window_ms: int = 60_000, reserve: int = 50) -> None:
        self.clock = clock
        self.limit = max(1, limit)
        self.window_ms = max(1, window_ms)
        self.reserve = reserve
        self._window_start = 0
        self._spent = 0
        self.blocked_until_ms = 0  # exchange ms: 429 / ban
        self._blocked_until_local = 0.0  # local monotonic s: a 429 before the first clock sync
        self._upstream_remaining: int | None = None
        self._upstream_reset_ms: int | None = None
        # totals (metrics)
        self.used_total = 0
        self.refused_total = 0
        self.rate_limited_total = 0

    def now(self) -> int:
        """Exchange time; 0 before the first sync (reading the unsynchronised clock would pin it to the local
        wall clock: it never runs backwards)."""
        return self.clock.now_ms() if self.clock.synced else 0

    def _roll(self, now: int) -> None:
        if now >= self._window_start + self.window_ms:
            self._window_start = now - now % self.window_ms
            self._spent = 0

    @property
    def window_end_ms(self) -> int:
        return self._window_start + self.window_ms

    def remaining(self) -> int:
        self._roll(self.now())
        return max(self.limit - self._spent, 0)

    def try_spend(self, weight: int = 1) -> int | None:
        """Spend ``weight`` (None) or return the exchange ms at which to retry."""
        now = self.now()
        self._roll(now)
        retry_at: int | None = None
        if not self.clock.synced and self.clock.local_seconds() < self._blocked_until_local:
            retry_at = 0  # unknown in exchange time; clients get 503 from /time meanwhile
        elif now < self.blocked_until_ms:
            retry_at = self.blocked_until_ms
        elif (self._upstream_remaining is not None and self._upstream_reset_ms is not None
              and now < self._upstream_reset_ms
              and self._upstream_remaining - weight < min(self.reserve, self.limit // 10)):
            retry_at = self._upstream_reset_ms
        elif self._spent + weight > self.limit:
            retry_at = self.window_end_ms
        if retry_at is not None:
            self.refused_total += 1
            return retry_at
        self._spent += weight
        self.used_total += weight
        if self._upstream_remaining is not None:
            self._upstream_remaining -= weight
        return None

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take the exchange's ``bitvavo-ratelimit-remaining`` / ``-resetat`` from an answer."""
        remaining = _header_int(headers, "bitvavo-ratelimit-remaining")
        reset_at = _header_int(headers, "bitvavo-ratelimit-resetat")
        if remaining is not None:
            self._upstream_remaining = remaining
        if reset_at is not None:
            self._upstream_reset_ms = reset_at

    def rate_limited(self, headers: Mapping[str, str], ban_expiry_ms: int | None = None) -> int:
        """A 429 / errorCode 105/110 from the exchange: block until its reset (returns it, exchange ms)."""
        self.rate_limited_total += 1
        self.observe(headers)
        if not self.clock.synced:
            self._blocked_until_local = self.clock.local_seconds() + DEFAULT_BLOCK_MS / 1000
            log.warning("upstream rate limited before the first clock sync: no REST requests for %.0f s",
                        DEFAULT_BLOCK_MS / 1000)
            return 0
        now = self.now()
        horizon = now + MAX_WAIT_S * 1000 * max(self.clock.rate, 1.0)
        until = next((t for t in (ban_expiry_ms, _header_int(headers, "bitvavo-ratelimit-resetat"))
                      if t is not None and now < t <= horizon), None)
        if until is None:
            until = now + DEFAULT_BLOCK_MS
        self.blocked_until_ms = max(self.blocked_until_ms, until)
        self._upstream_remaining = None
        log.warning("upstream rate limited: no REST requests until exchange time %d (%.1f s from now)",
                    self.blocked_until_ms, (self.blocked_until_ms - now) / 1000 / max(self.clock.rate, 1e-9))
        return self.blocked_until_ms

    def headers(self) -> dict[str, str]:
        """The ``bitvavo-ratelimit-*`` headers of every answer: the shared budget as clients see it."""
        now = self.now()
        self._roll(now)
        blocked = now < self.blocked_until_ms
        return {"bitvavo-ratelimit-limit": str(self.limit),
                "bitvavo-ratelimit-remaining": "0" if blocked else str(max(self.limit - self._spent, 0)),
                "bitvavo-ratelimit-resetat": str(self.blocked_until_ms if blocked else self.window_end_ms)}
