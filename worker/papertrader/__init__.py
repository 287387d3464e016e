"""papertrader worker: the paper-trading engine."""
