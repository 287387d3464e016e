"""The strategy interface: candle + features + position in, :class:`~papertrader.events.Signal` out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from papertrader.events import Signal
from papertrader.market.candle import Candle

if TYPE_CHECKING:
    from papertrader.resilience import CircuitBreaker


@dataclass(frozen=True, slots=True)
class PositionView:
    """What a strategy may know about the symbol's open position(s)."""

    quantity: float
    entry_price: float
    entry_ts: int
    lots: int


class Strategy(ABC):
    """Base class for strategies.

    A strategy names the features it needs (:meth:`required_features`), may need extra candles before its
    first decision (:meth:`warmup_candles`), and returns one :class:`Signal` per closed, accepted candle after
    warm-up. ``buy`` asks to open a position, ``sell`` to close the open one(s), ``hold`` does nothing (a
    model-based strategy puts its :class:`~papertrader.events.Prediction` in :attr:`Signal.prediction`, whatever
    the side, and the engine publishes it). The risk
    manager decides whether and how much; the broker fills at the next candle's open. A strategy must only use
    what it is given (no look-ahead) and must be deterministic; any state it keeps goes through
    :meth:`state`/:meth:`load_state` so that a restarted worker continues exactly.
    """

    name: ClassVar[str] = ""
    #: the settings group (a dataclass of setting names, :mod:`papertrader.config_groups`) this strategy receives;
    #: None: the whole :class:`~papertrader.config.Settings` (strategies outside the package that read their own)
    settings_type: ClassVar[type | None] = None

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.breaker: CircuitBreaker | None = None

    def bind_breaker(self, breaker: CircuitBreaker) -> None:
        """The prediction circuit breaker; model-based strategies record failures in it and hold while open."""
        self.breaker = breaker

    @abstractmethod
    def required_features(self) -> tuple[str, ...]:
        """Feature names (see :mod:`papertrader.features.indicators`) computed for this strategy."""

    def warmup_candles(self, feature_lookback: int) -> int:
        """Candles that only build state before the first decision. Default: the features' lookback + 1."""
        return feature_lookback + 1

    @abstractmethod
    def on_candle(self, candle: Candle, features: dict[str, float], position: PositionView | None) -> Signal:
        """The signal for this closed candle."""

    def skip_holds(self, series: dict[str, list[float]], start: int, stop: int) -> int:
        """Go through the candles ``start`` .. ``stop - 1`` of a run, given each required feature's values by
        index (``series[name][i]``), as long as :meth:`on_candle` would return HOLD for them with no position
        open; returns the index of the first candle whose signal could be something else (``stop`` when none),
        which the engine then passes to :meth:`on_candle`, with the strategy's state as after the candles
        skipped. A replay's shortcut through quiet stretches; the default skips nothing (always correct)."""
        return start

    def state(self) -> Any:
        """JSON-serialisable internal state (None when stateless)."""
        return None

    def load_state(self, state: Any) -> None:  # noqa: B027 - optional hook: a stateless strategy has nothing to restore
        """Restore what :meth:`state` returned."""

    def status(self) -> dict[str, Any]:
        """Extra facts for health/status (e.g. model version)."""
        return {}
