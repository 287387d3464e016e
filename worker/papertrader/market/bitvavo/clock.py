"""The exchange clock: what time it is *on the exchange*, from ``GET /time``.

Every decision about time in the live source (is a candle closed, how old is the data, is a rate-limit window
over) uses this clock, not the local wall clock, so the worker is right under local clock skew and against an
exchange whose clock runs faster than real time (a test exchange that plays a 1-minute candle every few ms).

A sync measures ``server_time`` against the local monotonic clock at the midpoint of the request (half the round
trip). Between syncs the exchange time is extrapolated with the measured *rate* (exchange ms per local ms, 1.0 for
a real exchange; estimated from consecutive syncs, snapped to 1.0 when within 1 %). ``offset_ms`` is exchange time
minus local wall time at the last sync (exposed as ``clock_offset_ms``). The clock never runs backwards and is
never behind the newest candle timestamp the stream has shown (:meth:`observe`).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ExchangeClock:
    """Exchange time in ms, extrapolated from the last ``/time`` sync."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self._server_ms: float | None = None  # exchange time at the last sync
        self._local_at_sync = 0.0  # local monotonic seconds at the last sync
        self.rate = 1.0  # exchange ms per local ms
        self.offset_ms = 0.0
        self.round_trip_ms = 0.0
        self.syncs = 0
        self._floor_ms = 0.0

    @property
    def synced(self) -> bool:
        return self._server_ms is not None

    def local_seconds(self) -> float:
        return self._monotonic()

    def record_sync(self, server_ms: int, sent_at: float, received_at: float) -> None:
        """Take a ``/time`` answer; ``sent_at``/``received_at`` are local monotonic seconds around the request."""
        midpoint = (sent_at + received_at) / 2.0
        round_trip_ms = (received_at - sent_at) * 1000.0
        if self._server_ms is not None:
            elapsed_local_ms = (midpoint - self._local_at_sync) * 1000.0
            if elapsed_local_ms >= 20.0:  # too short a baseline only measures jitter
                rate = (server_ms - self._server_ms) / elapsed_local_ms
                # each midpoint is uncertain by half its round trip (+1 ms of timer resolution): a rate within
                # that error of 1.0 is a real-time exchange
                error = (self.round_trip_ms + round_trip_ms + 2.0) / 2.0 / elapsed_local_ms
                self.rate = 1.0 if abs(rate - 1.0) <= 0.01 + error else max(rate, 0.0)
        self._server_ms = float(server_ms)
        self._local_at_sync = midpoint
        self.round_trip_ms = round_trip_ms
        self.offset_ms = server_ms - (self._wall() - (self._monotonic() - midpoint)) * 1000.0
        self.syncs += 1

    def observe(self, exchange_ms: int) -> None:
        """The exchange has shown a timestamp this late (a streamed candle's open time): time is at least that."""
        if exchange_ms > self._floor_ms:
            self._floor_ms = float(exchange_ms)

    def now_ms(self) -> int:
        """Current exchange time (ms since the epoch)."""
        if self._server_ms is None:
            estimate = self._wall() * 1000.0
        else:
            estimate = self._server_ms + (self._monotonic() - self._local_at_sync) * 1000.0 * self.rate
        if estimate < self._floor_ms:
            estimate = self._floor_ms
        else:
            self._floor_ms = estimate
        return int(estimate)

    def local_delay(self, exchange_ms: float) -> float:
        """Local seconds until the exchange clock shows ``exchange_ms`` (0 if already past)."""
        ahead = exchange_ms - self.now_ms()
        if ahead <= 0:
            return 0.0
        return ahead / 1000.0 / (self.rate if self.rate > 0 else 1.0)

    def snapshot(self) -> dict[str, float | int]:
        return {"clock_offset_ms": round(self.offset_ms, 1), "clock_rate": round(self.rate, 4),
                "clock_round_trip_ms": round(self.round_trip_ms, 2), "clock_syncs": self.syncs}
