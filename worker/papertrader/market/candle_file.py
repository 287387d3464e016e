"""Candle files: CSV ``timestamp_ms,open,high,low,close,volume``, read as a stream (``--record`` writes them through
the ledger's crash-safe :class:`~papertrader.ledger.csv_logs.CsvLog`).

Accepted as spreadsheets and other tools write them: a UTF-8 byte-order mark, ``\n``, ``\r\n`` or ``\r``-only line
endings (the first 1 MiB decides). A line longer than MAX_LINE_BYTES is a rejected row, read past in chunks, so a
file without line breaks never fills memory."""

from __future__ import annotations

import os
import stat
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, NamedTuple

import orjson

from papertrader.errors import PapertraderError
from papertrader.market.candle import Candle

COLUMNS = ("timestamp_ms", "open", "high", "low", "close", "volume")
HEADER = ",".join(COLUMNS) + "\n"


MAX_LINE_BYTES = 4096  # a candle row is under 200 bytes
_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"
_OVERLONG = bytes(bytearray(b"\x00overlong"))  # stands for a line that was too long (compared by identity)


class CandleFileError(PapertraderError, ValueError):
    """The file cannot be used at all (no header, missing column, no data). Message names the line."""

    exit_code = 2
    keep_in_logs = True


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


class LineReader:
    """Lines of a binary file, read in 1 MiB chunks: the line separator is detected (``\n``, else ``\r``), lines
    are returned without it, a line longer than ``max_line`` comes back as a marker (and is skipped in chunks,
    never held whole), and :meth:`offset` is the byte offset after the last line returned (resumable)."""

    def __init__(self, handle: BinaryIO, max_line: int = MAX_LINE_BYTES) -> None:
        self._file = handle
        self._max_line = max_line
        self._sep: bytes | None = None
        self._pending: list[bytes] = []
        self._index = 0
        self._tail = b""
        #: byte size (separator included) of pending lines whose size is not ``len(line) + len(sep)``
        self._sizes: dict[int, int] = {}
        self._offset = handle.tell()

    @property
    def offset(self) -> int:
        return self._offset

    def seek(self, offset: int) -> None:
        self._file.seek(offset)
        self._pending, self._index, self._tail, self._sizes = [], 0, b"", {}
        self._offset = offset

    def read(self, count: int) -> list[bytes]:
        """Up to ``count`` lines (fewer only at the end of the file)."""
        out: list[bytes] = []
        while len(out) < count:
            if self._index >= len(self._pending) and not self._fill():
                break
            start = self._index
            take = self._pending[start:start + count - len(out)]
            self._index = start + len(take)
            out.extend(take)
            size = sum(map(len, take)) + len(take) * len(self._sep or b"")
            if self._sizes:
                for index in range(start, self._index):
                    if index in self._sizes:
                        size += self._sizes[index] - len(self._pending[index]) - len(self._sep or b"")
            self._offset += size
        return out

    def _fill(self) -> bool:
        """Load the next lines; False at the end of the file."""
        chunk = self._file.read(_CHUNK)
        if self._sep is None:
            self._sep = b"\n" if b"\n" in chunk or b"\r" not in chunk else b"\r"
        self._pending, self._index, self._sizes = [], 0, {}
        if not chunk:
            if not self._tail:
                return False
            self._pending, self._tail = [self._tail], b""  # a last line without a line break
            self._sizes[0] = len(self._pending[0])
            return True
        parts = (self._tail + chunk).split(self._sep)
        self._tail = parts.pop()
        if not parts and len(self._tail) > self._max_line:  # (with complete lines before it: at the next fill)
            self._sizes[0] = self._skip_overlong(len(self._tail))
            parts, self._tail = [_OVERLONG], b""
        if parts and max(map(len, parts)) > self._max_line:
            for index, line in enumerate(parts):
                if len(line) > self._max_line and line is not _OVERLONG:
                    parts[index] = _OVERLONG
                    self._sizes[index] = len(line) + len(self._sep)
        self._pending = parts
        return True

    def _skip_overlong(self, already: int) -> int:
        """Read past the rest of an overlong line (chunk by chunk); returns its size in bytes."""
        sep = self._sep or b"\n"
        skipped = already
        while chunk := self._file.read(_CHUNK):
            end = chunk.find(sep)
            if end >= 0:
                self._file.seek(end + len(sep) - len(chunk), 1)
                skipped += end + len(sep)
                break
            skipped += len(chunk)
        return skipped


class CandleFileReader:
    """Streams candles from a candle CSV without loading it whole. Resumable through :meth:`cursor`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        require_regular_file(self.path)
        try:
            self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise CandleFileError(f"{self.path}: cannot open ({exc.strerror})") from None
        self._lines = LineReader(self._file)
        header_lines = self._lines.read(1)
        header = header_lines[0].removeprefix(_BOM) if header_lines else b""
        if header is _OVERLONG or len(header) > MAX_LINE_BYTES:
            self._file.close()
            raise CandleFileError(f"{self.path}: line 1: longer than {MAX_LINE_BYTES} bytes, expected header "
                                  f"{HEADER.strip()}")
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
        return {"offset": self._lines.offset, "line": self.line_no}

    def restore(self, cursor: dict[str, int]) -> None:
        self._lines.seek(int(cursor["offset"]))
        self.line_no = int(cursor["line"])

    def read(self, max_rows: int) -> list[Candle | BadRow]:
        """Up to ``max_rows`` parsed rows (fewer only at the end of the file; [] at the end)."""
        lines = self._lines.read(max_rows)
        first_line = self.line_no + 1
        self.line_no += len(lines)
        if self._native:
            fast = _parse_native(lines)
            if fast is not None:
                return fast
        return [self._parse_line(raw, first_line + i) for i, raw in enumerate(lines)]

    def _parse_line(self, raw: bytes, line_no: int) -> Candle | BadRow:
        """One row, any column order; a :class:`BadRow` naming the problem when it cannot be parsed."""
        if raw is _OVERLONG:
            return BadRow(line_no, f"line longer than {MAX_LINE_BYTES} bytes")
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


#: the bytes a chunk of plain numeric rows is made of (anything else: parsed row by row)
_NUMERIC_BYTES = b"0123456789.eE+-, \t\r"
_CANDLE_FIELDS = 6


def _parse_native(lines: list[bytes]) -> list[Candle | BadRow] | None:
    """Fast path for a chunk of well-formed rows in the standard column order: the chunk is parsed as one JSON
    array of arrays (orjson, in C), which reads each number exactly as ``int()``/``float()`` do.

    Returns None when any row in the chunk is unusual (then the caller parses row by row and reports it): a byte
    that is not part of a number (brackets or quotes could move fields between rows), a row without exactly six
    fields, a timestamp that is not an integer, a price or volume written as an integer (``-0`` and ``0`` would
    both read as the integer 0), or text JSON does not take (``.5``, ``1.``, ``+1``, ``nan``, ``1e999``)."""
    if not lines:
        return []
    count = len(lines)
    body = b"],[".join(lines)
    # nothing but number bytes in the rows: the only brackets are the separators, so no field moved between rows
    if body.translate(None, _NUMERIC_BYTES) != b"][" * (count - 1):
        return None
    try:
        rows = orjson.loads(b"[[" + body + b"]]")
    except orjson.JSONDecodeError:
        return None
    if len(rows) != count or set(map(len, rows)) != {_CANDLE_FIELDS}:
        return None
    # integer timestamps, and every price and volume read as a float: five decimal points per row prove it at
    # once (none in an integer timestamp, at most one per number), else (an exponent without a point) the
    # only integers must be the timestamps
    if set(map(type, map(itemgetter(0), rows))) != {int}:
        return None
    if (body.count(b".") != (_CANDLE_FIELDS - 1) * count
            and list(map(type, chain.from_iterable(rows))).count(int) != count):
        return None  # an integer among the prices and volumes
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
