"""Synthetic candle series for the ML tests: a pure random walk and a walk with a planted lagged signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from papertrader.market.candle import Candle
from papertrader.market.candle_file import HEADER, format_candle

START_MS = 1_704_067_200_000


def _candles(log_returns: np.ndarray, volume: np.ndarray, rng: np.random.Generator) -> list[Candle]:
    closes = 30_000.0 * np.exp(np.cumsum(log_returns))
    opens = np.concatenate([[30_000.0], closes[:-1]])
    wiggle = np.abs(rng.normal(0, 0.0004, (2, len(closes))))
    highs = np.maximum(opens, closes) * (1 + wiggle[0])
    lows = np.minimum(opens, closes) * (1 - wiggle[1])
    return [Candle(START_MS + i * 60_000, round(float(o), 2), round(float(h), 2), round(float(l), 2),
                   round(float(c), 2), round(float(v), 6))
            for i, (o, h, l, c, v) in enumerate(zip(opens, np.maximum(highs, np.maximum(opens, closes)),
                                                    np.minimum(lows, np.minimum(opens, closes)), closes, volume))]


def random_walk(n: int, seed: int = 1) -> list[Candle]:
    """i.i.d. Gaussian log returns (no drift) and independent log-normal volume: nothing is predictable."""
    rng = np.random.default_rng(seed)
    return _candles(rng.normal(0.0, 0.001, n), 100.0 * np.exp(rng.normal(0.0, 0.5, n)), rng)


def planted_signal(n: int, seed: int = 2, beta: float = 0.002) -> list[Candle]:
    """The volume of candle t (log-normal in x_t) sets the drift of candle t+1: r_{t+1} = beta x_t + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    returns = rng.normal(0.0, 0.001, n)
    returns[1:] += beta * x[:-1]
    return _candles(returns, 100.0 * np.exp(0.5 * x), rng)


def write_csv(path: Path, candles: list[Candle]) -> Path:
    path.write_text(HEADER + "".join(format_candle(c) for c in candles), encoding="utf-8")
    return path
