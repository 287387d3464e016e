"""RiskManager on its own: entry limits (positions, cooldown, daily cap), decision-time exits (minimum hold,
time exit), the drawdown and daily-loss halts with their exact messages, manual halts and resumes."""

from decimal import Decimal
from typing import Any

from papertrader.ledger.portfolio import Lot
from papertrader.risk.manager import DAY_MS, MINUTE_MS, RiskLimits, RiskManager

HOUR_MS = 60 * MINUTE_MS


def limits(**overrides: Any) -> RiskLimits:
    values: dict[str, Any] = dict(max_positions=2, max_positions_per_symbol=2, min_hold_ms=10 * MINUTE_MS,
                                  max_hold_ms=2 * HOUR_MS, cooldown_ms=15 * MINUTE_MS, max_daily_entries=3,
                                  max_daily_loss_pct=0.05, max_drawdown_pct=0.10)
    values.update(overrides)
    return RiskLimits(**values)


def lot(entry_ts: int = 0) -> Lot:
    return Lot(1, Decimal(1), Decimal(100), entry_ts, Decimal(100), 1.0, 100.0, 100.0)


def test_entries_are_allowed_until_the_position_limits():
    risk = RiskManager(limits())
    assert risk.entry_block(0, open_lots=0, pending_entries=0) is None
    assert risk.entry_block(0, open_lots=1, pending_entries=0) is None
    assert risk.entry_block(0, open_lots=1, pending_entries=1) == "max_positions_per_symbol"  # pending ones count
    assert RiskManager(limits(max_positions_per_symbol=3)).entry_block(0, 2, 0) == "max_positions"


def test_cooldown_after_a_close_ends_exactly_after_the_cooldown():
    risk = RiskManager(limits())
    risk.record_close(HOUR_MS)
    assert risk.entry_block(HOUR_MS + 15 * MINUTE_MS - 1, 0, 0) == "cooldown"
    assert risk.entry_block(HOUR_MS + 15 * MINUTE_MS, 0, 0) is None


def test_daily_entry_cap_resets_with_the_utc_day():
    risk = RiskManager(limits())
    risk.on_equity(HOUR_MS, 1000.0)
    for _ in range(3):
        assert risk.entry_block(HOUR_MS, 0, 0) is None
        risk.record_entry_decision()
    assert risk.entry_block(HOUR_MS, 0, 0) == "daily_trade_cap"
    risk.on_equity(DAY_MS - 1, 1000.0)  # same day
    assert risk.entry_block(DAY_MS - 1, 0, 0) == "daily_trade_cap"
    risk.on_equity(DAY_MS, 1000.0)  # 00:00 UTC
    assert risk.entry_block(DAY_MS, 0, 0) is None and risk.state.entries_today == 0
    assert RiskManager(limits(max_daily_entries=0)).entry_block(0, 0, 0) is None  # 0 = no cap


def test_sell_signal_exits_only_after_the_minimum_hold_and_time_exit_at_the_maximum():
    risk = RiskManager(limits())
    position = lot(entry_ts=0)
    assert risk.due_exit(position, 10 * MINUTE_MS - 1, sell_signal=True) is None
    assert risk.due_exit(position, 10 * MINUTE_MS, sell_signal=True) == "signal"
    assert risk.due_exit(position, 2 * HOUR_MS - 1, sell_signal=False) is None
    assert risk.due_exit(position, 2 * HOUR_MS, sell_signal=False) == "time_exit"
    assert risk.due_exit(position, 2 * HOUR_MS, sell_signal=True) == "time_exit"  # the time exit wins
    assert risk.time_exits
    no_time_exit = RiskManager(limits(max_hold_ms=0))
    assert not no_time_exit.time_exits and no_time_exit.due_exit(position, 100 * DAY_MS, False) is None


def test_drawdown_halt_starts_at_the_limit_from_the_peak_and_holds_until_a_manual_resume():
    risk = RiskManager(limits(max_daily_loss_pct=0.0))
    assert risk.on_equity(MINUTE_MS, 1000.0) == []
    assert risk.on_equity(2 * MINUTE_MS, 1100.0) == []  # the peak
    assert risk.on_equity(3 * MINUTE_MS, 991.0) == []  # 9.9 % below the peak
    started = risk.on_equity(4 * MINUTE_MS, 990.0)  # 110 / 1100 = 10 %
    assert started == ["drawdown 10.00% reached MAX_DRAWDOWN_PCT 10.00%: no new entries until resumed"]
    assert risk.state.max_drawdown_pct == 0.1 and risk.current_drawdown(880.0) == 0.2
    assert risk.on_equity(5 * MINUTE_MS, 980.0) == []  # reported once
    assert risk.entry_block(5 * MINUTE_MS, 0, 0) == "halted:drawdown"
    risk.on_equity(DAY_MS + MINUTE_MS, 1200.0)  # a new day and a recovery do not lift it
    assert risk.entry_block(DAY_MS + MINUTE_MS, 0, 0) == "halted:drawdown"
    risk.resume("manual")
    assert risk.entry_block(DAY_MS + MINUTE_MS, 0, 0) is None
    assert risk.on_equity(DAY_MS + 2 * MINUTE_MS, 1000.0) == []  # drawdown measured afresh from 1000
    assert risk.state.peak_equity == 1000.0


def test_daily_loss_halt_stops_entries_until_the_next_utc_day():
    risk = RiskManager(limits(max_drawdown_pct=0.0))
    risk.on_equity(HOUR_MS, 1000.0)  # the day's baseline
    assert risk.on_equity(2 * HOUR_MS, 951.0) == []  # 4.9 %
    started = risk.on_equity(3 * HOUR_MS, 950.0)  # 5 %
    assert started == ["daily loss 5.00% reached MAX_DAILY_LOSS_PCT 5.00%: no new entries today (UTC)"]
    assert risk.entry_block(3 * HOUR_MS, 0, 0) == "halted:daily_loss"
    risk.on_equity(DAY_MS, 950.0)  # 00:00 UTC: lifted; the new day starts from the last equity
    assert risk.entry_block(DAY_MS, 0, 0) is None and risk.state.day_start_equity == 950.0
    assert risk.on_equity(DAY_MS + HOUR_MS, 902.5) == [
        "daily loss 5.00% reached MAX_DAILY_LOSS_PCT 5.00%: no new entries today (UTC)"]  # 47.5 / 950


def test_manual_and_system_halts_block_entries_and_are_named_in_order():
    risk = RiskManager(limits())
    risk.halt("manual", "paused from Telegram")
    risk.halt("data_breaker", "market data breaker open")
    assert risk.entry_block(0, 0, 0) == "halted:data_breaker,manual"
    risk.resume("data_breaker")
    assert risk.entry_block(0, 0, 0) == "halted:manual"
    risk.resume("manual")
    assert risk.entry_block(0, 0, 0) is None


def test_state_round_trip_keeps_every_guard():
    risk = RiskManager(limits())
    risk.on_equity(HOUR_MS, 1000.0)
    risk.record_entry_decision()
    risk.record_close(HOUR_MS)
    risk.on_equity(2 * HOUR_MS, 940.0)  # daily loss 6 %
    restored = RiskManager(limits())
    restored.load_state(risk.state_dict())
    assert restored.state == risk.state
    assert restored.entry_block(2 * HOUR_MS, 0, 0) == "halted:daily_loss"
    restored.on_equity(DAY_MS, 940.0)  # the next day is known after a restart too
    assert restored.entry_block(DAY_MS, 0, 0) is None
