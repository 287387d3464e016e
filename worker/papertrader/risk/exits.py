"""Protective exits inside a candle: stop loss, emergency stop, trailing stop and take profit.

Rules (docs/fill-model.md): a lot's stop level is the highest of its stop loss, its emergency stop and, once armed,
its trailing stop. Within a candle the stop is checked before the take profit, so when both lie inside one candle
the stop wins (pessimistic). A level the candle opens through fills at the open (a gap), otherwise at the level.
The trailing stop uses the peak reached through the previous candle: this candle's high cannot have preceded its
low, so it only moves the trail for the candles after it.
"""

from __future__ import annotations

from typing import NamedTuple

from papertrader.ledger.portfolio import Lot
from papertrader.market.candle import Candle


class ExitTrigger(NamedTuple):
    reason: str
    price: float
    is_stop: bool  # stops execute as market orders (slippage); take profits as limit orders (no slippage)


class ExitRules:
    """Levels derived from the settings; 0 disables a rule (the emergency stop cannot be disabled)."""

    def __init__(self, take_profit_pct: float, stop_loss_pct: float, trailing_stop_pct: float,
                 min_profit_for_trailing: float, emergency_stop_pct: float) -> None:
        self.take_profit_pct = take_profit_pct
        self.stop_loss_pct = stop_loss_pct
        self.trailing_stop_pct = trailing_stop_pct
        self.min_profit_for_trailing = min_profit_for_trailing
        self.emergency_stop_pct = emergency_stop_pct

    def check(self, lot: Lot, candle: Candle) -> ExitTrigger | None:
        """The exit this candle triggers for ``lot``, if any; when none, the candle's high is carried into the lot's
        peak and the trailing stop armed when profit allows (for the candles after this one)."""
        ts, open_, high, low = candle[0], candle[1], candle[2], candle[3]
        entry = lot.entry_f
        opened_this_candle = lot.entry_ts == ts
        # the stop level: the highest of the emergency stop, the stop loss and (armed) the trailing stop
        stop, reason = entry * (1.0 - self.emergency_stop_pct), "emergency_stop"
        if self.stop_loss_pct:
            stop_loss = entry * (1.0 - self.stop_loss_pct)
            if stop_loss > stop:
                stop, reason = stop_loss, "stop_loss"
        if lot.trailing_armed:
            trail = lot.peak_f * (1.0 - self.trailing_stop_pct)
            if trail > stop:
                stop, reason = trail, "trailing_stop"
        if not opened_this_candle and open_ <= stop:
            return ExitTrigger(reason, open_, True)
        if low <= stop:
            return ExitTrigger(reason, stop, True)
        if self.take_profit_pct:
            target = entry * (1.0 + self.take_profit_pct)
            if not opened_this_candle and open_ >= target:
                return ExitTrigger("take_profit", open_, False)
            if high >= target:
                return ExitTrigger("take_profit", target, False)
        if high > lot.peak_f:
            lot.peak_f = high
        if (self.trailing_stop_pct and not lot.trailing_armed
                and lot.peak_f >= entry * (1.0 + self.min_profit_for_trailing)):
            lot.trailing_armed = True
        return None
