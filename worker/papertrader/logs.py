"""Log files under ``<state-dir>/logs/`` as the seed had them, with rotation.

- ``enhanced_paper_trader.log``: everything at LOG_LEVEL and above;
- ``errors.log``: errors only;
- ``performance.log``: timings and periodic performance reports (logger ``papertrader.performance``).
The console (stderr) gets the same lines as the main log. ``trades.csv`` and ``portfolio.csv`` are written by
the ledger (:mod:`papertrader.ledger.csv_logs`).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PERFORMANCE_LOGGER = "papertrader.performance"


def _rotating(path: Path, level: int, max_bytes: int, backups: int) -> logging.Handler:
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def setup_logging(log_dir: Path, level: str = "INFO", max_bytes: int = 10_000_000, backups: int = 5,
                  console: bool = True) -> None:
    """Install the worker's handlers on the ``papertrader`` logger (idempotent)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("papertrader")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(getattr(logging, level))
    root.propagate = False
    root.addHandler(_rotating(log_dir / "enhanced_paper_trader.log", logging.DEBUG, max_bytes, backups))
    root.addHandler(_rotating(log_dir / "errors.log", logging.ERROR, max_bytes, backups))
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(stream)
    performance = logging.getLogger(PERFORMANCE_LOGGER)
    for handler in list(performance.handlers):
        performance.removeHandler(handler)
        handler.close()
    performance.addHandler(_rotating(log_dir / "performance.log", logging.DEBUG, max_bytes, backups))
