"""Engine events: what the pipeline tells the outside world (metrics, WebSocket, Telegram, traces).

``on_candle`` and ``on_ticks_done`` come once per batch (the runner's commit unit: one candle for a live worker,
up to COMMIT_EVERY_CANDLES in a replay at max speed), with the batch's last candle and every item's duration; fills,
portfolio rows and predictions come as they happen.

The engine calls every registered :class:`EngineListener` synchronously on its own thread, so a listener
must be cheap and must never block: anything slow (network) goes through a bounded queue of its own.
A listener that raises is logged and counted, never allowed to stop trading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from papertrader.market.candle import Candle


class Side(StrEnum):
    """A signal's, an order's or a fill's side; the plain value is what files and JSON hold."""

    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"  # signals only


class VerdictStatus(StrEnum):
    """The data-quality gate's statuses (the plain value is what logs, traces and the feed show)."""

    OK = "ok"
    SUSPECT = "suspect"  # traded, flagged
    REJECTED = "rejected"
    DUPLICATE = "duplicate"  # an identical repeat of the previous candle (skipped)


@dataclass(frozen=True, slots=True)
class CandleVerdict:
    """The data-quality gate's verdict on one candle: ``ok``, ``suspect`` (traded, flagged) or ``rejected``."""

    status: VerdictStatus
    reasons: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.status != VerdictStatus.REJECTED


@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's output for one closed candle."""

    side: Side
    confidence: float = 0.0  # 0..1
    strength: float = 0.0  # 0..1
    reason: str = ""
    #: the model prediction behind this signal (model-based strategies; the engine publishes it), else None
    prediction: Prediction | None = None


HOLD = Signal(Side.HOLD)


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model prediction for one closed candle (ML strategies only)."""

    ts: int
    probability_up: float
    model_version: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class Fill:
    """One executed paper order. Money values are exact Decimals in quote currency."""

    ts: int
    symbol: str
    side: Side  # BUY or SELL
    quantity: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    reason: str
    position_id: int


@dataclass(frozen=True, slots=True)
class PortfolioSnapshot:
    """Cash + position value = equity, exactly, in quote currency."""

    ts: int
    cash: Decimal
    position_value: Decimal
    equity: Decimal
    open_positions: int


class EngineListener(Protocol):
    """Receives engine events. Implement only what you need; see :class:`BaseListener`."""

    def on_candle(self, candle: Candle, verdict: CandleVerdict) -> None: ...

    def on_prediction(self, prediction: Prediction) -> None: ...

    def on_fill(self, fill: Fill) -> None: ...

    def on_portfolio(self, snapshot: PortfolioSnapshot) -> None: ...

    def on_ticks_done(self, items: Sequence[Candle], durations_s: Sequence[float]) -> None: ...


class BaseListener:
    """No-op implementation of :class:`EngineListener` to subclass."""

    def on_candle(self, candle: Candle, verdict: CandleVerdict) -> None:
        pass

    def on_prediction(self, prediction: Prediction) -> None:
        pass

    def on_fill(self, fill: Fill) -> None:
        pass

    def on_portfolio(self, snapshot: PortfolioSnapshot) -> None:
        pass

    def on_ticks_done(self, items: Sequence[Candle], durations_s: Sequence[float]) -> None:
        """Once per batch: every item's processing time, in order (``durations_s[i]`` is ``items[i]``'s)."""
