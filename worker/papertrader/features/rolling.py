"""Rolling-window statistics in O(1) per update with exact periodic recomputation.

Sums are kept relative to a shift ``K`` (a recent value) to avoid catastrophic cancellation in the variance,
and recomputed from the window every ``n`` updates so that floating-point drift never accumulates: a value at
candle t depends only on the last ``n`` inputs and on how many updates preceded it modulo ``n``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any


class RollingStats:
    """Mean and variance of the last ``n`` values."""

    __slots__ = ("n", "ddof", "_window", "_shift", "_s1", "_s2", "_since")

    def __init__(self, n: int, ddof: int = 1) -> None:
        self.n = n
        self.ddof = ddof
        self._window: deque[float] = deque()
        self._shift = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self._since = 0

    def push(self, x: float) -> None:
        window = self._window
        window.append(x)
        d = x - self._shift
        self._s1 += d
        self._s2 += d * d
        if len(window) > self.n:
            old = window.popleft() - self._shift
            self._s1 -= old
            self._s2 -= old * old
        self._since += 1
        if self._since >= self.n:
            self._recompute()

    def _recompute(self) -> None:
        shift = self._window[-1]
        s1 = s2 = 0.0
        for value in self._window:
            d = value - shift
            s1 += d
            s2 += d * d
        self._shift, self._s1, self._s2, self._since = shift, s1, s2, 0

    @property
    def ready(self) -> bool:
        return len(self._window) >= self.n

    @property
    def count(self) -> int:
        return len(self._window)

    def mean(self) -> float:
        count = len(self._window)
        return self._shift + self._s1 / count if count else math.nan

    def var(self) -> float:
        count = len(self._window)
        if count <= self.ddof:
            return math.nan
        return max((self._s2 - self._s1 * self._s1 / count) / (count - self.ddof), 0.0)

    def std(self) -> float:
        return math.sqrt(self.var())

    def state(self) -> dict[str, Any]:
        return {"w": list(self._window), "k": self._shift, "s1": self._s1, "s2": self._s2, "since": self._since}

    def load_state(self, state: dict[str, Any]) -> None:
        self._window = deque(state["w"])
        self._shift, self._s1, self._s2, self._since = state["k"], state["s1"], state["s2"], state["since"]


class RollingMean:
    """Mean of the last ``n`` values: a running sum, recomputed from the window every ``n`` updates."""

    __slots__ = ("n", "_window", "_sum", "_since")

    def __init__(self, n: int) -> None:
        self.n = n
        self._window: deque[float] = deque(maxlen=n)
        self._sum = 0.0
        self._since = 0

    def push(self, x: float) -> float:
        """Add a value; returns the mean of the last ``n`` values (NaN until ``n`` values were seen)."""
        window, n = self._window, self.n
        total = self._sum + x
        full = len(window) == n
        if full:
            total -= window[0]  # the value that the append below drops
        window.append(x)
        since = self._since + 1
        if since >= n:
            total = sum(window)
            since = 0
        self._sum, self._since = total, since
        return total / n if full or len(window) == n else math.nan

    def push_many(self, xs: list[float]) -> list[float]:
        """:meth:`push` each value in turn; returns the means (the same floats, the same state after)."""
        window, n = self._window, self.n
        total, since = self._sum, self._since
        out: list[float] = []
        append = out.append
        nan = math.nan
        for x in xs:
            total += x
            if len(window) == n:
                total -= window[0]
                window.append(x)
                full = True
            else:
                window.append(x)
                full = len(window) == n
            since += 1
            if since >= n:
                total = sum(window)
                since = 0
            append(total / n if full else nan)
        self._sum, self._since = total, since
        return out

    def state(self) -> dict[str, Any]:
        return {"w": list(self._window), "s": self._sum, "since": self._since}

    def load_state(self, state: dict[str, Any]) -> None:
        self._window = deque(state["w"], maxlen=self.n)
        self._sum, self._since = state["s"], state["since"]


class Ema:
    """Exponential moving average ``y = y + alpha * (x - y)``, seeded with the first value (pandas adjust=False)."""

    __slots__ = ("alpha", "value", "count")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.value = math.nan
        self.count = 0

    def push(self, x: float) -> float:
        if self.count == 0:
            self.value = x
        else:
            self.value = (1.0 - self.alpha) * self.value + self.alpha * x
        self.count += 1
        return self.value

    def state(self) -> list[float]:
        return [self.value, self.count]

    def load_state(self, state: list[float]) -> None:
        self.value, self.count = state[0], int(state[1])
