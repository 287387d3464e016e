"""The engine: the per-candle pipeline and the run loop around it."""
