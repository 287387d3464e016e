"""``sma-cross``: the reference strategy. Buy when SMA(fast) crosses above SMA(slow), sell when it crosses below.

A cross is ``fast > slow`` now and ``fast <= slow`` on the previous candle (and the mirror for the sell). Signals
carry confidence 0.5 and strength 0.5 (MODERATE), so the risk manager sizes entries at BASE_POSITION_SIZE.
"""

from __future__ import annotations

from operator import gt, ne
from typing import Any

from papertrader.config_groups import SmaSettings
from papertrader.events import HOLD, Side, Signal
from papertrader.market.candle import Candle
from papertrader.strategy.base import PositionView, Strategy

BUY = Signal(Side.BUY, confidence=0.5, strength=0.5, reason="sma_cross_up")
SELL = Signal(Side.SELL, confidence=0.5, strength=0.5, reason="sma_cross_down")


class SmaCross(Strategy):
    name = "sma-cross"
    settings_type = SmaSettings

    def __init__(self, settings: SmaSettings) -> None:
        super().__init__(settings)
        self.fast_key = f"sma_{settings.sma_fast}"
        self.slow_key = f"sma_{settings.sma_slow}"
        self._prev_above: bool | None = None

    def required_features(self) -> tuple[str, ...]:
        return (self.fast_key, self.slow_key)

    def on_candle(self, candle: Candle, features: dict[str, float], position: PositionView | None) -> Signal:
        above = features[self.fast_key] > features[self.slow_key]
        prev = self._prev_above
        self._prev_above = above
        if prev is None or above == prev:
            return HOLD
        return BUY if above else SELL

    def skip_holds(self, series: dict[str, list[float]], start: int, stop: int) -> int:
        """The candles before the next cross (each comparison as :meth:`on_candle` makes it), looked at in
        slices of growing length (a cross is often near)."""
        fast, slow = series[self.fast_key], series[self.slow_key]
        index, size = start, 32
        while index < stop:
            end = min(index + size, stop)
            above = list(map(gt, fast[index:end], slow[index:end]))
            prev = self._prev_above
            # a cross at k: above[k] differs from the one before it (the state for k == 0; none yet: no cross)
            changes = list(map(ne, above, [above[0] if prev is None else prev, *above[:-1]]))
            if True in changes:
                first = changes.index(True)
                if first:
                    self._prev_above = above[first - 1]
                return index + first
            self._prev_above = above[-1]
            index, size = end, size * 2
        return stop

    def state(self) -> Any:
        return self._prev_above

    def load_state(self, state: Any) -> None:
        self._prev_above = state
