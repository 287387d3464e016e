"""The candle file's chunk parser (orjson over a chunk of rows) reads exactly what the row-by-row parser reads, and
hands every unusual chunk to it (so bad rows are reported, never mis-aligned)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from papertrader.market.candle_file import HEADER, BadRow, CandleFileReader, _parse_native


def _number_text(rng: random.Random) -> str:
    """A price as files write it: plain decimals of many lengths, repr of random floats, exponents."""
    kind = rng.randrange(5)
    if kind == 0:
        return f"{rng.randrange(10**rng.randrange(1, 9))}.{rng.randrange(10**rng.randrange(1, 12))}"
    if kind == 1:
        return repr(rng.uniform(0, 10 ** rng.randrange(-8, 12)))
    if kind == 2:
        return f"{rng.uniform(0, 10):.{rng.randrange(1, 20)}f}"
    if kind == 3:
        return f"{rng.randrange(1, 10**6)}.{rng.randrange(10**6)}e{rng.choice('+-')}{rng.randrange(300)}"
    return repr(rng.random() * 2.0 ** rng.randrange(-1070, 1020))


def _reader(tmp_path: Path, rows: list[str]) -> CandleFileReader:
    path = tmp_path / "candles.csv"
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return CandleFileReader(path)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chunk_parser_reads_every_number_as_float_does(seed):
    rng = random.Random(seed)
    lines = [",".join([str(1_600_000_000_000 + i * 60_000)] + [_number_text(rng) for _ in range(5)]).encode()
             for i in range(20_000)]
    parsed = _parse_native(lines)
    assert parsed is not None  # the fast path took the chunk
    for line, candle in zip(lines, parsed, strict=True):
        fields = line.split(b",")
        expected = (int(fields[0]), *map(float, fields[1:]))
        assert tuple(map(repr, candle)) == tuple(map(repr, expected)), line


@pytest.mark.parametrize("odd_row", [
    "1600000120000,1.5,2.5,0.5,1.5",  # five fields
    "1600000120000,1.5,2.5,0.5,1.5,3.5,9.5",  # seven
    "1600000120000,[1.5,2.5],0.5,1.5,3.5",  # brackets
    '1600000120000,"1.5",2.5,0.5,1.5,3.5',  # quotes
    "1600000120000,1.5,2.5,0.5,nan,3.5",
    "1600000120000.0,1.5,2.5,0.5,1.5,3.5",  # a timestamp that is not an integer
    "1600000120000,-0,2.5,0.5,1.5,3.5",  # integer prices: -0 must stay -0.0
    "1600000120000,2,2.5,0.5,1.5,3.5",
    "1600000120000,+1.5,2.5,0.5,.5,1_0.5",  # float() takes these, JSON does not
    "1600000120000,1.5,2.5,0.5,1.5,1e999",
    "",
])
def test_an_unusual_row_makes_the_chunk_parse_row_by_row_with_the_same_result(tmp_path, odd_row):
    rows = ["1600000000000,1.5,2.5,0.5,1.5,3.5", "1600000060000,1.5,2.5,0.5,1.5,3.5", odd_row,
            "1600000180000,1.25,2.5,0.5,1.5,3.5"]
    assert _parse_native([row.encode() for row in rows]) is None
    got = _reader(tmp_path, rows).read(10)
    assert len(got) == 4 and got[3] == (1600000180000, 1.25, 2.5, 0.5, 1.5, 3.5)  # its neighbours stay aligned
    parts = odd_row.split(",")
    try:
        expected = (int(parts[0]), *map(float, parts[1:])) if len(parts) == 6 else None
    except ValueError:
        expected = None
    if expected is None:
        assert type(got[2]) is BadRow and got[2].line_no == 4
    else:
        assert tuple(map(repr, got[2])) == tuple(map(repr, expected))


def test_rows_with_five_and_seven_fields_are_two_bad_rows_not_two_shifted_candles(tmp_path):
    rows = ["1600000000000,1.5,2.5,0.5,1.5", "1600000060000,1.5,2.5,0.5,1.5,3.5,4.5"]
    got = _reader(tmp_path, rows).read(10)
    assert got == [BadRow(2, "expected 6 fields, found 5"), BadRow(3, "expected 6 fields, found 7")]
