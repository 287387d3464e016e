"""Return and drawdown: the one place both are computed (the engine's summary, the risk guards, health, metrics and
the performance report all call these)."""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

Money = TypeVar("Money", Decimal, float)


def return_pct(equity: Money, initial: Money) -> float:
    """Return on the initial capital in percent (``(equity - initial) / initial * 100``); 0 without capital.
    Decimal arguments are divided exactly and converted to float at the end."""
    if not initial:
        return 0.0
    return float((equity - initial) / initial * 100)


def drawdown(peak: float, equity: float) -> float:
    """How far ``equity`` lies below the ``peak`` seen so far, as a fraction (0.1 = 10 %); 0 before a peak."""
    return (peak - equity) / peak if peak else 0.0
