"""PaperBroker on its own: slippage and tick rounding against the trader, sizing from cash with the fee, cents
rounding, the never-overspend step-down, refusals, and a sell that reconciles to the cent (values worked by hand
in the comments)."""

from decimal import ROUND_FLOOR, Decimal

import pytest

from papertrader.broker.market_rules import MarketRules
from papertrader.broker.paper import Execution, OrderRejected, PaperBroker
from papertrader.events import Side
from papertrader.ledger.portfolio import Portfolio

FEE = Decimal("0.0025")
SLIPPAGE = Decimal("0.001")


def make(cash: str = "1000", quantity_decimals: int = 8) -> tuple[Portfolio, PaperBroker]:
    portfolio = Portfolio("BTC-EUR", Decimal(cash))
    rules = MarketRules(tick_size=Decimal("0.01"), quantity_decimals=quantity_decimals, min_order_quote=Decimal("5"))
    return portfolio, PaperBroker(portfolio, rules, FEE, SLIPPAGE)


@pytest.mark.parametrize(("reference", "side", "expected"), [
    (100.0, Side.BUY, "100.10"),  # 100 * 1.001
    (100.0, Side.SELL, "99.90"),  # 100 * 0.999
    (100.004, Side.BUY, "100.11"),  # 100.104004 rounded up to the tick
    (100.004, Side.SELL, "99.90"),  # 99.903996 rounded down to the tick
])
def test_slippage_and_tick_rounding_go_against_the_trader(reference, side, expected):
    _, broker = make()
    price = broker.slipped(reference, side)
    assert price == Decimal(expected) and str(price) == expected


def test_buy_sizes_from_the_cash_share_with_the_fee_and_rounds_money_up():
    portfolio, broker = make()
    result = broker.buy(1, Decimal("100.00"), 0.5, "signal")
    assert isinstance(result, Execution)
    # budget 500.00; 500 / (100 * 1.0025) = 4.987531172... floored to 8 decimals
    assert result.fill.quantity == Decimal("4.98753117")
    assert result.notional == Decimal("498.76")  # 498.753117 rounded up to the cent
    assert result.fill.fee == Decimal("1.25")  # 498.76 * 0.0025 = 1.2469, rounded up
    assert result.cash_after == portfolio.cash == Decimal("499.99")  # 1000 - 498.76 - 1.25
    assert (result.fill.side, result.fill.price, result.fill.reason) == (Side.BUY, Decimal("100.00"), "signal")
    [lot] = portfolio.lots
    assert lot.entry_cost == Decimal("500.01") and lot.id == result.fill.position_id == 1


def test_all_in_buy_steps_down_until_notional_and_fee_fit_the_cash():
    portfolio, broker = make()
    result = broker.buy(1, Decimal("100.00"), 1.0, "signal")
    assert isinstance(result, Execution)
    # 9.97506234 would cost 997.51 + 2.50 = 1000.01 > 1000: the broker steps down to 9.975 (997.50 + 2.50)
    assert result.fill.quantity == Decimal("9.97500000")
    assert (result.notional, result.fill.fee, portfolio.cash) == (Decimal("997.50"), Decimal("2.50"), Decimal("0.00"))


def test_a_budget_that_buys_nothing_is_refused_as_insufficient_cash():
    portfolio, broker = make(cash="1", quantity_decimals=2)
    result = broker.buy(7, Decimal("100.00"), 1.0, "signal")
    assert result == OrderRejected(7, Side.BUY, "insufficient_cash",
                                   "insufficient cash: 1.00 available, budget 1.00 buys nothing at 100.00")
    assert portfolio.cash == Decimal("1.00") and portfolio.lots == [] and portfolio.fills == 0


def test_an_order_below_the_exchange_minimum_is_refused_and_books_nothing():
    portfolio, broker = make()
    result = broker.buy(7, Decimal("100.00"), 0.004, "signal")  # budget 4.00 < minimum 5 quote
    assert result == OrderRejected(7, Side.BUY, "below_minimum",
                                   "order below minimum: 0.03990024 at 100.00 = 4.00 (minimum 5 quote, 0 base)")
    assert portfolio.cash == Decimal("1000.00") and portfolio.lots == [] and portfolio.fees == 0


def test_sell_rounds_the_notional_down_the_fee_up_and_reconciles_to_the_cent():
    portfolio, broker = make()
    broker.buy(1, Decimal("100.00"), 0.5, "signal")
    [lot] = portfolio.lots
    result = broker.sell(2, lot, Decimal("110.00"), "take_profit")
    assert result.notional == Decimal("548.62")  # 4.98753117 * 110 = 548.6284287, rounded down
    assert result.fill.fee == Decimal("1.38")  # 1.37155 rounded up
    assert result.fill.realized_pnl == Decimal("47.23")  # 548.62 - 1.38 - 500.01
    assert result.cash_after == portfolio.cash == Decimal("1047.23")  # 499.99 + 548.62 - 1.38
    assert portfolio.cash == portfolio.initial_capital + portfolio.realized_pnl
    assert portfolio.fees == Decimal("2.63") and portfolio.lots == [] and portfolio.winning_lots == 1
    assert (result.fill.side, result.fill.position_id, result.fill.quantity) == (Side.SELL, 1, lot.quantity)


def test_a_sell_is_never_refused_even_below_the_minimum():
    portfolio, broker = make()
    broker.buy(1, Decimal("100.00"), 0.01, "signal")  # 9.97 of cash: above the 5 minimum
    [lot] = portfolio.lots
    result = broker.sell(2, lot, Decimal("1.00"), "stop_loss")  # worth cents now
    assert isinstance(result, Execution) and portfolio.lots == []
    assert result.notional == (lot.quantity * Decimal("1.00")).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)


def _on_the_grid_by_steps(price: Decimal, tick: Decimal, side: Side) -> Decimal:
    """The general rounding (whole ticks, at least one), written out: what the decimal-tick shortcut must equal."""
    from decimal import ROUND_CEILING

    steps = (price / tick).to_integral_value(rounding=ROUND_CEILING if side == Side.BUY else ROUND_FLOOR)
    return (max(steps, Decimal(1)) * tick).quantize(Decimal(1).scaleb(min(tick.as_tuple().exponent, 0)))


@pytest.mark.parametrize("tick", ["1", "0.1", "0.01", "0.00001", "1E-8", "10", "0.5", "0.010", "25"])
def test_price_rounding_shortcut_for_decimal_ticks_equals_whole_ticks(tick: str) -> None:
    import random

    rng = random.Random(tick)
    rules = MarketRules(Decimal(tick))
    for _ in range(3000):
        price = Decimal(repr(rng.choice((rng.uniform(0.0, 3.0), rng.uniform(0, 1e6), rng.lognormvariate(0, 8)))))
        for side in (Side.BUY, Side.SELL):
            got, want = rules.price_against(price, side), _on_the_grid_by_steps(price, Decimal(tick), side)
            assert (got, str(got)) == (want, str(want)), (price, side)
