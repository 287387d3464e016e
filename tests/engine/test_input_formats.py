"""Candle files as other tools write them: a UTF-8 BOM, CRLF or CR-only line endings are read like plain ones
(and resume at the right byte after a restart); a line longer than 4 KiB is one rejected row and never fills
memory, even when the file has no line break at all."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from papertrader.cli import main
from papertrader.market.candle_file import MAX_LINE_BYTES, BadRow, CandleFileReader

from .helpers import read_csv, run_replay

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "bitvavo_BTC-EUR_1h_sample.csv"


def _variant(tmp_path: Path, name: str) -> Path:
    data = SAMPLE.read_bytes()
    path = tmp_path / f"{name}_BTC-EUR.csv"
    if name == "bom":
        data = b"\xef\xbb\xbf" + data
    elif name == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif name == "cr":
        data = b"\xef\xbb\xbf" + data.replace(b"\n", b"\r")
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["bom", "crlf", "cr"])
def test_bom_and_line_endings_give_the_same_trades_as_the_plain_file_even_resumed(tmp_path, name):
    plain = run_replay(tmp_path / "plain", SAMPLE)
    variant = _variant(tmp_path, name)
    run_replay(tmp_path / "v", variant, MAX_CANDLES=1234)  # stopped half-way, then resumed by byte offset
    resumed = run_replay(tmp_path / "v", variant)
    assert resumed["candles"] == plain["candles"] == 3000 and resumed["rejected_candles"] == 0
    assert read_csv(tmp_path / "v" / "logs" / "trades.csv") == read_csv(tmp_path / "plain" / "logs" / "trades.csv")


def test_an_overlong_line_is_one_rejected_row(tmp_path):
    lines = SAMPLE.read_bytes().split(b"\n")
    lines[500] = b"1," * (MAX_LINE_BYTES // 2 + 10)  # > 4 KiB
    path = tmp_path / "long_BTC-EUR.csv"
    path.write_bytes(b"\n".join(lines))
    reader = CandleFileReader(path)
    rows = reader.read(10_000)
    reader.close()
    bad = [row for row in rows if isinstance(row, BadRow)]
    assert bad == [BadRow(501, f"line longer than {MAX_LINE_BYTES} bytes")]
    assert len(rows) == 3000 and rows[500].ts == int(lines[501].split(b",")[0])


def test_a_file_without_line_breaks_is_read_in_bounded_memory(tmp_path, capsys):
    path = tmp_path / "flat_BTC-EUR.csv"
    with open(path, "wb") as handle:
        handle.write(b"timestamp_ms,open,high,low,close,volume\n")
        for _ in range(64):
            handle.write(b"1679788800000,1.0,1.0,1.0,1.0,1.0;" * (1 << 15))  # 64 x 1.1 MB, no newline
    tracemalloc.start()
    reader = CandleFileReader(path)
    rows = reader.read(100)
    reader.close()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rows == [BadRow(2, f"line longer than {MAX_LINE_BYTES} bytes")]
    assert peak < 8 * (1 << 20), peak  # a few 1 MiB chunks, not the 70 MB line
    code = main(["run", "--http-port", "0", "--ws-port", "0", "--source", "replay", "--replay-file", str(path),
                 "--state-dir", str(tmp_path / "s"), "--interval", "1h"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert ("every candle was rejected: 1 of 1 candles were rejected, 1 of them by rule malformed "
            "(first: line 2: line longer than 4096 bytes)") in err
