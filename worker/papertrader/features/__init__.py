"""Incremental features: O(1) work per candle, identical in training and serving."""

from papertrader.features.engine import FeatureEngine, parse_feature, UnknownFeatureError

__all__ = ["FeatureEngine", "UnknownFeatureError", "parse_feature"]
