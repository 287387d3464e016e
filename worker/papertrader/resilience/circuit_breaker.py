"""The seed's circuit breaker, generalised: CLOSED -> OPEN after ``failure_threshold`` consecutive failures,
OPEN -> HALF_OPEN after ``recovery_timeout`` seconds, HALF_OPEN -> CLOSED after ``success_threshold``
consecutive successes (any failure in HALF_OPEN opens it again).

State changes are logged (``circuit breaker <name>: CLOSED -> OPEN ...``) and reported to listeners (metrics,
health). A disabled breaker (ENABLE_CIRCUIT_BREAKERS=false) never opens.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from papertrader.errors import PapertraderError

log = logging.getLogger("papertrader.resilience")


class BreakerState(enum.StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class BreakerOpenError(PapertraderError, RuntimeError):
    """Raised by :meth:`CircuitBreaker.check` while the breaker refuses calls."""


StateListener = Callable[["CircuitBreaker", BreakerState, BreakerState], None]


class CircuitBreaker:
    """Counts failures of one kind of operation and stops calling it while it keeps failing."""

    def __init__(self, name: str, failure_threshold: int = 5, recovery_timeout: float = 60.0,
                 success_threshold: int = 1, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.success_threshold = success_threshold
        self.enabled = enabled
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self.total_failures = 0
        self.times_opened = 0
        self.listeners: list[StateListener] = []

    @property
    def state(self) -> BreakerState:
        """The current state; an OPEN breaker whose recovery timeout passed reads as HALF_OPEN."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.recovery_timeout:
            self._transition(BreakerState.HALF_OPEN, "recovery timeout passed, allowing a trial call")
        return self._state

    @property
    def is_open(self) -> bool:
        return self.state is BreakerState.OPEN

    def allow(self) -> bool:
        """Whether a call may be made now."""
        return not self.enabled or self.state is not BreakerState.OPEN

    def check(self) -> None:
        """Raise :class:`BreakerOpenError` when calls are refused."""
        if not self.allow():
            remaining = self.recovery_timeout - (self._clock() - self._opened_at)
            raise BreakerOpenError(f"circuit breaker {self.name} is OPEN (retry in {remaining:.0f} s)")

    def record_success(self) -> None:
        self._failures = 0
        if self._state is BreakerState.HALF_OPEN or self.state is BreakerState.HALF_OPEN:
            self._successes += 1
            if self._successes >= self.success_threshold:
                self._transition(BreakerState.CLOSED, f"{self._successes} successful call(s)")

    def record_failure(self, reason: str = "") -> None:
        self.total_failures += 1
        if not self.enabled:
            return
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._open(f"trial call failed: {reason}")
            return
        self._failures += 1
        if state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
            self._open(f"{self._failures} consecutive failures, last: {reason}")

    def _open(self, why: str) -> None:
        self._opened_at = self._clock()
        self.times_opened += 1
        self._transition(BreakerState.OPEN, why)

    def _transition(self, new: BreakerState, why: str) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self._failures = 0
        self._successes = 0
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        log.log(level, "circuit breaker %s: %s -> %s (%s)", self.name, old.value, new.value, why)
        for listener in self.listeners:
            listener(self, old, new)

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state.value, "failures": self._failures, "total_failures": self.total_failures,
                "times_opened": self.times_opened, "enabled": self.enabled}


class BreakerRegistry:
    """The worker's breakers by name (data_collection, prediction, trading, notifications)."""

    def __init__(self) -> None:
        self.breakers: dict[str, CircuitBreaker] = {}

    def add(self, breaker: CircuitBreaker) -> CircuitBreaker:
        self.breakers[breaker.name] = breaker
        return breaker

    def get(self, name: str) -> CircuitBreaker | None:
        return self.breakers.get(name)
