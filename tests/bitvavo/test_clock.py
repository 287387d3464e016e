"""The exchange clock: offset from /time, rate against a fast virtual clock, never behind streamed candles."""

from __future__ import annotations

from papertrader.market.bitvavo.clock import ExchangeClock
from papertrader.market.bitvavo.ratelimit import RateLimiter
from papertrader.market.bitvavo.rest import BitvavoRest
from papertrader.market.fake_exchange import FakeBitvavo

from .helpers import synthetic_candles


class Ticks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_000.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall


def test_offset_under_local_skew_and_extrapolation() -> None:
    t = Ticks()
    clock = ExchangeClock(t.monotonic, t.time)
    # the exchange is 5 s ahead of a skewed local wall clock; request takes 20 ms
    t.mono, t.wall = 100.02, 1000.02
    clock.record_sync(1_005_010, 100.0, 100.02)
    assert abs(clock.offset_ms - 5000) < 1e-6 and abs(clock.round_trip_ms - 20) < 1e-6
    t.mono += 2.0
    assert clock.now_ms() == 1_005_010 + 2010  # 2 s after the midpoint of the request
    clock.observe(2_000_000)
    assert clock.now_ms() == 2_000_000  # a streamed candle proves the exchange is at least that late
    assert clock.local_delay(1_000_000) == 0.0


def test_rate_is_measured_between_syncs() -> None:
    t = Ticks()
    clock = ExchangeClock(t.monotonic, t.time)
    clock.record_sync(1_000_000, 100.0, 100.0)
    clock.record_sync(1_000_000 + 12_000 * 1000, 101.0, 101.0)  # 1 local second = 12000 exchange seconds
    assert abs(clock.rate - 12_000) < 1e-6
    t.mono = 101.5
    assert clock.now_ms() == 1_000_000 + 12_000 * 1500
    assert abs(clock.local_delay(clock.now_ms() + 60_000) - 0.005) < 1e-9  # one virtual minute = 5 ms
    t2 = Ticks()
    real = ExchangeClock(t2.monotonic, t2.time)
    real.record_sync(5_000_000, 100.0, 100.0)
    real.record_sync(5_000_000 + 10_030, 110.0, 110.0)  # 0.3 % drift is jitter for a real exchange: rate 1.0
    assert real.rate == 1.0


async def test_fast_fake_exchange_clock_rate() -> None:
    async with FakeBitvavo(synthetic_candles(50), start_index=10, speed=12_000) as fake:
        clock = ExchangeClock()
        rest = BitvavoRest(fake.rest_url, clock, RateLimiter(clock))
        try:
            await rest.sync_time()
            import asyncio

            await asyncio.sleep(0.2)
            await rest.sync_time()
        finally:
            await rest.close()
        assert 8_000 < clock.rate < 16_000
        assert abs(clock.now_ms() - fake.now_ms()) < 300_000  # within five virtual minutes (25 ms real)
