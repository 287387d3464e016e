"""The data-quality gate: every candle gets a verdict before anything else sees it.

Checks, in order: parse errors (from the source), finite positive prices and non-negative volume, OHLC
consistency (low <= open/close <= high), alignment of the timestamp to the interval, ordering (a repeat of the
last candle is ignored when identical and rejected when it conflicts; an older timestamp is rejected), gaps
(counted, never filled), outliers (robust z-score of the log return against the rolling median absolute
deviation), and custom checks. Rejected candles never reach features or the strategy.

The rolling data-quality score (0-100) combines, over the last ``window`` candles: validity (share not
rejected, weight 40), completeness (share of expected candles that arrived, 30), normality (share not flagged as
outliers, 20) and ordering (share without duplicates or out-of-order timestamps, 10).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from papertrader.events import CandleVerdict
from papertrader.market.candle import Candle
from papertrader.market.candle_file import BadRow

OK = CandleVerdict("ok")
DUPLICATE = CandleVerdict("duplicate", ("identical duplicate of the previous candle",))

#: A custom check returns None when the candle passes, or a reason. ``reject`` decides whether a failure
#: rejects the candle or only marks it suspect.
CustomCheck = Callable[[Candle], str | None]

_MAD_REFRESH = 25  # candles between recomputations of the median absolute deviation
_MIN_RETURNS_FOR_OUTLIERS = 30
_MAD_TO_SIGMA = 1.4826

# verdict codes kept in the rolling window
_C_OK, _C_REJECTED, _C_OUTLIER, _C_ORDER = 0, 1, 2, 3


@dataclass
class QualityCounters:
    """Totals since the start of the run (persisted with the engine's checkpoint)."""

    checked: int = 0
    accepted: int = 0
    rejected: int = 0
    suspect: int = 0
    duplicates_ignored: int = 0
    gaps: int = 0
    missing_candles: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class DataQualityGate:
    """Judges candles for one symbol and keeps the rolling quality score."""

    def __init__(self, interval_ms: int, window: int = 100, outlier_z: float = 8.0, reject_z: float = 30.0,
                 enabled: bool = True) -> None:
        self.interval_ms = interval_ms
        self.window = window
        self.outlier_z = outlier_z
        self.reject_z = reject_z
        self.enabled = enabled
        self.counters = QualityCounters()
        self._custom: list[tuple[str, CustomCheck, bool]] = []
        self._last: Candle | None = None
        self._returns: deque[float] = deque()
        self._sorted: list[float] = []
        self._mad = 0.0
        self._since_mad = _MAD_REFRESH
        self._codes: deque[int] = deque()
        self._code_counts = [0, 0, 0, 0]
        self._window_missing: deque[int] = deque()
        self._missing_in_window = 0

    def add_custom_check(self, name: str, check: CustomCheck, reject: bool = False) -> None:
        """Register a custom check (the seed's ``add_custom_check``)."""
        self._custom.append((name, check, reject))

    # --- judging ----------------------------------------------------------------------------------------
    def check(self, item: Candle | BadRow) -> CandleVerdict:
        """The verdict for one item. Updates counters and the rolling score."""
        self.counters.checked += 1
        if type(item) is BadRow:
            return self._reject(f"line {item.line_no}: {item.reason}", "malformed")
        candle: Candle = item  # type: ignore[assignment]
        ts, o, h, l, c, v = candle
        if not self.enabled:
            self._last = candle
            self.counters.accepted += 1
            return OK
        if not (0.0 < l <= h < math.inf and 0.0 <= v < math.inf and l <= o <= h and l <= c <= h):
            return self._reject(*_diagnose(candle))
        if ts % self.interval_ms:
            return self._reject(f"timestamp {ts} not aligned to the {self.interval_ms} ms interval", "misaligned")
        last = self._last
        missing = 0
        if last is not None:
            if ts <= last.ts:
                if ts == last.ts:
                    if candle == last:
                        self.counters.duplicates_ignored += 1
                        self._push(_C_ORDER, 0)
                        return DUPLICATE
                    return self._reject(f"conflicting duplicate of candle ts={ts}", "duplicate_conflict", _C_ORDER)
                return self._reject(f"out of order: ts={ts} after ts={last.ts}", "out_of_order", _C_ORDER)
            missing = (ts - last.ts) // self.interval_ms - 1
            if missing:
                self.counters.gaps += 1
                self.counters.missing_candles += missing
        verdict = OK
        code = _C_OK
        if last is not None:
            z = self._robust_z(math.log(c / last.close))
            if z >= self.outlier_z:
                if z >= self.reject_z:
                    return self._reject(f"outlier: return robust z={z:.1f} >= {self.reject_z:g}", "outlier_rejected",
                                        _C_OUTLIER, missing)
                verdict = CandleVerdict("suspect", (f"outlier: return robust z={z:.1f}",))
                code = _C_OUTLIER
        for name, custom_check, reject in self._custom:
            problem = custom_check(candle)
            if problem is not None:
                if reject:
                    return self._reject(f"{name}: {problem}", f"custom:{name}", _C_REJECTED, missing)
                verdict = CandleVerdict("suspect", verdict.reasons + (f"{name}: {problem}",))
        if last is not None:
            self._add_return(math.log(c / last.close))
        self._last = candle
        self.counters.accepted += 1
        if verdict is not OK:
            self.counters.suspect += 1
        self._push(code, missing)
        return verdict

    def _reject(self, message: str, reason: str, code: int = _C_REJECTED, missing: int = 0) -> CandleVerdict:
        counters = self.counters
        counters.rejected += 1
        counters.reasons[reason] = counters.reasons.get(reason, 0) + 1
        self._push(code if code != _C_OUTLIER else _C_REJECTED, missing)
        return CandleVerdict("rejected", (message,))

    # --- outliers -----------------------------------------------------------------------------------------
    def _robust_z(self, ret: float) -> float:
        if len(self._sorted) < _MIN_RETURNS_FOR_OUTLIERS:
            return 0.0
        n = len(self._sorted)
        median = self._sorted[n // 2] if n % 2 else 0.5 * (self._sorted[n // 2 - 1] + self._sorted[n // 2])
        if self._since_mad >= _MAD_REFRESH:
            deviations = sorted(abs(r - median) for r in self._sorted)
            self._mad = deviations[n // 2] if n % 2 else 0.5 * (deviations[n // 2 - 1] + deviations[n // 2])
            self._since_mad = 0
        scale = _MAD_TO_SIGMA * self._mad
        if scale <= 0.0:
            return 0.0 if ret == median else math.inf
        return abs(ret - median) / scale

    def _add_return(self, ret: float) -> None:
        self._returns.append(ret)
        bisect.insort(self._sorted, ret)
        if len(self._returns) > self.window:
            old = self._returns.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._since_mad += 1

    # --- score ---------------------------------------------------------------------------------------------
    def _push(self, code: int, missing: int) -> None:
        self._codes.append(code)
        self._code_counts[code] += 1
        self._window_missing.append(missing)
        self._missing_in_window += missing
        if len(self._codes) > self.window:
            self._code_counts[self._codes.popleft()] -= 1
            self._missing_in_window -= self._window_missing.popleft()

    def score(self) -> tuple[float, dict[str, float]]:
        """The rolling data-quality score 0-100 and its components (each 0-100)."""
        n = len(self._codes)
        if n == 0:
            return 100.0, {"validity": 100.0, "completeness": 100.0, "normality": 100.0, "ordering": 100.0}
        counts = self._code_counts
        validity = 1.0 - counts[_C_REJECTED] / n
        completeness = n / (n + self._missing_in_window)
        normality = 1.0 - counts[_C_OUTLIER] / n
        ordering = 1.0 - counts[_C_ORDER] / n
        components = {
            "validity": 100.0 * validity,
            "completeness": 100.0 * completeness,
            "normality": 100.0 * normality,
            "ordering": 100.0 * ordering,
        }
        total = 40.0 * validity + 30.0 * completeness + 20.0 * normality + 10.0 * ordering
        return round(total, 2), components

    # --- persistence -----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "counters": vars(self.counters).copy(),
            "last": list(self._last) if self._last else None,
            "returns": list(self._returns),
            "mad": self._mad,
            "since_mad": self._since_mad,
            "codes": list(self._codes),
            "window_missing": list(self._window_missing),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.counters = QualityCounters(**state["counters"])
        self._last = Candle(*state["last"]) if state["last"] else None
        self._returns = deque(state["returns"])
        self._sorted = sorted(self._returns)
        self._mad = state["mad"]
        self._since_mad = state["since_mad"]
        self._codes = deque(state["codes"])
        self._code_counts = [0, 0, 0, 0]
        for code in self._codes:
            self._code_counts[code] += 1
        self._window_missing = deque(state["window_missing"])
        self._missing_in_window = sum(self._window_missing)

    @property
    def last_accepted(self) -> Candle | None:
        return self._last


def _diagnose(candle: Candle) -> tuple[str, str]:
    """Message and reason code for a candle that failed the price/volume/OHLC test."""
    for name in ("open", "high", "low", "close"):
        value = getattr(candle, name)
        if not math.isfinite(value):
            return f"{name} is {value} at ts={candle.ts}", "invalid_price"
        if value <= 0:
            return f"{name} must be > 0, got {value} at ts={candle.ts}", "invalid_price"
    if not math.isfinite(candle.volume) or candle.volume < 0:
        return f"volume must be a finite number >= 0, got {candle.volume} at ts={candle.ts}", "invalid_volume"
    if candle.high < candle.low:
        return f"high {candle.high} < low {candle.low} at ts={candle.ts}", "ohlc_inconsistent"
    return f"open/close outside [low, high] at ts={candle.ts}", "ohlc_inconsistent"
