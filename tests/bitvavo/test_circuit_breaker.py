"""The circuit breaker class: CLOSED -> OPEN -> HALF_OPEN -> CLOSED, thresholds, listeners, the enable switch."""

from __future__ import annotations

import pytest

from papertrader.resilience.circuit_breaker import (
    BreakerOpenError,
    BreakerState,
    CircuitBreaker,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, timeout: float = 10.0, successes: int = 2, enabled: bool = True):
    clock = FakeClock()
    breaker = CircuitBreaker("data_collection", threshold, timeout, successes, enabled, clock=clock)
    changes: list[tuple[str, str]] = []
    breaker.listeners.append(lambda b, old, new: changes.append((old.value, new.value)))
    return breaker, clock, changes


def test_opens_after_consecutive_failures_only() -> None:
    breaker, _, changes = make(threshold=3)
    breaker.record_failure("a")
    breaker.record_failure("b")
    breaker.record_success()  # resets the consecutive count
    breaker.record_failure("c")
    breaker.record_failure("d")
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record_failure("e")
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    assert changes == [("CLOSED", "OPEN")]
    with pytest.raises(BreakerOpenError):
        breaker.check()


def test_half_open_after_timeout_then_closes_after_successes() -> None:
    breaker, clock, changes = make(threshold=1, timeout=10, successes=2)
    breaker.record_failure("x")
    clock.now = 9.9
    assert breaker.state is BreakerState.OPEN
    breaker.record_success()  # successes while OPEN do not close it early
    assert breaker.state is BreakerState.OPEN
    clock.now = 10.0
    assert breaker.state is BreakerState.HALF_OPEN and breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert changes == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]
    assert breaker.snapshot()["times_opened"] == 1


def test_failure_in_half_open_reopens_and_restarts_the_timeout() -> None:
    breaker, clock, _ = make(threshold=2, timeout=5)
    breaker.record_failure("x")
    breaker.record_failure("x")
    clock.now = 5
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_failure("trial")
    assert breaker.state is BreakerState.OPEN and breaker.times_opened == 2
    clock.now = 9.9
    assert breaker.state is BreakerState.OPEN
    clock.now = 10
    assert breaker.state is BreakerState.HALF_OPEN


def test_disabled_breaker_never_opens_but_counts() -> None:
    breaker, _, changes = make(threshold=1, enabled=False)
    for _ in range(10):
        breaker.record_failure("x")
    assert breaker.allow() and breaker.state is BreakerState.CLOSED and changes == []
    assert breaker.total_failures == 10


def test_state_change_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    breaker, _, _ = make(threshold=1)
    with caplog.at_level("WARNING", logger="papertrader.resilience"):
        breaker.record_failure("stream closed")
    assert any("circuit breaker data_collection: CLOSED -> OPEN" in r.getMessage() for r in caplog.records)
