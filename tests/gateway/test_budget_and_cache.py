"""The gateway's weight budget and candle cache, one rule at a time (no network)."""

from __future__ import annotations

from papertrader.market.bitvavo.clock import ExchangeClock
from papertrader.market.gateway.budget import DEFAULT_BLOCK_MS, WeightBudget
from papertrader.market.gateway.cache import PairCache

MINUTE = 60_000
T0 = 1_704_067_200_000  # a minute boundary


class Clocks:
    """A local monotonic clock the test moves by hand, and an exchange clock synchronised to T0 on it."""

    def __init__(self) -> None:
        self.local = 100.0
        self.exchange = ExchangeClock(monotonic=lambda: self.local, wall=lambda: 0.0)

    def sync(self) -> None:
        self.exchange.record_sync(T0 + int((self.local - 100.0) * 1000), self.local, self.local)

    def advance(self, seconds: float) -> None:
        self.local += seconds


def synced_budget(limit: int = 5, reserve: int = 50) -> tuple[Clocks, WeightBudget]:
    clocks = Clocks()
    clocks.sync()
    return clocks, WeightBudget(clocks.exchange, limit=limit, window_ms=MINUTE, reserve=reserve)


def test_spends_up_to_the_limit_then_names_the_window_end() -> None:
    clocks, budget = synced_budget(limit=3)
    assert [budget.try_spend() for _ in range(3)] == [None, None, None]
    assert budget.try_spend() == T0 + MINUTE
    assert budget.remaining() == 0 and budget.refused_total == 1 and budget.used_total == 3
    assert budget.headers() == {"bitvavo-ratelimit-limit": "3", "bitvavo-ratelimit-remaining": "0",
                                "bitvavo-ratelimit-resetat": str(T0 + MINUTE)}
    clocks.advance(60.0)
    assert budget.try_spend() is None and budget.remaining() == 2


def test_keeps_a_reserve_of_what_the_exchange_reports_left() -> None:
    _clocks, budget = synced_budget(limit=600, reserve=50)
    budget.observe({"bitvavo-ratelimit-remaining": "52", "bitvavo-ratelimit-resetat": str(T0 + 30_000)})
    assert budget.try_spend() is None  # 51 left after it: above the reserve
    assert budget.try_spend() is None  # 50 left
    assert budget.try_spend() == T0 + 30_000  # would leave 49, inside the reserve


def test_a_429_blocks_until_its_resetat_and_then_sends_again() -> None:
    clocks, budget = synced_budget(limit=100)
    until = budget.rate_limited({"bitvavo-ratelimit-resetat": str(T0 + 20_000)})
    assert until == T0 + 20_000
    assert budget.try_spend() == T0 + 20_000
    assert budget.headers()["bitvavo-ratelimit-remaining"] == "0"
    clocks.advance(20.0)
    assert budget.try_spend() is None


def test_a_ban_blocks_until_its_expiry_and_an_implausible_reset_for_the_default() -> None:
    _clocks, budget = synced_budget(limit=100)
    assert budget.rate_limited({}, ban_expiry_ms=T0 + 300_000) == T0 + 300_000
    _clocks, other = synced_budget(limit=100)
    assert other.rate_limited({"bitvavo-ratelimit-resetat": "99999999999999"}) == T0 + DEFAULT_BLOCK_MS


def test_a_429_before_the_first_sync_blocks_for_a_while_in_local_time_not_forever() -> None:
    clocks = Clocks()
    budget = WeightBudget(clocks.exchange, limit=100, window_ms=MINUTE)
    assert budget.try_spend() is None  # the first /time
    assert budget.rate_limited({"bitvavo-ratelimit-resetat": str(T0 + 5_000)}) == 0
    assert budget.try_spend() == 0  # blocked, at a time not known in exchange ms
    clocks.advance(DEFAULT_BLOCK_MS / 1000 - 1)
    assert budget.try_spend() == 0
    clocks.advance(1.0)
    assert budget.try_spend() is None  # the /time sync may be tried again
    clocks.sync()
    assert budget.try_spend() is None


def row(ts: int, close: str = "1") -> list:
    return [ts, "1", "1", "1", close, "2"]


def test_a_rest_page_covers_only_bars_closed_when_it_was_sent() -> None:
    cache = PairCache(MINUTE, 100)
    rows = [row(T0 + i * MINUTE) for i in range(6)]
    cache.add_page(rows, T0, T0 + 6 * MINUTE, 1440, closed_before=T0 + 4 * MINUTE + 10)
    assert cache.serve(T0, T0 + 4 * MINUTE, 1440) is not None  # bars 0-3: closed
    assert cache.serve(T0, T0 + 5 * MINUTE, 1440) is None  # bar 4 was forming
    assert len(cache) == 4


def test_a_full_page_covers_from_its_oldest_row_only() -> None:
    cache = PairCache(MINUTE, 100)
    rows = [row(T0 + i * MINUTE) for i in range(3, 6)]  # limit 3: older rows were cut off
    cache.add_page(rows, T0, T0 + 6 * MINUTE, 3, closed_before=T0 + 10 * MINUTE)
    assert cache.serve(T0, T0 + 6 * MINUTE, 3) is None
    assert cache.serve(T0 + 3 * MINUTE, T0 + 6 * MINUTE, 3) == [
        f'[{T0 + i * MINUTE},"1","1","1","1","2"]' for i in (5, 4, 3)]


def test_the_stream_covers_a_bar_when_the_next_one_appears_and_skips_late_updates() -> None:
    cache = PairCache(MINUTE, 100)
    cache.on_stream(row(T0, "1"))
    cache.on_stream(row(T0, "2"))  # the same bar, later update
    assert cache.serve(T0, T0 + MINUTE, 10) is None  # still forming
    cache.on_stream(row(T0 + 2 * MINUTE, "5"))  # a bar without trades in between
    cache.on_stream(row(T0 - MINUTE, "9"))  # late: ignored
    assert cache.serve(T0, T0 + MINUTE, 10) == [f'[{T0},"1","1","1","2","2"]']
    assert cache.serve(T0, T0 + 2 * MINUTE, 10) is None  # the empty minute is not known to be empty
    assert cache.covered_end(T0) == T0 + MINUTE


def test_a_lost_stream_forgets_the_forming_bar() -> None:
    cache = PairCache(MINUTE, 100)
    cache.on_stream(row(T0, "1"))
    cache.stream_lost()
    cache.on_stream(row(T0 + MINUTE, "3"))  # the first bar's last updates may be lost: not stored
    assert len(cache) == 0 and cache.covered_end(T0) is None


def test_the_cache_is_bounded_oldest_first() -> None:
    cache = PairCache(MINUTE, 3)
    rows = [row(T0 + i * MINUTE) for i in range(5)]
    cache.add_page(rows, T0, T0 + 5 * MINUTE, 1440, closed_before=T0 + 10 * MINUTE)
    assert len(cache) == 3
    assert cache.covered_end(T0) is None and cache.covered_end(T0 + 2 * MINUTE) == T0 + 5 * MINUTE


def test_awaiting_stream_when_what_is_missing_starts_at_the_forming_bar() -> None:
    cache = PairCache(MINUTE, 100)
    cache.on_stream(row(T0))
    cache.on_stream(row(T0 + MINUTE))  # bar 0 closed, bar 1 forming
    assert cache.serve(T0, T0 + MINUTE, 10) is not None and not cache.awaiting_stream(T0, T0 + MINUTE)
    assert cache.awaiting_stream(T0, T0 + 2 * MINUTE)  # a client whose clock has passed bar 1's end
    assert cache.awaiting_stream(T0, T0 + 3 * MINUTE)  # or whose clock is ahead of the stream's frames
    assert not cache.awaiting_stream(T0 - MINUTE, T0 + 2 * MINUTE)  # the start is not covered: ask upstream
    assert cache.awaiting_stream(T0 + MINUTE, T0 + 2 * MINUTE)  # only the forming bar, once its end has passed
    assert cache.awaiting_stream(T0 + 2 * MINUTE, T0 + 3 * MINUTE)  # a bar the lagging stream has not begun
    cache.on_stream(row(T0 + 2 * MINUTE))
    assert not cache.awaiting_stream(T0, T0 + 2 * MINUTE) and cache.serve(T0, T0 + 2 * MINUTE, 10) is not None
    cache.add_page([row(T0 + 2 * MINUTE), row(T0 + 3 * MINUTE)], T0 + 2 * MINUTE, T0 + 4 * MINUTE, 1440,
                   closed_before=T0 + 4 * MINUTE)  # REST ran ahead of the stream (forming bar 2)
    assert cache.awaiting_stream(T0, T0 + 5 * MINUTE)  # the stream will get there: wait for it, not the exchange
    cache.stream_lost()
    assert not cache.awaiting_stream(T0, T0 + 5 * MINUTE)  # no stream: nothing to wait for
