"""``--source replay``: candles from a candle CSV, streamed (a 1M-row file never sits in memory)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from papertrader.market.candle import INTERVAL_MS, Candle
from papertrader.market.candle_file import CandleFileError, CandleFileReader
from papertrader.market.sources.base import CandleSource, SourceItem


def file_fingerprint(path: Path) -> str:
    """Size plus sha256 of the first 64 KiB: enough to notice that a resumed replay points at another file."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    return f"{path.stat().st_size}:{hashlib.sha256(head).hexdigest()[:16]}"


_SYMBOL_IN_NAME = re.compile(r"(?<![A-Z0-9])([A-Z0-9]{2,10}-[A-Z0-9]{2,10})(?![A-Z0-9])")


def infer_symbol(path: Path) -> str | None:
    """A BASE-QUOTE symbol in the file name (``binance_BTC-USDT_1m.csv`` -> ``BTC-USDT``), if there is one."""
    match = _SYMBOL_IN_NAME.search(path.name.upper())
    return match.group(1) if match else None


def infer_interval(path: Path, sample_rows: int = 200) -> str | None:
    """The candle interval of a file: the smallest step between the first timestamps that names an interval."""
    reader = CandleFileReader(path)
    try:
        stamps = sorted({item.ts for item in reader.read(sample_rows) if isinstance(item, Candle)})
    finally:
        reader.close()
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if b > a]
    if not steps:
        return None
    step = min(steps)
    return next((name for name, ms in INTERVAL_MS.items() if ms == step), None)


class ReplaySource(CandleSource):
    """Reads a candle file from the start, or from a stored cursor after a restart."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._reader = CandleFileReader(self.path)
        self._fingerprint = file_fingerprint(self.path)
        self._first = True

    async def next_batch(self, max_items: int) -> list[SourceItem] | None:
        batch = self._reader.read(max_items)
        if self._first:
            self._first = False
            if not batch and self._reader.line_no == 1:
                raise CandleFileError(f"{self.path}: line 2: no candle rows after the header")
        return batch or None

    def cursor(self) -> dict[str, Any]:
        return {**self._reader.cursor(), "file": self._fingerprint}

    def restore(self, cursor: dict[str, Any]) -> None:
        if cursor.get("file") != self._fingerprint:
            raise CandleFileError(
                f"{self.path}: this state directory was built from a different replay file; "
                "use another --state-dir or the original file"
            )
        self._reader.restore(cursor)
        self._first = False

    def status(self) -> dict[str, Any]:
        return {"source": "replay", "live": False, "file": str(self.path), "line": self._reader.line_no}

    async def close(self) -> None:
        self._reader.close()
