"""papertrader operator: reconciles PaperTrader resources into per-symbol workers."""
