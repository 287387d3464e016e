"""The ML pipeline: dataset building (through the engine's own feature code), walk-forward training and
evaluation, versioned model artifacts and the per-candle predictor used by the ``ml`` strategy.

Importing this package does not import torch; :mod:`papertrader.ml.model`, :mod:`papertrader.ml.predictor` and
:mod:`papertrader.ml.train` do. See ``docs/ml.md``.
"""
