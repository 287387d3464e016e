"""A strategy that emits signals from a script (candle index -> side), for testing risk and fill rules."""

from __future__ import annotations

from typing import Any, ClassVar

from papertrader.events import HOLD, Signal
from papertrader.market.candle import Candle
from papertrader.strategy.base import PositionView, Strategy


class ScriptedStrategy(Strategy):
    name = "scripted"
    #: open time of a candle -> "buy" | "sell"; set by the test before the run
    SCRIPT: ClassVar[dict[int, str]] = {}
    CONFIDENCE: ClassVar[float] = 0.5
    STRENGTH: ClassVar[float] = 0.5

    def required_features(self) -> tuple[str, ...]:
        return ("sma_2",)

    def warmup_candles(self, feature_lookback: int) -> int:
        return 2

    def on_candle(self, candle: Candle, features: dict[str, float], position: PositionView | None) -> Signal:
        side = self.SCRIPT.get(candle.ts)
        if side is None:
            return HOLD
        return Signal(side, self.CONFIDENCE, self.STRENGTH, f"script_{side}")

    def state(self) -> Any:
        return None
