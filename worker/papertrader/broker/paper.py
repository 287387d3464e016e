"""Order execution against candles: fills at a price, fee in quote currency, Bitvavo-style precision.

Buys are sized from a fraction of available cash. Notionals are rounded to the cent against the trader (up for
buys, down for sells) and fees are rounded up, so paper results never flatter the strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from papertrader.broker.market_rules import MarketRules
from papertrader.events import Fill, Side
from papertrader.ledger.portfolio import Lot, Portfolio


@dataclass(frozen=True, slots=True)
class OrderRejected:
    """An order the broker refused, with a reason code and a readable message."""

    ts: int
    side: Side
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Execution:
    """A fill plus the booked notional and the cash balance after it (for the ledger and trades.csv)."""

    fill: Fill
    notional: Decimal
    cash_after: Decimal


class PaperBroker:
    """Executes paper orders for one portfolio."""

    def __init__(self, portfolio: Portfolio, rules: MarketRules, fee_rate: Decimal, slippage: Decimal) -> None:
        self.portfolio = portfolio
        self.rules = rules
        self.fee_rate = fee_rate
        self.slippage = slippage
        self.cent = portfolio.cent
        #: None without slippage (multiplying by Decimal(1) changes nothing, not even the exponent)
        self._slip_factor = {Side.BUY: Decimal(1) + slippage, Side.SELL: Decimal(1) - slippage} if slippage else None
        self._cost_factor = Decimal(1) + fee_rate  # price of one unit with its fee

    def _fee(self, notional: Decimal) -> Decimal:
        return (notional * self.fee_rate).quantize(self.cent, rounding=ROUND_CEILING)

    def slipped(self, reference: float, side: Side) -> Decimal:
        """``reference`` moved against the trader by the slippage and rounded to the tick."""
        price = Decimal(repr(reference))
        if self._slip_factor is not None:
            price *= self._slip_factor[side]
        return self.rules.price_against(price, side)

    def buy(self, ts: int, price: Decimal, fraction: float, reason: str) -> Execution | OrderRejected:
        """Spend ``fraction`` of available cash (fee included) at ``price``."""
        portfolio = self.portfolio
        budget = (portfolio.cash * Decimal(repr(fraction))).quantize(self.cent, rounding=ROUND_FLOOR)
        quantity = self.rules.floor_quantity(budget / (price * self._cost_factor))
        if quantity <= 0:
            return OrderRejected(
                ts, Side.BUY, "insufficient_cash",
                f"insufficient cash: {portfolio.cash} available, budget {budget} buys nothing at {price}")
        notional = (quantity * price).quantize(self.cent, rounding=ROUND_CEILING)
        fee = self._fee(notional)
        while notional + fee > portfolio.cash and quantity > 0:  # rounding pushed cost over the cash: one step less
            quantity -= self.rules.quantity_step
            notional = (quantity * price).quantize(self.cent, rounding=ROUND_CEILING)
            fee = self._fee(notional)
        if quantity <= 0:
            return OrderRejected(ts, Side.BUY, "insufficient_cash", f"insufficient cash: {portfolio.cash} available")
        if notional < self.rules.min_order_quote or quantity < self.rules.min_order_base:
            return OrderRejected(
                ts, Side.BUY, "below_minimum",
                f"order below minimum: {quantity} at {price} = {notional} (minimum {self.rules.min_order_quote} quote,"
                f" {self.rules.min_order_base} base)",
            )
        fill = portfolio.book_buy(ts, quantity, price, notional, fee, reason)
        return Execution(fill, notional, portfolio.cash)

    def sell(self, ts: int, lot: Lot, price: Decimal, reason: str) -> Execution:
        """Close a whole lot at ``price``. Closing is never refused: an open position must always be exitable."""
        notional = (lot.quantity * price).quantize(self.cent, rounding=ROUND_FLOOR)
        fee = self._fee(notional)
        fill = self.portfolio.book_sell(ts, lot, price, notional, fee, reason)
        return Execution(fill, notional, self.portfolio.cash)
