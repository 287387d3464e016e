"""Market data: the candle type, candle files and candle sources."""
