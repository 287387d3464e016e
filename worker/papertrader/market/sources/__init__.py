"""Candle sources: where closed candles come from. Every source implements :class:`CandleSource`."""

from papertrader.market.sources.base import CandleSource, SourceItem

__all__ = ["CandleSource", "SourceItem"]
