"""Candle files: CSV ``timestamp_ms,open,high,low,close,volume`` read as a stream and written atomically row by row."""

from __future__ import annotations

import io
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


class CandleFileReader:
    """Streams candles from a candle CSV without loading it whole. Resumable through :meth:`cursor`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
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
        out: list[Candle | BadRow] = []
        append = out.append
        readline = self._file.readline
        line_no = self.line_no
        native = self._native
        for _ in range(max_rows):
            raw = readline()
            if not raw:
                break
            line_no += 1
            parts = raw.split(b",")
            try:
                if native and len(parts) == 6:
                    append(
                        Candle(int(parts[0]), float(parts[1]), float(parts[2]), float(parts[3]), float(parts[4]),
                               float(parts[5]))
                    )
                    continue
                if not raw.strip():
                    append(BadRow(line_no, "empty line"))
                    continue
                if len(parts) != self._width:
                    append(BadRow(line_no, f"expected {self._width} fields, found {len(parts)}"))
                    continue
                o = self._order
                append(
                    Candle(int(parts[o[0]]), float(parts[o[1]]), float(parts[o[2]]), float(parts[o[3]]),
                           float(parts[o[4]]), float(parts[o[5]]))
                )
            except ValueError:
                append(BadRow(line_no, _which_field_is_bad(parts, self._order if not native else list(range(6)))))
        self.line_no = line_no
        return out

    def close(self) -> None:
        self._file.close()


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


class CandleRecorder:
    """Appends candles to a candle file (``--record``). Resumes an existing recording without duplicating rows."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file: io.TextIOWrapper = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        if new:
            self._file.write(HEADER)
            self._file.flush()

    @property
    def size(self) -> int:
        self._file.flush()
        return self._file.tell()

    def truncate_to(self, size: int) -> None:
        """Drop rows written after the last durable checkpoint (they will be written again)."""
        self._file.flush()
        if self._file.tell() > size:
            self._file.truncate(size)
            self._file.seek(size)

    def write(self, candle: Candle) -> None:
        self._file.write(format_candle(candle))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
