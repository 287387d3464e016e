"""The candle cache of one (market, interval): closed candles as the exchange sent them, and where it is complete.

A request for ``start <= ts < end`` can be answered from the cache only when the whole range is *covered*: every
closed bar in it is stored, and intervals in it without a stored bar are known to have had no trades. Coverage
is a set of disjoint ``[lo, hi)`` ranges, added by

- REST answers: a page for ``[start, end)`` covers ``[start, min(end, closed_before))`` (the forming bar and
  anything the exchange had not closed when it answered are not final, so they are not kept); a full page
  (``limit`` rows) covers only from its oldest row, because older rows were cut off;
- the stream: when a newer bar appears, the last update of the previous one is its final value (the rule the
  worker uses), so that bar's interval is covered. Intervals the stream skipped stay uncovered (a stall looks
  the same as a quiet market), and the first REST request for them fills them.

The cache is bounded (``max_candles``): the oldest bars and their coverage are dropped first.
"""

from __future__ import annotations

import bisect
import json
from typing import Any

Row = list[Any]


def row_text(row: Row) -> str:
    return json.dumps(row, separators=(",", ":"))


class Coverage:
    """Disjoint, sorted, half-open ``[lo, hi)`` ranges of exchange ms."""

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []

    def add(self, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        merged: list[list[int]] = []
        for a, b in self.ranges:
            if b < lo or a > hi:
                merged.append([a, b])
            else:
                lo, hi = min(lo, a), max(hi, b)
        merged.append([lo, hi])
        self.ranges = sorted(merged)

    def end_from(self, start: int) -> int | None:
        """The end of the covered range containing ``start`` (None: ``start`` is not covered)."""
        for a, b in self.ranges:
            if a <= start < b:
                return b
        return None

    def trim_below(self, cut: int) -> None:
        self.ranges = [[max(a, cut), b] for a, b in self.ranges if b > cut]


class PairCache:
    """Closed candles of one market and interval, newest bounded by ``max_candles``."""

    def __init__(self, interval_ms: int, max_candles: int) -> None:
        self.interval_ms = interval_ms
        self.max_candles = max(1, max_candles)
        self._ts: list[int] = []  # sorted open times of the stored rows
        self._rows: dict[int, str] = {}  # open time -> the row's JSON text
        self.coverage = Coverage()
        self._forming: Row | None = None  # latest stream update of the bar being built
        self.last_update_ts: int | None = None  # open time of the newest bar the stream has shown

    def __len__(self) -> int:
        return len(self._ts)

    # --- filling ------------------------------------------------------------------------------------------
    def _store(self, ts: int, text: str) -> None:
        if ts not in self._rows:
            bisect.insort(self._ts, ts)
        self._rows[ts] = text

    def _evict(self) -> None:
        excess = len(self._ts) - self.max_candles
        if excess <= 0:
            return
        for ts in self._ts[:excess]:
            del self._rows[ts]
        del self._ts[:excess]
        self.coverage.trim_below(self._ts[0])

    def add_page(self, rows: list[Row], start: int, end: int, limit: int, closed_before: int) -> None:
        """Keep a REST answer for ``[start, end)`` sent with ``limit``. ``closed_before`` is a time the exchange
        had certainly reached when it answered: bars opening in its interval or later may still have been forming,
        so they are not kept."""
        frontier = closed_before - closed_before % self.interval_ms
        kept = [row for row in rows if start <= row[0] < min(end, frontier)]
        lo = start
        if len(rows) >= limit:
            lo = max(start, min(row[0] for row in rows)) if rows else start
        for row in kept:
            self._store(row[0], row_text(row))
        self.coverage.add(lo, min(end, frontier))
        self._evict()

    def on_stream(self, row: Row) -> None:
        """One stream update (the bar so far)."""
        ts = row[0]
        forming = self._forming
        if self.last_update_ts is None or ts > self.last_update_ts:
            self.last_update_ts = ts
        if forming is None or ts == forming[0]:
            self._forming = row
            return
        if ts < forming[0]:
            return  # late or out-of-order: the worker drops it too
        self._store(forming[0], row_text(forming))  # a newer bar: the previous one has ended
        self.coverage.add(forming[0], forming[0] + self.interval_ms)
        self._forming = row
        self._evict()

    def stream_lost(self) -> None:
        """The upstream connection dropped or the pair was unsubscribed: the forming bar's last updates may be
        lost, so it is never stored as final."""
        self._forming = None

    # --- serving ------------------------------------------------------------------------------------------
    def awaiting_stream(self, start: int, end: int) -> bool:
        """Whether what ``[start, end)`` lacks begins where the stream is (its forming bar, or later when REST
        answers have run ahead of a lagging stream, or when the client asks only for the bars from the forming one
        on): the stream's next updates close those bars, so the range will be covered unless the market is quiet.
        A client whose clock has passed a bar's end asks a moment before the stream shows that, or while the
        stream's frames are still on their way."""
        if self._forming is None:
            return False
        covered = self.covered_end(start)
        missing_from = start if covered is None else covered
        return missing_from < end and self._forming[0] <= missing_from

    def covered_end(self, start: int) -> int | None:
        return self.coverage.end_from(start)

    def rows_text(self, start: int, end: int, limit: int) -> list[str]:
        """Stored rows with ``start <= ts < end``, newest first, at most ``limit``."""
        ts = self._ts
        lo = bisect.bisect_left(ts, start)
        hi = bisect.bisect_left(ts, end)
        chosen = ts[max(lo, hi - limit):hi]
        return [self._rows[t] for t in reversed(chosen)]

    def serve(self, start: int, end: int, limit: int) -> list[str] | None:
        """The answer for ``[start, end)`` when the cache covers it, else None."""
        covered = self.covered_end(start)
        if covered is None or covered < end:
            return None
        return self.rows_text(start, end, limit)
