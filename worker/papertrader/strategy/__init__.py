"""Strategies: turn a closed candle and its features into a signal. See ``docs/strategies.md``."""

from papertrader.strategy.base import PositionView, Strategy
from papertrader.strategy.registry import create_strategy, strategy_names

__all__ = ["PositionView", "Strategy", "create_strategy", "strategy_names"]
