"""Risk management: position sizing, exits, entry limits and portfolio guards. See docs/risk.md."""
