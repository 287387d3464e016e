"""The data-quality gate: every candle gets a verdict before anything else sees it.

Checks, in order: parse errors (from the source), finite positive prices and non-negative volume, OHLC
consistency (low <= open/close <= high), a timestamp in the sane range [1970, 2100) and aligned to the interval,
ordering (a repeat of the last candle is ignored when identical and rejected when it conflicts; an older timestamp
is rejected), time jumps (a candle more than ``max_gap_ms`` after the last accepted one is rejected as a typo,
such as year 2482 for 2024, unless the next candle confirms the new time, so one bad timestamp never makes every
later candle "out of order"), mixed intervals (three consecutive candles spaced by another known interval:
:attr:`DataQualityGate.interval_conflict` describes them and they are rejected), gaps (counted, never filled),
outliers (robust z-score of the log return against the rolling median absolute
deviation: above QUALITY_OUTLIER_Z the candle is suspect but traded; above QUALITY_REJECT_Z it is rejected as a
bad tick, unless the previous candle was rejected the same way and this one confirms the new level, so a real
level shift never freezes the feed), and custom checks. Rejected candles never reach features or the strategy.

The rolling data-quality score (0-100) combines, over the last ``window`` candles: validity (share not
rejected, weight 40), completeness (share of expected candles that arrived, 30), normality (share not flagged as
outliers, 20) and ordering (share without duplicates or out-of-order timestamps, 10).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from papertrader.events import CandleVerdict, VerdictStatus
from papertrader.market.candle import INTERVAL_MS, Candle
from papertrader.market.candle_file import BadRow

OK = CandleVerdict(VerdictStatus.OK)
DUPLICATE = CandleVerdict(VerdictStatus.DUPLICATE, ("identical duplicate of the previous candle",))

#: A custom check returns None when the candle passes, or a reason. ``reject`` decides whether a failure
#: rejects the candle or only marks it suspect.
CustomCheck = Callable[[Candle], str | None]

REJECTED_SHARE_WARNING = 0.02  # a run that lost more than this share of its candles says so once
_REFRESH = 20  # candles between recomputations of the rolling median and median absolute deviation
_MIN_RETURNS_FOR_OUTLIERS = 30
_MAD_TO_SIGMA = 1.4826
_INF = math.inf
_log = math.log

#: the sane range of candle open times (UTC ms): [1970-01-01, 2100-01-01); outside it a timestamp is a typo or a
#: unit error (seconds, microseconds) and could not even be stored as int64 in the worst case
MIN_TS_MS = 0
MAX_TS_MS = 4_102_444_800_000
DEFAULT_MAX_GAP_MS = 30 * 86_400_000
_INTERVAL_NAMES = {ms: name for name, ms in INTERVAL_MS.items()}
_MIXED_RUN = 3  # consecutive candles spaced by another interval that make a file "mixed"

# verdict codes kept in the rolling window (_C_EMPTY: a slot not used yet)
_C_OK, _C_REJECTED, _C_OUTLIER, _C_ORDER, _C_EMPTY = 0, 1, 2, 3, 4


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
    examples: dict[str, str] = field(default_factory=dict)  # the first rejection message of each rule


class DataQualityGate:
    """Judges candles for one symbol and keeps the rolling quality score."""

    def __init__(self, interval_ms: int, window: int = 100, outlier_z: float = 8.0, reject_z: float = 30.0,
                 enabled: bool = True, max_gap_ms: int = DEFAULT_MAX_GAP_MS) -> None:
        self.interval_ms = interval_ms
        self.max_gap_ms = max(max_gap_ms, interval_ms)
        #: set once candles spaced by another interval were seen (a file mixing 1m and 1h rows): what and where
        self.interval_conflict: str | None = None
        self._jump_ts = 0  # open time of the last candle rejected as a time jump, until one is accepted
        self._odd = [0, 0, 0, 0]  # the current run of odd spacing: [first ts, last ts, step, count]
        self.window = window
        self.outlier_z = outlier_z
        self.reject_z = reject_z
        self.enabled = enabled
        self.counters = QualityCounters()
        self._custom: list[tuple[str, CustomCheck, bool]] = []
        self._last: Candle | None = None
        self._returns: deque[float] = deque(maxlen=window)  # the last ``window`` log returns
        self._median = 0.0
        self._scale = 0.0
        self._suspect_deviation = 0.0
        self._since_refresh = _REFRESH
        self._rejected_close = 0.0  # close of the last candle rejected as an outlier, until one is accepted
        self._codes = [_C_EMPTY] * window
        self._code_counts = [0, 0, 0, 0, window]
        self._missing = [0] * window
        self._missing_in_window = 0
        self._pos = 0

    def add_custom_check(self, name: str, check: CustomCheck, reject: bool = False) -> None:
        """Register a custom check (the seed's ``add_custom_check``)."""
        self._custom.append((name, check, reject))

    # --- judging ----------------------------------------------------------------------------------------
    def check(self, item: Candle | BadRow) -> CandleVerdict:
        """The verdict for one item. Updates counters and the rolling score.

        The common case (a well-formed candle one interval after the last accepted one, no outlier, no custom
        checks) takes the first branch: a few comparisons, the log return and the ring-buffer update."""
        counters = self.counters
        counters.checked += 1
        if type(item) is not Candle:
            return self._reject(f"line {item.line_no}: {item.reason}", "malformed")  # type: ignore[union-attr]  # not a Candle: a BadRow
        ts, o, h, l, c, v = item
        if not self.enabled:
            self._last = item
            counters.accepted += 1
            return OK
        if not (0.0 < l <= h < _INF and 0.0 <= v < _INF and l <= o <= h and l <= c <= h):
            return self._reject(*_diagnose(item))
        last = self._last
        if (last is not None and ts - last[0] == self.interval_ms and ts < MAX_TS_MS and not self._custom
                and not ts % self.interval_ms):
            # the common case: the next candle in order (the same checks as below, in the same order)
            returns = self._returns
            ret = _log(c / last[4])
            if len(returns) >= _MIN_RETURNS_FOR_OUTLIERS:
                if self._since_refresh >= _REFRESH:
                    self._refresh_median_mad()
                deviation = ret - self._median
                if deviation > self._suspect_deviation or -deviation > self._suspect_deviation:
                    return self._judge_outlier(item, ret, deviation, 0)
            returns.append(ret)
            self._since_refresh += 1
            self._last = item
            self._rejected_close = 0.0
            self._jump_ts = 0
            counters.accepted += 1
            i = self._pos
            codes = self._codes
            if codes[i] != _C_OK or self._missing[i]:
                self._push(_C_OK, 0)
            else:
                self._pos = i + 1 if i + 1 < self.window else 0
            return OK
        if ts % self.interval_ms or not MIN_TS_MS <= ts < MAX_TS_MS:
            return self._reject_time(ts)
        missing = 0
        if last is not None:
            last_ts = last[0]
            if ts <= last_ts:
                if ts == last_ts:
                    if item == last:
                        counters.duplicates_ignored += 1
                        self._push(_C_ORDER, 0)
                        return DUPLICATE
                    return self._reject(f"conflicting duplicate of candle ts={ts}", "duplicate_conflict", _C_ORDER)
                return self._reject(f"out of order: ts={ts} after ts={last_ts}", "out_of_order", _C_ORDER)
            if ts - last_ts != self.interval_ms:
                step = ts - last_ts
                if step > self.max_gap_ms and not self._confirms_jump(ts):
                    self._jump_ts = ts
                    return self._reject(f"time jump: ts={ts} is {step / 86_400_000:.1f} days after the last "
                                        f"candle ts={last_ts} (a typo?)", "time_jump")
                if self._odd_spacing(ts, step, last_ts):
                    return self._reject(self.interval_conflict or "", "interval_mismatch", _C_ORDER)
                missing = step // self.interval_ms - 1
                counters.gaps += 1
                counters.missing_candles += missing
            ret = _log(c / last[4])
            if len(self._returns) >= _MIN_RETURNS_FOR_OUTLIERS:
                if self._since_refresh >= _REFRESH:
                    self._refresh_median_mad()
                deviation = ret - self._median
                if deviation > self._suspect_deviation or -deviation > self._suspect_deviation:
                    return self._judge_outlier(item, ret, deviation, missing)
            self._append_return(ret)
        return self._accept(item, OK, _C_OK, missing)

    def accept_run(self, items: Sequence[Candle | BadRow], start: int) -> int:
        """Accept the common-case candles of ``items`` from index ``start`` on, up to the first that is not one;
        returns how many it accepted (their verdict is :data:`OK`; 0: ``items[start]`` needs :meth:`check`).

        The same checks in the same order as :meth:`check`'s first branch, with the gate's state held in local
        variables for the run, so ``[OK] * n`` from here equals ``n`` calls of :meth:`check`, state included (a
        test compares both on every input of the fault matrix). A candle that is not in the common case (bad,
        out of order, a gap, an outlier, custom checks set, the gate disabled) ends the run, for
        :meth:`check` to judge next, in order: the caller must check it before anything else reads the gate (the
        median refresh it was due, if any, is already done, as check() would do it first)."""
        last = self._last
        if last is None or self._custom or not self.enabled:
            return 0
        interval = self.interval_ms
        returns = self._returns
        window = self.window
        outliers_judged = len(returns) >= _MIN_RETURNS_FOR_OUTLIERS
        median, bound = self._median, self._suspect_deviation
        since = self._since_refresh
        codes, missing, pos = self._codes, self._missing, self._pos
        last_ts, last_close = last[0], last[4]
        index, end = start, len(items)
        while index < end:
            item = items[index]
            if type(item) is not Candle:
                break
            ts, o, h, l, c, v = item
            if not (ts - last_ts == interval and 0.0 < l <= h < _INF and 0.0 <= v < _INF and l <= o <= h
                    and l <= c <= h and ts < MAX_TS_MS and not ts % interval):
                break
            ret = _log(c / last_close)
            if outliers_judged:
                if since >= _REFRESH:
                    self._refresh_median_mad()
                    median, bound, since = self._median, self._suspect_deviation, 0
                deviation = ret - median
                if deviation > bound or -deviation > bound:
                    break
            returns.append(ret)
            if not outliers_judged:
                outliers_judged = len(returns) >= _MIN_RETURNS_FOR_OUTLIERS
            since += 1
            if codes[pos] != _C_OK or missing[pos]:
                self._pos = pos
                self._push(_C_OK, 0)
                pos = self._pos
            else:
                pos = pos + 1 if pos + 1 < window else 0
            last, last_ts, last_close = item, ts, c
            index += 1
        accepted = index - start
        if accepted:
            self._last = last
            self._since_refresh = since
            self._pos = pos
            self._rejected_close = 0.0
            self._jump_ts = 0
            counters = self.counters
            counters.checked += accepted
            counters.accepted += accepted
        return accepted

    def _judge_outlier(self, item: Candle, ret: float, deviation: float, missing: int) -> CandleVerdict:
        """A return beyond QUALITY_OUTLIER_Z: rejected above QUALITY_REJECT_Z (unless it confirms a level shift),
        otherwise accepted as suspect."""
        z = abs(deviation) / self._scale if self._scale > 0.0 else math.inf
        close = item[4]
        if z >= self.reject_z and not self._confirms_level_shift(close):
            self._rejected_close = close
            return self._reject(f"outlier: return robust z={z:.1f} >= {self.reject_z:g}",
                                "outlier_rejected", _C_REJECTED, missing)
        self._append_return(ret)
        verdict = CandleVerdict(VerdictStatus.SUSPECT, (f"outlier: return robust z={z:.1f}",))
        return self._accept(item, verdict, _C_OUTLIER, missing)

    def _append_return(self, ret: float) -> None:
        self._returns.append(ret)
        self._since_refresh += 1

    def _accept(self, item: Candle, verdict: CandleVerdict, code: int, missing: int) -> CandleVerdict:
        """Custom checks, then the candle becomes the last accepted one."""
        for name, custom_check, reject in self._custom:
            problem = custom_check(item)
            if problem is not None:
                if reject:
                    return self._reject(f"{name}: {problem}", f"custom:{name}", _C_REJECTED, missing)
                verdict = CandleVerdict(VerdictStatus.SUSPECT, verdict.reasons + (f"{name}: {problem}",))
                code = _C_OUTLIER
        counters = self.counters
        self._last = item
        self._rejected_close = 0.0
        self._jump_ts = 0
        counters.accepted += 1
        if verdict is not OK:
            counters.suspect += 1
        self._push(code, missing)
        return verdict

    def _reject(self, message: str, reason: str, code: int = _C_REJECTED, missing: int = 0) -> CandleVerdict:
        counters = self.counters
        counters.rejected += 1
        counters.reasons[reason] = counters.reasons.get(reason, 0) + 1
        if reason not in counters.examples:
            counters.examples[reason] = message
        self._push(code, missing)
        return CandleVerdict(VerdictStatus.REJECTED, (message,))

    # --- time ------------------------------------------------------------------------------------------
    def _reject_time(self, ts: int) -> CandleVerdict:
        """A timestamp outside the sane range, or not on the interval's boundaries (maybe a finer interval)."""
        if not MIN_TS_MS <= ts < MAX_TS_MS:
            return self._reject(f"timestamp {ts} outside the sane range [{MIN_TS_MS}, {MAX_TS_MS}) (1970-2100 in UTC "
                                "ms)", "timestamp_out_of_range")
        last = self._last
        if last is not None and self._odd_spacing(ts, ts - max(last[0], self._odd[1]), last[0]):
            return self._reject(self.interval_conflict or "", "interval_mismatch", _C_ORDER)
        return self._reject(f"timestamp {ts} not aligned to the {self.interval_ms} ms interval "
                            f"({ts % self.interval_ms} ms past a boundary)", "misaligned")

    def _confirms_jump(self, ts: int) -> bool:
        """True when the previous candle was rejected as a time jump and this one follows it closely: the
        market data really moved on (a long outage), so the jump is accepted."""
        return bool(self._jump_ts) and 0 < ts - self._jump_ts <= self.max_gap_ms

    def _odd_spacing(self, ts: int, step: int, last_ts: int) -> bool:
        """Track runs of candles spaced by another known interval; True (and :attr:`interval_conflict` set) once
        :data:`_MIXED_RUN` follow each other. Runs only on gaps and misaligned candles, never on the common path."""
        if step == self.interval_ms or step not in _INTERVAL_NAMES:
            self._odd[3] = 0
            return False
        odd = self._odd
        if odd[3] and odd[2] == step and odd[1] >= last_ts:
            odd[1] = ts
            odd[3] += 1
        else:
            self._odd = odd = [ts - step, ts, step, 1]
        if odd[3] < _MIXED_RUN:
            return False
        if self.interval_conflict is None:
            expected = _INTERVAL_NAMES.get(self.interval_ms, f"{self.interval_ms} ms")
            self.interval_conflict = (f"the input mixes candle intervals: candles timestamp_ms {odd[0]} to {ts} are "
                                      f"{_INTERVAL_NAMES[step]} apart, CANDLE_INTERVAL is {expected}")
        return True

    # --- outliers -----------------------------------------------------------------------------------------
    def _confirms_level_shift(self, close: float) -> bool:
        """True when the previous candle was rejected as an outlier and this one sits at its level: the move was
        real (a level shift), so it must not be rejected again (which would freeze the feed)."""
        if not self._rejected_close:
            return False
        deviation = abs(math.log(close / self._rejected_close) - self._median)
        return deviation < self.reject_z * self._scale

    def _refresh_median_mad(self) -> None:
        """Median and MAD of the rolling returns; refreshed every few candles (robust statistics move slowly)."""
        ordered = sorted(self._returns)
        n = len(ordered)
        half = n // 2
        median = ordered[half] if n % 2 else 0.5 * (ordered[half - 1] + ordered[half])
        low, high = middle_deviations(ordered, median)
        mad = high if n % 2 else 0.5 * (low + high)
        self._median = median
        self._scale = _MAD_TO_SIGMA * mad
        self._suspect_deviation = self.outlier_z * self._scale
        self._since_refresh = 0

    # --- score ---------------------------------------------------------------------------------------------
    def _push(self, code: int, missing: int) -> None:
        """Record one verdict in the rolling window (a ring buffer)."""
        i = self._pos
        counts = self._code_counts
        counts[self._codes[i]] -= 1
        counts[code] += 1
        self._codes[i] = code
        old_missing = self._missing[i]
        if old_missing or missing:
            self._missing[i] = missing
            self._missing_in_window += missing - old_missing
        self._pos = i + 1 if i + 1 < self.window else 0

    def score(self) -> tuple[float, dict[str, float]]:
        """The rolling data-quality score 0-100 and its components (each 0-100)."""
        counts = self._code_counts
        n = self.window - counts[_C_EMPTY]
        if n == 0:
            return 100.0, {"validity": 100.0, "completeness": 100.0, "normality": 100.0, "ordering": 100.0}
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
            "median_scale": [self._median, self._scale, self._since_refresh, self._rejected_close],
            "time": [self._jump_ts, self._odd, self.interval_conflict],
            "codes": self._codes,
            "missing": self._missing,
            "pos": self._pos,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.counters = QualityCounters(**state["counters"])
        self._last = Candle(*state["last"]) if state["last"] else None
        self._returns = deque(state["returns"], maxlen=self.window)
        self._median, self._scale, self._since_refresh, self._rejected_close = state["median_scale"]
        self._jump_ts, self._odd, self.interval_conflict = state.get("time", [0, [0, 0, 0, 0], None])
        self._odd = list(self._odd)
        self._suspect_deviation = self.outlier_z * self._scale
        self._codes = list(state["codes"])
        self._code_counts = [self._codes.count(code) for code in range(5)]
        self._missing = list(state["missing"])
        self._missing_in_window = sum(self._missing)
        self._pos = state["pos"]

    @property
    def last_accepted(self) -> Candle | None:
        return self._last


def middle_deviations(ordered: list[float], median: float) -> tuple[float, float]:
    """Elements ``n // 2 - 1`` and ``n // 2`` of ``sorted(abs(r - median) for r in ordered)`` (the same floats),
    for sorted ``ordered`` (n >= 2) and its median, without building or sorting the deviations.

    The deviations of ``ordered[:n // 2]`` (all <= median) rise from the middle outwards, as do those of
    ``ordered[n // 2:]``: two sorted runs, whose k-th smallest element a binary search finds in O(log n)."""
    n = len(ordered)
    half = n // 2
    a, b = half, n - half  # run A: abs(ordered[half - 1 - i] - median); run B: abs(ordered[half + j] - median)
    take = half  # the k + 1 smallest for k = n // 2 - 1
    lo, hi = max(0, take - b), min(a, take)
    while True:
        i = (lo + hi) // 2
        j = take - i
        if i < a and j > 0 and abs(ordered[half + j - 1] - median) > abs(ordered[half - 1 - i] - median):
            lo = i + 1  # B[j - 1] > A[i]: take more from A
        elif i > 0 and j < b and abs(ordered[half - i] - median) > abs(ordered[half + j] - median):
            hi = i - 1  # A[i - 1] > B[j]: take fewer from A
        else:
            break
    last_a = abs(ordered[half - i] - median) if i > 0 else -_INF
    last_b = abs(ordered[half + j - 1] - median) if j > 0 else -_INF
    next_a = abs(ordered[half - 1 - i] - median) if i < a else _INF
    next_b = abs(ordered[half + j] - median) if j < b else _INF
    return max(last_a, last_b), min(next_a, next_b)


def dominant_rejection(reasons: dict[str, int]) -> str | None:
    """The rule that rejected the most candles (None when nothing was rejected)."""
    return max(reasons, key=reasons.__getitem__) if reasons else None


def describe_rejections(counters: QualityCounters, total: int, interval_ms: int) -> str:
    """One line: how many of ``total`` candles were rejected, the dominant rule, its count and an example, and for
    misaligned timestamps the offset found and what to do."""
    reason = dominant_rejection(counters.reasons)
    if reason is None:
        return f"none of the {total} candles was rejected"
    line = (f"{counters.rejected} of {total} candles were rejected, {counters.reasons[reason]} of them by rule "
            f"{reason} (first: {counters.examples.get(reason, 'no example kept')})")
    if reason == "misaligned":
        line += (f"; timestamps must be candle open times on {interval_ms} ms boundaries: shift them back by the "
                 "offset (a file of close times is one interval late, less 1 ms) or check CANDLE_INTERVAL")
    return line


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
