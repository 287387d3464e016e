"""A test hands the runner its own strategy instance (``build_worker(..., strategy=...)``): the engine trades on
its signals, filled at the next candle's open."""

from __future__ import annotations

import asyncio
from typing import Any

from papertrader.cli import build_worker
from papertrader.config import load_settings
from papertrader.events import HOLD, Signal
from papertrader.market.candle import Candle
from papertrader.strategy.base import PositionView, Strategy
from tests.engine.helpers import PLAIN, read_csv


class EveryTwentieth(Strategy):
    """Buys on every 20th decision without a position, sells 10 decisions later; records what it asked for."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.decisions = 0
        self.asked: list[tuple[int, str]] = []  # (candle ts, side)

    def required_features(self) -> tuple[str, ...]:
        return ("sma_2",)

    def on_candle(self, candle: Candle, features: dict[str, float], position: PositionView | None) -> Signal:
        self.decisions += 1
        if position is None and self.decisions % 20 == 0:
            self.asked.append((candle.ts, "buy"))
            return Signal("buy", confidence=0.5, strength=0.5, reason="scripted_entry")
        if position is not None and self.decisions % 20 == 10:
            self.asked.append((candle.ts, "sell"))
            return Signal("sell", confidence=0.5, strength=0.5, reason="scripted_exit")
        return HOLD


def test_the_runner_trades_on_a_given_strategy_instance(tmp_path):
    settings = load_settings({"state_dir": tmp_path / "w", "http_host": "127.0.0.1", "http_port": 0, "ws_port": 0,
                              "max_candles": 300, **{k.lower(): v for k, v in PLAIN.items()}})
    strategy = EveryTwentieth(settings)
    runner, _ = build_worker(settings, strategy=strategy, console_logs=False)
    summary = asyncio.run(runner.run())

    assert summary["candles"] == 300 and 290 < strategy.decisions < 300  # every candle after the short warm-up
    fills = read_csv(tmp_path / "w" / "logs" / "trades.csv")
    asked = [(ts, side) for ts, side in strategy.asked if ts + settings.interval_ms < 300 * settings.interval_ms
             + settings.synthetic_start_ms]  # the last candle's order has no next candle to fill at
    assert len(asked) >= 20 and summary["trades"] == len(fills) == len(asked)
    for (ts, side), fill in zip(asked, fills, strict=True):
        assert fill["side"] == side
        assert int(fill["timestamp_ms"]) == ts + settings.interval_ms  # filled at the next candle's open
        assert fill["reason"] == ("signal" if side == "sell" else "scripted_entry")
