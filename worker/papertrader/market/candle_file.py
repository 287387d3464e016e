"""Candle files: CSV ``timestamp_ms,open,high,low,close,volume``, read as a stream (``--record`` writes them through
the ledger's crash-safe :class:`~papertrader.ledger.csv_logs.CsvLog`)."""

from __future__ import annotations

import os
import stat
from itertools import islice, repeat
from pathlib import Path
from typing import BinaryIO, NamedTuple

from papertrader.market.candle import Candle

COLUMNS = ("timestamp_ms", "open", "high", "low", "close", "volume")
HEADER = ",".join(COLUMNS) + "\n"


class CandleFileError(ValueError):
    """The file cannot be used at all (no header, missing column, no data). Message names the line."""


class BadRow(NamedTuple):
    """A data row that could not be parsed into a candle; it is rejected and counted, never traded on."""

    line_no: int
    reason: str


def require_regular_file(path: Path) -> None:
    """Raise :class:`CandleFileError` (one line) unless ``path`` is a readable regular file: a named pipe or device
    cannot be hashed, resumed by byte offset or read twice, so it is refused rather than half-consumed."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise CandleFileError(f"{path}: cannot open ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise CandleFileError(f"{path}: not a regular file (a named pipe or device?); candle input must be a "
                              "regular file, which is hashed and resumed by byte offset: copy the stream to a file "
                              "first")


class CandleFileReader:
    """Streams candles from a candle CSV without loading it whole. Resumable through :meth:`cursor`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        require_regular_file(self.path)
        try:
            self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise CandleFileError(f"{self.path}: cannot open ({exc.strerror})") from None
        header = self._file.readline()
        if not header.strip():
            self._file.close()
            raise CandleFileError(f"{self.path}: line 1: empty file, expected header {HEADER.strip()}")
        names = [name.strip().lower() for name in header.decode("utf-8", "replace").strip().split(",")]
        missing = [column for column in COLUMNS if column not in names]
        if missing:
            self._file.close()
            raise CandleFileError(
                f"{self.path}: line 1: missing column(s) {', '.join(missing)}; expected header {HEADER.strip()}"
            )
        self._order = [names.index(column) for column in COLUMNS]
        self._width = len(names)
        self._native = self._order == [0, 1, 2, 3, 4, 5] and self._width == 6
        self.line_no = 1  # last line consumed (1 = header)

    def cursor(self) -> dict[str, int]:
        """Where reading resumes: the byte offset and line number after the last row returned."""
        return {"offset": self._file.tell(), "line": self.line_no}

    def restore(self, cursor: dict[str, int]) -> None:
        self._file.seek(int(cursor["offset"]))
        self.line_no = int(cursor["line"])

    def read(self, max_rows: int) -> list[Candle | BadRow]:
        """Up to ``max_rows`` parsed rows (fewer only at the end of the file; [] at the end)."""
        lines = list(islice(self._file, max_rows))
        first_line = self.line_no + 1
        self.line_no += len(lines)
        if self._native:
            fast = _parse_native(lines)
            if fast is not None:
                return fast
        return [self._parse_line(raw, first_line + i) for i, raw in enumerate(lines)]

    def _parse_line(self, raw: bytes, line_no: int) -> Candle | BadRow:
        """One row, any column order; a :class:`BadRow` naming the problem when it cannot be parsed."""
        if not raw.strip():
            return BadRow(line_no, "empty line")
        parts = raw.split(b",")
        if len(parts) != self._width:
            return BadRow(line_no, f"expected {self._width} fields, found {len(parts)}")
        o = self._order
        try:
            return Candle(int(parts[o[0]]), float(parts[o[1]]), float(parts[o[2]]), float(parts[o[3]]),
                          float(parts[o[4]]), float(parts[o[5]]))
        except ValueError:
            return BadRow(line_no, _which_field_is_bad(parts, o))

    def close(self) -> None:
        self._file.close()


def _parse_native(lines: list[bytes]) -> list[Candle | BadRow] | None:
    """Fast path for a chunk of well-formed rows in the standard column order: every conversion runs in C.

    Returns None when any row in the chunk is unusual (then the caller parses row by row and reports it)."""
    if not lines:
        return []
    fields = b",".join(lines).split(b",")
    if len(fields) != 6 * len(lines):
        return None
    try:
        timestamps = list(map(int, fields[0::6]))
        values = list(map(float, fields))
    except ValueError:
        return None
    rows = zip(timestamps, values[1::6], values[2::6], values[3::6], values[4::6], values[5::6])
    return list(map(tuple.__new__, repeat(Candle), rows))


def _which_field_is_bad(parts: list[bytes], order: list[int]) -> str:
    if len(parts) < 6:
        return f"expected 6 fields, found {len(parts)}"
    for column, index in zip(COLUMNS, order, strict=True):
        text = parts[index].decode("utf-8", "replace").strip()
        try:
            int(text) if column == "timestamp_ms" else float(text)
        except ValueError:
            kind = "an integer (UTC ms)" if column == "timestamp_ms" else "a number"
            return f"{column}={text!r:.40} is not {kind}"
    return "unparseable row"


def format_candle(candle: Candle) -> str:
    """One CSV row; floats written with ``repr`` so that reading the row back gives the same floats."""
    return f"{candle.ts},{candle.open!r},{candle.high!r},{candle.low!r},{candle.close!r},{candle.volume!r}\n"
