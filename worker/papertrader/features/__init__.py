"""Incremental features: O(1) work per candle, identical in training and serving."""

from papertrader.features.engine import FeatureEngine, UnknownFeatureError, parse_feature

__all__ = ["FeatureEngine", "UnknownFeatureError", "parse_feature"]
