"""``--source synthetic``: a seeded, regime-switching random walk (offline, deterministic, resumable).

Each candle is built from a short intra-candle path so that open/high/low/close are consistent, and volume rises
with the size of the move. Regimes (calm, bull, bear, volatile) switch as a Markov chain. The same seed always
gives the same candles; the generator's state is part of the engine's checkpoint, so a restarted worker continues
the very same series.
"""

from __future__ import annotations

import math
import random
from typing import Any

from papertrader.market.candle import Candle
from papertrader.market.sources.base import CandleSource, SourceItem

# name: (drift per candle, volatility per candle, mean candles before switching)
REGIMES: dict[str, tuple[float, float, float]] = {
    "calm": (0.0, 0.0008, 600.0),
    "bull": (0.00012, 0.0012, 300.0),
    "bear": (-0.00012, 0.0014, 300.0),
    "volatile": (0.0, 0.0030, 120.0),
}
_REGIME_NAMES = tuple(REGIMES)
_SUBSTEPS = 6


def _round_sig(value: float, digits: int = 6) -> float:
    """Round to ``digits`` significant digits, like an exchange's price precision."""
    if value <= 0:
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(value))))


class SyntheticSource(CandleSource):
    """Generates candles on demand; never ends unless ``max_candles`` stops the run."""

    def __init__(self, seed: int, interval_ms: int, start_ms: int, start_price: float = 30_000.0) -> None:
        self._rng = random.Random(seed)
        self._interval_ms = interval_ms
        self._next_ts = start_ms - start_ms % interval_ms
        self._price = start_price
        self._regime = "calm"
        self._index = 0

    async def next_batch(self, max_items: int) -> list[SourceItem] | None:
        return [self._next_candle() for _ in range(max_items)]

    def _next_candle(self) -> Candle:
        rng = self._rng
        drift, vol, mean_len = REGIMES[self._regime]
        if rng.random() < 1.0 / mean_len:
            self._regime = rng.choice([name for name in _REGIME_NAMES if name != self._regime])
            drift, vol, mean_len = REGIMES[self._regime]
        step_vol = vol / math.sqrt(_SUBSTEPS)
        step_drift = drift / _SUBSTEPS
        price = self._price
        open_ = _round_sig(price * math.exp(rng.gauss(0.0, vol * 0.05)))
        high = low = price = open_
        for _ in range(_SUBSTEPS):
            price *= math.exp(rng.gauss(step_drift, step_vol))
            high = max(high, price)
            low = min(low, price)
        close = _round_sig(price)
        high = max(_round_sig(high * (1 + abs(rng.gauss(0.0, vol * 0.2)))), open_, close)
        low = min(_round_sig(low * (1 - abs(rng.gauss(0.0, vol * 0.2)))), open_, close)
        move = abs(math.log(close / open_)) / vol
        volume = round(rng.lognormvariate(0.0, 0.5) * (5.0 + 10.0 * move), 8)
        candle = Candle(self._next_ts, open_, high, low, close, volume)
        self._price = close
        self._next_ts += self._interval_ms
        self._index += 1
        return candle

    def cursor(self) -> dict[str, Any]:
        version, internal, gauss_next = self._rng.getstate()
        return {
            "index": self._index,
            "next_ts": self._next_ts,
            "price": self._price,
            "regime": self._regime,
            "rng": [version, list(internal), gauss_next],
        }

    def restore(self, cursor: dict[str, Any]) -> None:
        version, internal, gauss_next = cursor["rng"]
        self._rng.setstate((version, tuple(internal), gauss_next))
        self._index = int(cursor["index"])
        self._next_ts = int(cursor["next_ts"])
        self._price = float(cursor["price"])
        self._regime = str(cursor["regime"])

    def status(self) -> dict[str, Any]:
        return {"source": "synthetic", "live": False, "index": self._index, "regime": self._regime}
