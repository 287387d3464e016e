"""Fixtures shared by every test package."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from papertrader.market.candle import Candle
from papertrader.market.candle_file import HEADER, format_candle
from papertrader.market.sources.synthetic import SyntheticSource

DATA_DIR = Path(__file__).parent / "data"
REAL_SAMPLE = DATA_DIR / "bitvavo_BTC-EUR_1h_sample.csv"


def synthetic_candles(count: int, seed: int = 7, interval_ms: int = 60_000,
                      start_ms: int = 1_700_000_000_000) -> list[Candle]:
    """Deterministic synthetic candles (the engine's own generator)."""
    source = SyntheticSource(seed, interval_ms, start_ms)
    return asyncio.run(source.next_batch(count))  # type: ignore[return-value]  # a synthetic source never returns None


def write_candle_file(path: Path, candles: list[Candle]) -> Path:
    path.write_text(HEADER + "".join(format_candle(c) for c in candles), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _isolated_worker_logging() -> Iterator[None]:
    """A worker run in-process installs file handlers on the ``papertrader`` logger and stops propagation; undo
    that after each test so that later tests (and ``caplog``) see a clean logger."""
    yield
    for name in ("papertrader", "papertrader.performance"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    logging.getLogger("papertrader").propagate = True


@pytest.fixture
def real_sample() -> Path:
    return REAL_SAMPLE
