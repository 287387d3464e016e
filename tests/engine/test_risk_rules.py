"""Every risk rule works and every exit's reason reaches trades.csv."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from papertrader.market.candle import Candle
from tests.conftest import write_candle_file
from tests.engine.helpers import PLAIN, read_csv, run_replay
from tests.engine.scripted_strategy import ScriptedStrategy

M = 60_000
T0 = 1_700_006_400_000  # a UTC midnight


def flat(n: int, price: float = 100.0) -> list[Candle]:
    return [Candle(T0 + i * M, price, price * 1.001, price * 0.999, price, 10.0) for i in range(n)]


def run(tmp_path: Path, candles: list[Candle], script: dict[int, str], **settings) -> tuple[list[dict], dict]:
    ScriptedStrategy.SCRIPT = {T0 + i * M: side for i, side in script.items()}
    data = write_candle_file(tmp_path / "T-EUR_1m.csv", candles)
    merged = {**PLAIN, "STRATEGY": "tests.engine.scripted_strategy:ScriptedStrategy", "SLIPPAGE_PCT": 0,
              "TICK_SIZE": "0.01", **settings}
    summary = run_replay(tmp_path / "s", data, **merged)
    return read_csv(tmp_path / "s" / "logs" / "trades.csv"), summary


def at(trade: dict) -> int:
    return (int(trade["timestamp_ms"]) - T0) // M


def test_signal_fills_at_next_open_and_warmup_is_never_traded(tmp_path):
    candles = flat(20)
    candles[6] = Candle(T0 + 6 * M, 101.0, 101.5, 100.5, 101.0, 10.0)
    trades, summary = run(tmp_path, candles, {0: "buy", 1: "buy", 5: "buy", 9: "sell"})
    assert [(at(t), t["side"], t["price"]) for t in trades] == [(6, "buy", "101.00"), (10, "sell", "100.00")]
    assert trades[1]["reason"] == "signal"
    assert summary["warmup_candles"] == 2


def test_slippage_moves_price_against_the_trader_and_fee_is_taker_on_notional(tmp_path):
    trades, _ = run(tmp_path, flat(12), {3: "buy", 6: "sell"}, SLIPPAGE_PCT=0.001)
    buy, sell = trades
    assert buy["price"] == "100.10" and sell["price"] == "99.90"
    for trade in trades:
        assert Decimal(trade["fee"]) == (Decimal(trade["notional"]) * Decimal("0.0025")).quantize(
            Decimal("0.01"), rounding="ROUND_CEILING")
    quantity = (Decimal("800.00") / (Decimal("100.10") * Decimal("1.0025"))).quantize(Decimal("1e-8"),
                                                                                      rounding="ROUND_FLOOR")
    assert Decimal(buy["quantity"]) == quantity
    expected_notional = (quantity * Decimal("100.10")).quantize(Decimal("0.01"), rounding="ROUND_CEILING")
    assert Decimal(buy["notional"]) == expected_notional


def test_stop_loss_triggers_inside_candle_at_the_stop_price(tmp_path):
    candles = flat(12)
    candles[6] = Candle(T0 + 6 * M, 100.0, 100.2, 98.5, 99.0, 10.0)
    trades, _ = run(tmp_path, candles, {3: "buy"}, STOP_LOSS_PCT=0.01)
    assert [(at(t), t["side"], t["price"], t["reason"]) for t in trades] == [
        (4, "buy", "100.00", "script_buy"), (6, "sell", "99.00", "stop_loss")]


def test_gap_through_the_stop_fills_at_the_open(tmp_path):
    candles = flat(12)
    candles[6] = Candle(T0 + 6 * M, 97.0, 97.5, 96.5, 97.2, 10.0)
    trades, _ = run(tmp_path, candles, {3: "buy"}, STOP_LOSS_PCT=0.01)
    assert (trades[1]["price"], trades[1]["reason"]) == ("97.00", "stop_loss")


def test_stop_wins_when_stop_and_target_are_both_inside_one_candle(tmp_path):
    candles = flat(12)
    candles[6] = Candle(T0 + 6 * M, 100.0, 103.0, 98.0, 100.0, 10.0)
    trades, _ = run(tmp_path, candles, {3: "buy"}, STOP_LOSS_PCT=0.01, TAKE_PROFIT_PCT=0.02)
    assert (trades[1]["price"], trades[1]["reason"]) == ("99.00", "stop_loss")


def test_take_profit_fills_at_target_or_at_a_better_gap_open(tmp_path):
    candles = flat(14)
    candles[6] = Candle(T0 + 6 * M, 100.0, 102.5, 99.8, 102.0, 10.0)
    candles[10] = Candle(T0 + 10 * M, 104.0, 104.5, 103.5, 104.0, 10.0)
    trades, _ = run(tmp_path, candles, {3: "buy", 8: "buy"}, TAKE_PROFIT_PCT=0.02)
    assert [(at(t), t["price"], t["reason"]) for t in trades if t["side"] == "sell"] == [
        (6, "102.00", "take_profit"), (10, "104.00", "take_profit")]


def test_trailing_stop_arms_at_min_profit_and_follows_the_peak(tmp_path):
    candles = flat(16)
    path = [(100.0, 100.4, 99.9, 100.3), (100.3, 101.0, 100.2, 100.9), (100.9, 102.0, 100.8, 101.8),
            (101.8, 101.9, 101.0, 101.1)]
    for k, (o, h, l, c) in enumerate(path):
        candles[5 + k] = Candle(T0 + (5 + k) * M, o, h, l, c, 10.0)
    for i in range(9, 16):
        candles[i] = Candle(T0 + i * M, 101.1, 101.2, 101.0, 101.1, 10.0)
    trades, _ = run(tmp_path, candles, {3: "buy"}, TRAILING_STOP_PCT=0.006, MIN_PROFIT_FOR_TRAILING=0.005)
    sell = trades[1]
    assert (at(sell), sell["reason"]) == (8, "trailing_stop")
    assert sell["price"] == "101.38"  # 102.0 * (1 - 0.006), rounded down to the tick


def test_emergency_stop_when_stop_loss_is_off(tmp_path):
    candles = flat(12)
    candles[7] = Candle(T0 + 7 * M, 99.0, 99.5, 94.0, 95.0, 10.0)
    trades, _ = run(tmp_path, candles, {3: "buy"}, STOP_LOSS_PCT=0, EMERGENCY_STOP_PCT=0.05)
    assert (trades[1]["price"], trades[1]["reason"]) == ("95.00", "emergency_stop")


def test_time_exit_really_closes_and_min_hold_blocks_early_signal_exits(tmp_path):
    trades, _ = run(tmp_path, flat(200), {3: "buy", 5: "sell", 100: "buy"}, MAX_HOLD_HOURS=1,
                    MIN_HOLD_TIME_MINUTES=10)
    assert [(at(t), t["side"], t["reason"]) for t in trades] == [
        (4, "buy", "script_buy"), (64, "sell", "time_exit"), (101, "buy", "script_buy"), (161, "sell", "time_exit")]


def test_cooldown_after_a_close_and_daily_entry_cap(tmp_path):
    script = {3: "buy", 5: "sell", 8: "buy", 20: "buy", 22: "sell", 40: "buy"}
    trades, _ = run(tmp_path, flat(60), script, POSITION_COOLDOWN_MINUTES=10, MAX_DAILY_TRADES_PER_SYMBOL=2)
    buys = [at(t) for t in trades if t["side"] == "buy"]
    assert buys == [4, 21]  # 8: cooldown after the close at 6; 40: the day's two entries are taken


def test_max_positions_per_symbol(tmp_path):
    trades, _ = run(tmp_path, flat(20), {3: "buy", 5: "buy", 7: "buy", 9: "sell"}, MAX_POSITIONS_PER_SYMBOL=2)
    assert [(at(t), t["side"]) for t in trades] == [(4, "buy"), (6, "buy"), (10, "sell"), (10, "sell")]


def test_drawdown_halts_new_entries(tmp_path):
    candles = flat(40)
    for i in range(6, 40):
        candles[i] = Candle(T0 + i * M, 50.0, 50.1, 49.9, 50.0, 10.0)
    trades, summary = run(tmp_path, candles, {3: "buy", 20: "sell", 30: "buy"}, MAX_DRAWDOWN_PCT=0.03,
                          MAX_POSITION_SIZE=0.9, BASE_POSITION_SIZE=0.9, MIN_POSITION_SIZE=0.5)
    assert [t["side"] for t in trades] == ["buy", "sell"]
    assert summary["halted"] == ["drawdown"]


def test_daily_loss_halts_until_next_utc_day(tmp_path):
    day = 1440
    candles = flat(day + 40)
    for i in range(6, day + 40):
        candles[i] = Candle(T0 + i * M, 80.0, 80.1, 79.9, 80.0, 10.0)
    script = {3: "buy", 10: "sell", 20: "buy", day + 5: "buy"}
    trades, _ = run(tmp_path, candles, script, MAX_DAILY_LOSS_PCT=0.01, BASE_POSITION_SIZE=0.15)
    assert [(at(t), t["side"]) for t in trades] == [(4, "buy"), (11, "sell"), (day + 6, "buy")]


def test_position_size_follows_confidence_and_strength(tmp_path):
    ScriptedStrategy.CONFIDENCE, ScriptedStrategy.STRENGTH = 1.0, 0.9
    try:
        trades, _ = run(tmp_path, flat(10), {3: "buy"})
    finally:
        ScriptedStrategy.CONFIDENCE, ScriptedStrategy.STRENGTH = 0.5, 0.5
    assert Decimal(trades[0]["notional"]) + Decimal(trades[0]["fee"]) == pytest.approx(Decimal("1500"), abs=1)


def test_orders_below_the_minimum_are_rejected_with_a_reason(tmp_path):
    trades, summary = run(tmp_path, flat(10), {3: "buy"}, MIN_ORDER_QUOTE=1000)
    assert trades == [] and summary["orders_rejected"] == 1
    log = (tmp_path / "s" / "logs" / "enhanced_paper_trader.log").read_text()
    assert "order below minimum" in log
