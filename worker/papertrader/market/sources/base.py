"""The source interface shared by replay, synthetic and live exchange sources.

A source hands the engine *closed* candles in the order it received them, in batches. The engine asks for at
most ``max_items`` at a time, so the source's :meth:`CandleSource.cursor` after a batch always describes exactly
what the engine has consumed; the engine stores that cursor with its checkpoint and, after a crash, calls
:meth:`CandleSource.restore` before reading again. Sources never filter or repair data: the data-quality gate
judges every item, including rows the source could not parse (:class:`BadRow`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from papertrader.market.candle import Candle
from papertrader.market.candle_file import BadRow

if TYPE_CHECKING:
    from papertrader.broker.market_rules import MarketRules

SourceItem = Candle | BadRow


class CandleSource(ABC):
    """A stream of closed candles for one symbol."""

    #: True for sources whose candles arrive in real time (the engine then commits after every candle).
    live: bool = False

    async def start(self, last_processed_ts: int | None, warmup_candles: int) -> None:  # noqa: B027 - optional hook
        """Prepare to deliver candles.

        ``last_processed_ts`` is the open time of the last candle the engine processed before a restart
        (None on a fresh start); ``warmup_candles`` is how much history a fresh live source must fetch first.
        Replayed and generated sources ignore both and rely on :meth:`restore`.
        """

    @abstractmethod
    async def next_batch(self, max_items: int) -> list[SourceItem] | None:
        """Up to ``max_items`` items, at least one; ``None`` when the source is finished."""

    @abstractmethod
    def cursor(self) -> dict[str, Any]:
        """JSON-serialisable position after the last item returned."""

    @abstractmethod
    def restore(self, cursor: dict[str, Any]) -> None:
        """Continue after the position that :meth:`cursor` returned."""

    def status(self) -> dict[str, Any]:
        """Source state for health and metrics (connection, lag, ...)."""
        return {"source": type(self).__name__, "live": self.live}

    def market_rules(self) -> MarketRules | None:
        """The exchange's precision and minimums for the paper broker, once :meth:`start` has returned; None (the
        default) when the source knows none (replays read a recording's sidecar file instead)."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook: nothing to release by default
        """Release files, sockets and tasks."""
