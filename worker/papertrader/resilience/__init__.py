"""Resilience primitives shared by data collection, prediction, trading and notifications."""

from papertrader.resilience.circuit_breaker import BreakerOpenError, BreakerRegistry, BreakerState, CircuitBreaker

__all__ = ["BreakerOpenError", "BreakerRegistry", "BreakerState", "CircuitBreaker"]
