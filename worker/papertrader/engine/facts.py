"""What the worker shows to its services, and the little they may ask of it.

:class:`WorkerFacts` is a read-only snapshot of one worker (portfolio, return and drawdown, halts, counters, source,
breaker and model state), built at once by :meth:`WorkerView.facts`. Health, HTTP, metrics, the performance report,
the WebSocket feed and the notifier read these facts and nothing else of the runner or the engine;
:class:`WorkerControl` is the one thing they may change: halt and resume new entries.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from papertrader.events import PortfolioSnapshot
from papertrader.ledger.portfolio import Lot
from papertrader.ledger.returns import return_pct
from papertrader.market.candle import Candle
from papertrader.resilience import BreakerState


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """The strategy's model as health and metrics see it."""

    version: str | None
    age_seconds: float | None
    required: bool  # the strategy needs a model to trade
    loaded: bool

    @classmethod
    def from_status(cls, status: Mapping[str, Any], model_configured: bool) -> ModelFacts:
        """From a strategy's ``status()`` (``model_version``, ``model_age_seconds`` or ``model_created_at``,
        ``model_loaded``, ``model_dir``); ``model_configured``: the MODEL setting is set."""
        version = status.get("model_version")
        required = bool(version is not None or "model_dir" in status or "model_loaded" in status or model_configured)
        age = status.get("model_age_seconds")
        if age is None and status.get("model_created_at") is not None:
            try:
                age = time.time() - float(status["model_created_at"])
            except (TypeError, ValueError):
                age = None
        loaded = bool(status.get("model_loaded", version is not None))
        return cls(version, age, required, loaded)


@dataclass(frozen=True, slots=True)
class WorkerFacts:
    """One worker at one moment. Money is :class:`~decimal.Decimal` as booked (the portfolio valued at the last
    close, position value to the cent); ``equity_f`` is the unrounded float equity the risk guards use."""

    symbol: str
    source: str  # SOURCE: synthetic | replay | bitvavo
    strategy: str  # STRATEGY
    interval_ms: int
    live: bool  # the source delivers candles in real time
    # --- progress --------------------------------------------------------------------------------------------
    items: int  # source items consumed (accepted and rejected)
    accepted: int  # candles run through the pipeline
    warmup: int
    finished: bool
    waiting_since: float | None  # monotonic time a wait for market data began; None while working
    last_wait_end: float
    storage_error: str | None  # the last failed commit while commits fail
    last_candle: Candle | None
    # --- portfolio -------------------------------------------------------------------------------------------
    initial_capital: Decimal
    cash: Decimal
    position_value: Decimal
    equity: Decimal
    equity_f: float
    peak_equity: float
    max_drawdown: float  # fraction, largest so far
    lots: tuple[Lot, ...]
    trades: int  # fills
    closed_lots: int
    winning_lots: int
    # --- guards and parts ------------------------------------------------------------------------------------
    halts: Mapping[str, str]  # kind -> reason
    breakers: Mapping[str, BreakerState]
    quality_score: float
    quality_parts: Mapping[str, float]
    rejected_by_reason: Mapping[str, int]
    gaps: int
    source_connected: bool
    data_age_ms: float | None  # on the exchange's clock, when the source keeps one
    model: ModelFacts

    @property
    def return_pct(self) -> float:
        """Return on the initial capital in percent (booked equity)."""
        return return_pct(self.equity, self.initial_capital)

    @property
    def snapshot(self) -> PortfolioSnapshot | None:
        """The portfolio row at the last candle (None before the first)."""
        if self.last_candle is None:
            return None
        return PortfolioSnapshot(self.last_candle.ts, self.cash, self.position_value, self.equity, len(self.lots))

    @property
    def halt_reason(self) -> str | None:
        """``kind: reason`` of every halt, sorted by kind, or None."""
        return "; ".join(f"{kind}: {reason}" for kind, reason in sorted(self.halts.items())) or None

    def breaker_open(self, name: str) -> bool:
        return self.breakers.get(name) is BreakerState.OPEN


class WorkerView(Protocol):
    """Read access to a running worker."""

    def facts(self) -> WorkerFacts:
        """The worker now."""

    def summary(self) -> dict[str, Any]:
        """The run's results so far (the last stdout line of ``papertrader run``)."""

    def feature_values(self) -> dict[str, float]:
        """The latest finite feature values by name."""


class WorkerControl(Protocol):
    """What the control surfaces (HTTP, Telegram) may ask of the worker."""

    def halt(self, reason: str, kind: str = "manual") -> None:
        """Stop new entries (durable: survives a restart); open positions are still managed."""

    def resume(self, kind: str = "manual") -> None:
        """Lift the ``kind`` halt (durable)."""
