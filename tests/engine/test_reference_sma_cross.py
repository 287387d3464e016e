"""The engine's sma-cross trades equal an independent implementation of the documented fill rules.

The reference below shares no code with the engine: pandas computes the SMAs, plain Decimal arithmetic applies
docs/fill-model.md (fill at the next open moved against the trader by the slippage and rounded to the tick, taker
fee on the notional, cents rounded against the trader, stops before targets, gaps fill at the open).
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import synthetic_candles, write_candle_file
from tests.engine.helpers import PLAIN, read_csv, run_replay

FEE = Decimal("0.0025")
SLIP = Decimal("0.0005")
CENT = Decimal("0.01")


def _tick(first_open: float) -> Decimal:
    return Decimal(1).scaleb(int(math.floor(math.log10(first_open))) - 5)


def _round(price: Decimal, tick: Decimal, up: bool) -> Decimal:
    steps = (price / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return (steps * tick).quantize(Decimal(1).scaleb(min(tick.as_tuple().exponent, 0)))


def reference_trades(csv_path: Path, fast: int, slow: int, stop_loss: float = 0.0,
                     take_profit: float = 0.0) -> list[tuple[int, str, str, str, str, str]]:
    frame = pd.read_csv(csv_path)
    opens, highs, lows = frame["open"].tolist(), frame["high"].tolist(), frame["low"].tolist()
    above = (frame["close"].rolling(fast).mean() > frame["close"].rolling(slow).mean()).tolist()
    tick = _tick(opens[0])
    warmup = slow + 1
    cash = Decimal("10000.00")
    position = None  # (qty, entry_price, entry_cost, entry_index)
    pending = None
    trades = []

    def sell(i: int, price: Decimal, reason: str) -> None:
        nonlocal cash, position
        qty = position[0]
        notional = (qty * price).quantize(CENT, rounding=ROUND_FLOOR)
        fee = (notional * FEE).quantize(CENT, rounding=ROUND_CEILING)
        cash += notional - fee
        trades.append((int(frame["timestamp_ms"][i]), "sell", str(qty), str(price), str(fee), reason))
        position = None

    for i in range(len(frame)):
        if pending is not None:
            side, reason = pending
            pending = None
            if side == "buy":
                price = _round(Decimal(repr(opens[i])) * (1 + SLIP), tick, up=True)
                budget = (cash * Decimal("0.08")).quantize(CENT, rounding=ROUND_FLOOR)
                qty = (budget / (price * (1 + FEE))).quantize(Decimal("1e-8"), rounding=ROUND_FLOOR)
                notional = (qty * price).quantize(CENT, rounding=ROUND_CEILING)
                fee = (notional * FEE).quantize(CENT, rounding=ROUND_CEILING)
                cash -= notional + fee
                position = (qty, price, i)
                trades.append((int(frame["timestamp_ms"][i]), "buy", str(qty), str(price), str(fee), reason))
            elif position is not None:
                sell(i, _round(Decimal(repr(opens[i])) * (1 - SLIP), tick, up=False), reason)
        if position is not None and (stop_loss or take_profit):
            entry, fresh = float(position[1]), position[2] == i
            stop = entry * (1 - stop_loss) if stop_loss else entry * 0.01
            target = entry * (1 + take_profit)
            if not fresh and opens[i] <= stop:
                sell(i, _round(Decimal(repr(opens[i])) * (1 - SLIP), tick, up=False), "stop_loss")
            elif lows[i] <= stop:
                sell(i, _round(Decimal(repr(stop)) * (1 - SLIP), tick, up=False), "stop_loss")
            elif take_profit and not fresh and opens[i] >= target:
                sell(i, _round(Decimal(repr(opens[i])), tick, up=False), "take_profit")
            elif take_profit and highs[i] >= target:
                sell(i, _round(Decimal(repr(target)), tick, up=False), "take_profit")
        if i + 1 > warmup and i >= slow:
            if above[i] and not above[i - 1] and position is None:
                pending = ("buy", "sma_cross_up")
            elif not above[i] and above[i - 1] and position is not None:
                pending = ("sell", "signal")
    return trades


def engine_trades(trades_csv: Path) -> list[tuple[int, str, str, str, str, str]]:
    return [(int(r["timestamp_ms"]), r["side"], r["quantity"], r["price"], r["fee"], r["reason"])
            for r in read_csv(trades_csv)]


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_candle_file(tmp_path_factory.mktemp("data") / "SYN-EUR_1m.csv", synthetic_candles(12_000, seed=11))


@pytest.mark.parametrize("fast,slow", [(10, 30), (5, 20)])
def test_plain_sma_cross_equals_reference_on_real_candles(tmp_path, real_sample, fast, slow):
    summary = run_replay(tmp_path / "state", real_sample, SMA_FAST=fast, SMA_SLOW=slow, **PLAIN)
    expected = reference_trades(real_sample, fast, slow)
    got = engine_trades(tmp_path / "state" / "logs" / "trades.csv")
    assert len(expected) > 50
    assert got == expected
    assert summary["trades"] == len(expected)


def test_plain_sma_cross_equals_reference_on_synthetic_candles(tmp_path, synthetic_file):
    run_replay(tmp_path / "state", synthetic_file, **PLAIN)
    expected = reference_trades(synthetic_file, 10, 30)
    assert len(expected) > 100
    assert engine_trades(tmp_path / "state" / "logs" / "trades.csv") == expected


def test_stops_and_targets_equal_reference(tmp_path, real_sample):
    settings = {**PLAIN, "STOP_LOSS_PCT": 0.008, "TAKE_PROFIT_PCT": 0.015}
    run_replay(tmp_path / "state", real_sample, **settings)
    expected = reference_trades(real_sample, 10, 30, stop_loss=0.008, take_profit=0.015)
    got = engine_trades(tmp_path / "state" / "logs" / "trades.csv")
    reasons = {trade[5] for trade in expected}
    assert {"stop_loss", "take_profit", "signal"} <= reasons
    assert got == expected
