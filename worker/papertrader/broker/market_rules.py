"""Exchange precision and order limits for one market (Bitvavo ``/markets`` fields, or offline defaults)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import cached_property

from papertrader.events import Side

AUTO_TICK_SIGNIFICANT_DIGITS = 6


@dataclass(frozen=True)
class MarketRules:
    """Price tick, amount step and minimum order sizes."""

    tick_size: Decimal
    quantity_decimals: int = 8
    min_order_quote: Decimal = Decimal("5")
    min_order_base: Decimal = Decimal("0")

    @cached_property
    def quantity_step(self) -> Decimal:
        return Decimal(1).scaleb(-self.quantity_decimals)

    def price_against(self, price: Decimal, side: Side) -> Decimal:
        """Round a price to the tick in the direction that hurts the trader: up for buys, down for sells; at least
        one tick."""
        rounding = ROUND_CEILING if side == Side.BUY else ROUND_FLOOR
        tick = self.tick_size
        if self._decimal_tick:
            # the same number with the same exponent as the general formula below, in one operation
            rounded = price.quantize(tick, rounding=rounding)
            return rounded if rounded >= tick else tick
        steps = (price / tick).to_integral_value(rounding=rounding)
        return (max(steps, Decimal(1)) * tick).quantize(self._price_quantum)

    @cached_property
    def _decimal_tick(self) -> bool:
        """A tick of 1, 0.1, 0.01, ... written as such (one digit 1, exponent <= 0): a price on the tick grid is
        the price quantized to the tick."""
        sign, digits, exponent = self.tick_size.as_tuple()
        return not sign and digits == (1,) and isinstance(exponent, int) and exponent <= 0

    @cached_property
    def _price_quantum(self) -> Decimal:
        """Prices are written with the tick's decimal places (tick 0.01 -> 100.00, tick 10 -> 58770)."""
        return Decimal(1).scaleb(min(self.tick_size.as_tuple().exponent, 0))  # type: ignore[arg-type]  # a finite tick: int exponent

    def floor_quantity(self, quantity: Decimal) -> Decimal:
        return quantity.quantize(self.quantity_step, rounding=ROUND_FLOOR)


def auto_tick_size(reference_price: float) -> Decimal:
    """A tick of about six significant digits of ``reference_price`` (e.g. 58720.45 -> 0.1, 1968.05 -> 0.01)."""
    exponent = int(math.floor(math.log10(reference_price))) - (AUTO_TICK_SIGNIFICANT_DIGITS - 1)
    return Decimal(1).scaleb(exponent)
