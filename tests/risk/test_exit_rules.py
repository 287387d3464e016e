"""ExitRules on hand-made candles: stop loss, gap through the stop, the entry candle, take profit (also a gap),
stop before target in one candle, trailing stop (armed for the candles after), the emergency stop and disabled
rules."""

from decimal import Decimal

import pytest

from papertrader.ledger.portfolio import Lot
from papertrader.market.candle import Candle
from papertrader.risk.exits import ExitRules, ExitTrigger

MIN = 60_000
ENTRY_TS = 10 * MIN


def lot(entry: float = 100.0) -> Lot:
    return Lot(1, Decimal(1), Decimal(repr(entry)), ENTRY_TS, Decimal(repr(entry)), 1.0, entry, entry)


def rules(take_profit: float = 0.05, stop_loss: float = 0.02, trailing: float = 0.01, min_profit: float = 0.03,
          emergency: float = 0.10) -> ExitRules:
    return ExitRules(take_profit, stop_loss, trailing, min_profit, emergency)


def candle(i: int, open_: float, high: float, low: float, close: float) -> Candle:
    return Candle(ENTRY_TS + i * MIN, open_, high, low, close, 1.0)


def test_stop_loss_fills_at_the_level_when_the_low_reaches_it():
    trigger = rules().check(lot(), candle(1, 99.5, 100.5, 97.5, 99.0))  # stop 100 * 0.98 = 98
    assert trigger == ExitTrigger("stop_loss", pytest.approx(98.0, abs=1e-9), True)


def test_no_exit_while_the_candle_stays_between_stop_and_target():
    position = lot()
    assert rules().check(position, candle(1, 99.5, 101.0, 98.5, 100.0)) is None
    assert position.peak_f == 101.0 and not position.trailing_armed  # 101 < 103 arms nothing


def test_a_gap_below_the_stop_fills_at_the_open():
    assert rules().check(lot(), candle(1, 97.0, 97.5, 96.0, 97.2)) == ExitTrigger("stop_loss", 97.0, True)


def test_the_entry_candle_never_fills_at_its_open():
    """The lot was bought at this candle's open: its open cannot be a gap through the stop."""
    trigger = rules().check(lot(), candle(0, 97.0, 100.0, 96.0, 99.0))
    assert trigger == ExitTrigger("stop_loss", pytest.approx(98.0, abs=1e-9), True)


def test_take_profit_fills_at_the_target_as_a_limit_order():
    trigger = rules().check(lot(), candle(1, 101.0, 105.5, 100.0, 104.0))  # target 100 * 1.05 = 105
    assert trigger == ExitTrigger("take_profit", pytest.approx(105.0, abs=1e-9), False)


def test_a_gap_above_the_target_fills_at_the_open():
    assert rules().check(lot(), candle(1, 106.0, 107.0, 105.5, 106.5)) == ExitTrigger("take_profit", 106.0, False)


def test_stop_wins_when_stop_and_target_lie_in_one_candle():
    trigger = rules().check(lot(), candle(1, 100.0, 106.0, 97.0, 101.0))
    assert trigger is not None and trigger.reason == "stop_loss" and trigger.is_stop


def test_trailing_stop_arms_after_the_profit_and_trails_the_previous_peak():
    exits, position = rules(), lot()
    # high 103.5 >= 100 * 1.03 arms the trail, but only for the next candles: low 102 does not exit here
    assert exits.check(position, candle(1, 100.5, 103.5, 102.0, 103.0)) is None
    assert position.trailing_armed and position.peak_f == 103.5
    trigger = exits.check(position, candle(2, 103.0, 103.2, 102.4, 102.6))  # trail 103.5 * 0.99 = 102.465
    assert trigger == ExitTrigger("trailing_stop", pytest.approx(102.465, abs=1e-9), True)


def test_a_new_high_moves_the_trail_up_for_the_next_candle():
    exits, position = rules(), lot()
    exits.check(position, candle(1, 100.5, 103.5, 102.0, 103.0))
    assert exits.check(position, candle(2, 103.0, 104.0, 102.5, 103.8)) is None  # 102.5 > 102.465
    assert position.peak_f == 104.0
    trigger = exits.check(position, candle(3, 103.5, 103.6, 102.9, 103.0))  # trail 104 * 0.99 = 102.96
    assert trigger == ExitTrigger("trailing_stop", pytest.approx(102.96, abs=1e-9), True)


def test_emergency_stop_is_the_floor_when_the_stop_loss_is_off():
    exits = rules(stop_loss=0.0)
    assert exits.check(lot(), candle(1, 95.0, 96.0, 91.0, 92.0)) is None  # 91 > 90
    trigger = exits.check(lot(), candle(1, 95.0, 96.0, 89.0, 92.0))
    assert trigger == ExitTrigger("emergency_stop", pytest.approx(90.0, abs=1e-9), True)


def test_the_emergency_stop_wins_over_a_looser_stop_loss():
    trigger = rules(stop_loss=0.20).check(lot(), candle(1, 95.0, 96.0, 85.0, 92.0))
    assert trigger is not None and trigger.reason == "emergency_stop" and trigger.price == pytest.approx(90.0)


def test_zero_disables_take_profit_and_trailing():
    exits, position = rules(take_profit=0.0, trailing=0.0), lot()
    assert exits.check(position, candle(1, 101.0, 150.0, 100.0, 149.0)) is None
    assert position.peak_f == 150.0 and not position.trailing_armed
