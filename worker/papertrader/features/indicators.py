"""Incremental indicators. Each one consumes closed candles in order and writes named outputs.

Definitions (the pandas reference in the tests uses exactly these):
- ``sma_n``: mean of the last n closes.
- ``ema_n``: EMA of close, alpha = 2/(n+1), seeded with the first close.
- ``rsi_n``: Wilder RSI: EMAs (alpha = 1/n, seeded with the first change) of gains and losses of close;
  100 - 100/(1 + gain/loss).
- ``macd``, ``macd_signal``, ``macd_hist``: EMA12 - EMA26 of close, its EMA9, and their difference.
- ``bb_width_n``, ``bb_pos_n``: Bollinger bands over n closes with 2 sample standard deviations:
  width = (upper - lower) / mean, position = (close - lower) / (upper - lower).
- ``atr_n``, ``atr_pct_n``: Wilder average true range (alpha = 1/n, seeded with the first true range; the first
  candle's true range is high - low) and ATR / close.
- ``volatility_n``: sample standard deviation of the last n log returns of close.
- ``ret_k``: close / close k candles ago - 1.
- ``volume_z_n``: (volume - mean) / sample std of the last n volumes.
- ``close_sma_n``: close / sma_n - 1.
- ``range_pct``: (high - low) / close.

Every value at candle t uses only candles up to and including t (no look-ahead).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

from papertrader.features.rolling import Ema, RollingMean, RollingStats
from papertrader.market.candle import Candle

NAN = math.nan


class Indicator:
    """Base class: ``outputs`` are the feature names written by :meth:`update`; ``lookback`` is the number of
    candles after which every output is defined and stable enough to trade on."""

    outputs: tuple[str, ...] = ()
    lookback: int = 1
    #: for an indicator with one output that depends on the close only: ``close -> value`` (written under
    #: ``outputs[0]``), which the feature engine may call instead of :meth:`update`
    close_push: Callable[[float], float] | None = None
    #: the same for many closes at once: ``closes -> values``, as ``close_push`` on each in turn
    close_push_many: Callable[[list[float]], list[float]] | None = None

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        raise NotImplementedError

    def state(self) -> Any:
        raise NotImplementedError

    def load_state(self, state: Any) -> None:
        raise NotImplementedError


class Sma(Indicator):
    def __init__(self, n: int) -> None:
        self.mean = RollingMean(n)
        self.push = self.close_push = self.mean.push
        self.close_push_many = self.mean.push_many
        self.key = f"sma_{n}"
        self.outputs = (self.key,)
        self.lookback = n

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        values[self.key] = self.push(candle[4])

    def state(self) -> Any:
        return self.mean.state()

    def load_state(self, state: Any) -> None:
        self.mean.load_state(state)


class CloseToSma(Sma):
    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.key = f"close_sma_{n}"
        self.outputs = (self.key,)
        self.close_push = self.close_push_many = None  # close / sma - 1, not the mean itself

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        values[self.key] = candle[4] / self.push(candle[4]) - 1.0


class EmaOfClose(Indicator):
    def __init__(self, n: int) -> None:
        self.ema = Ema(2.0 / (n + 1.0))
        self.key = f"ema_{n}"
        self.outputs = (self.key,)
        self.lookback = 3 * n

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        values[self.key] = self.ema.push(candle.close)

    def state(self) -> Any:
        return self.ema.state()

    def load_state(self, state: Any) -> None:
        self.ema.load_state(state)


class Rsi(Indicator):
    def __init__(self, n: int) -> None:
        self.gain = Ema(1.0 / n)
        self.loss = Ema(1.0 / n)
        self.prev = NAN
        self.key = f"rsi_{n}"
        self.outputs = (self.key,)
        self.lookback = 4 * n

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        close = candle.close
        if self.prev != self.prev:  # first candle: no change yet
            self.prev = close
            values[self.key] = NAN
            return
        change = close - self.prev
        self.prev = close
        gain = self.gain.push(change if change > 0.0 else 0.0)
        loss = self.loss.push(-change if change < 0.0 else 0.0)
        if loss == 0.0:
            values[self.key] = 100.0 if gain > 0.0 else 50.0
        else:
            values[self.key] = 100.0 - 100.0 / (1.0 + gain / loss)

    def state(self) -> Any:
        return [self.gain.state(), self.loss.state(), self.prev]

    def load_state(self, state: Any) -> None:
        self.gain.load_state(state[0])
        self.loss.load_state(state[1])
        self.prev = state[2]


class Macd(Indicator):
    outputs: tuple[str, ...] = ("macd", "macd_signal", "macd_hist")
    lookback = 3 * 26 + 9

    def __init__(self) -> None:
        self.fast = Ema(2.0 / 13.0)
        self.slow = Ema(2.0 / 27.0)
        self.signal = Ema(2.0 / 10.0)

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        macd = self.fast.push(candle.close) - self.slow.push(candle.close)
        signal = self.signal.push(macd)
        values["macd"] = macd
        values["macd_signal"] = signal
        values["macd_hist"] = macd - signal

    def state(self) -> Any:
        return [self.fast.state(), self.slow.state(), self.signal.state()]

    def load_state(self, state: Any) -> None:
        self.fast.load_state(state[0])
        self.slow.load_state(state[1])
        self.signal.load_state(state[2])


class Bollinger(Indicator):
    def __init__(self, n: int, k: float = 2.0) -> None:
        self.stats = RollingStats(n, ddof=1)
        self.k = k
        self.outputs = (f"bb_width_{n}", f"bb_pos_{n}")
        self.lookback = n

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        stats = self.stats
        stats.push(candle.close)
        width_key, pos_key = self.outputs
        if not stats.ready:
            values[width_key] = values[pos_key] = NAN
            return
        mean = stats.mean()
        band = self.k * stats.std()
        values[width_key] = 2.0 * band / mean
        values[pos_key] = (candle.close - (mean - band)) / (2.0 * band) if band > 0.0 else 0.5

    def state(self) -> Any:
        return self.stats.state()

    def load_state(self, state: Any) -> None:
        self.stats.load_state(state)


class Atr(Indicator):
    def __init__(self, n: int) -> None:
        self.ema = Ema(1.0 / n)
        self.prev_close = NAN
        self.outputs = (f"atr_{n}", f"atr_pct_{n}")
        self.lookback = 4 * n

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        high, low, prev = candle.high, candle.low, self.prev_close
        if prev != prev:
            true_range = high - low
        else:
            true_range = max(high - low, abs(high - prev), abs(low - prev))
        self.prev_close = candle.close
        atr = self.ema.push(true_range)
        values[self.outputs[0]] = atr
        values[self.outputs[1]] = atr / candle.close

    def state(self) -> Any:
        return [self.ema.state(), self.prev_close]

    def load_state(self, state: Any) -> None:
        self.ema.load_state(state[0])
        self.prev_close = state[1]


class Volatility(Indicator):
    def __init__(self, n: int) -> None:
        self.stats = RollingStats(n, ddof=1)
        self.prev = NAN
        self.key = f"volatility_{n}"
        self.outputs = (self.key,)
        self.lookback = n + 1

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        close = candle.close
        if self.prev == self.prev:
            self.stats.push(math.log(close / self.prev))
        self.prev = close
        values[self.key] = self.stats.std() if self.stats.ready else NAN

    def state(self) -> Any:
        return [self.stats.state(), self.prev]

    def load_state(self, state: Any) -> None:
        self.stats.load_state(state[0])
        self.prev = state[1]


class Return(Indicator):
    def __init__(self, k: int) -> None:
        self.closes: deque[float] = deque(maxlen=k + 1)
        self.key = f"ret_{k}"
        self.outputs = (self.key,)
        self.lookback = k + 1

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        closes = self.closes
        closes.append(candle.close)
        values[self.key] = candle.close / closes[0] - 1.0 if len(closes) == closes.maxlen else NAN

    def state(self) -> Any:
        return list(self.closes)

    def load_state(self, state: Any) -> None:
        self.closes.clear()
        self.closes.extend(state)


class VolumeZ(Indicator):
    def __init__(self, n: int) -> None:
        self.stats = RollingStats(n, ddof=1)
        self.key = f"volume_z_{n}"
        self.outputs = (self.key,)
        self.lookback = n

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        stats = self.stats
        stats.push(candle.volume)
        if not stats.ready:
            values[self.key] = NAN
            return
        std = stats.std()
        values[self.key] = (candle.volume - stats.mean()) / std if std > 0.0 else 0.0

    def state(self) -> Any:
        return self.stats.state()

    def load_state(self, state: Any) -> None:
        self.stats.load_state(state)


class RangePct(Indicator):
    outputs: tuple[str, ...] = ("range_pct",)
    lookback = 1

    def update(self, candle: Candle, values: dict[str, float]) -> None:
        values["range_pct"] = (candle.high - candle.low) / candle.close

    def state(self) -> Any:
        return None

    def load_state(self, state: Any) -> None:
        pass
