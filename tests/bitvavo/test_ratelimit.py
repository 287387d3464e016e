"""Rate limits against the fake exchange: the client keeps a margin of the advertised budget and, after a 429,
stays silent until resetat."""

from __future__ import annotations

import asyncio
import time

from papertrader.market.bitvavo.clock import ExchangeClock
from papertrader.market.bitvavo.ratelimit import RateLimiter
from papertrader.market.bitvavo.rest import BitvavoRest, RateLimitedError
from papertrader.market.fake_exchange import FakeBitvavo

from .helpers import synthetic_candles


async def test_requests_stay_within_the_advertised_budget() -> None:
    async with FakeBitvavo(synthetic_candles(50), start_index=10, speed=1.0, budget=50, window_ms=500) as fake:
        clock = ExchangeClock()
        limiter = RateLimiter(clock, margin=5)
        rest = BitvavoRest(fake.rest_url, clock, limiter)
        try:
            for _ in range(100):
                await rest.sync_time()
        finally:
            await rest.close()
    statuses = [status for _, _, status in fake.requests]
    assert statuses.count(429) == 0
    per_window: dict[int, int] = {}
    for ts, _, _ in fake.requests:
        per_window[ts // 500] = per_window.get(ts // 500, 0) + 1
    assert max(per_window.values()) <= 50 - 5 + 1  # the margin is kept (one request learns the new window)
    # it waited for resetat twice instead of spending the reserve: its requests span three windows
    assert limiter.waits >= 2 and max(per_window) - min(per_window) >= 2, per_window


async def test_429_storm_one_request_then_silence_until_resetat() -> None:
    async with FakeBitvavo(synthetic_candles(50), start_index=10, speed=1.0) as fake:
        clock = ExchangeClock()
        limiter = RateLimiter(clock, margin=5)
        rest = BitvavoRest(fake.rest_url, clock, limiter)
        try:
            await rest.sync_time()
            reset_at = fake.start_storm(800)
            attempts = 0
            while True:
                attempts += 1
                try:
                    await rest.get("markets")
                    break
                except RateLimitedError as exc:
                    assert 0.5 < exc.wait_s < 1.0
        finally:
            await rest.close()
    storm = [r for r in fake.requests if r[2] == 429]
    assert len(storm) == 1 and attempts == 2
    answered = [r for r in fake.requests if r[1] == "/v2/markets" and r[2] == 200]
    assert answered and answered[0][0] >= reset_at
    assert limiter.snapshot()["rate_limited_responses"] == 1


async def test_ban_expiry_from_error_code_105() -> None:
    clock = ExchangeClock()
    waits: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    limiter = RateLimiter(clock, sleep=recording_sleep)
    expiry = int(time.time() * 1000) + 300  # "... The ban expires at <ms>." (wall-clock epoch ms)
    delay = limiter.on_rate_limited({}, expiry)
    assert 0.2 < delay < 0.4
    await limiter.acquire()
    assert len(waits) == 1 and 0.2 < waits[0] < 0.4
    assert limiter.on_rate_limited({}) == limiter.default_wait_s  # no resetat, no expiry: the default wait


async def test_margin_scales_to_a_small_budget_without_a_limit_header() -> None:
    clock = ExchangeClock()
    waits: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    limiter = RateLimiter(clock, margin=50, sleep=recording_sleep)
    limiter.update({"bitvavo-ratelimit-remaining": "20", "bitvavo-ratelimit-resetat": str(clock.now_ms() + 300)})
    for _ in range(18):
        await limiter.acquire()
    assert waits == []  # the margin is 2 points of a 20-point budget, not 50
    await limiter.acquire()
    assert len(waits) == 1 and 0.2 < waits[0] < 0.4  # then it waits until resetat
