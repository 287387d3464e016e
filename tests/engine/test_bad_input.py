"""Bad candle files and bad settings never crash the engine: unusable input exits 2 with one clear line, bad rows
are rejected, counted and never traded on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from papertrader.cli import main
from papertrader.market.candle_file import HEADER, format_candle
from tests.conftest import synthetic_candles
from tests.engine.helpers import read_csv


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["run", "--http-port", "0", "--ws-port", "0", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _file(tmp_path: Path, text: str, name: str = "c.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", "line 1: empty file"),
        ("timestamp_ms,open,high,low,close\n1,2,3,1,2\n", "line 1: missing column(s) volume"),
        ("time,o,h,l,c,v\n", "missing column(s) timestamp_ms, open, high, low, close, volume"),
        (HEADER, "line 2: no candle rows after the header"),
    ],
)
def test_unusable_files_exit_2_naming_line_and_problem(tmp_path, capsys, text, expected):
    code, out, err = _run(capsys, "--source", "replay", "--replay-file", _file(tmp_path, text),
                          "--state-dir", str(tmp_path / "s"))
    assert code == 2
    assert expected in err
    assert "Traceback" not in err and out == ""


def test_missing_file_exits_2(tmp_path, capsys):
    code, _, err = _run(capsys, "--source", "replay", "--replay-file", str(tmp_path / "nope.csv"),
                        "--state-dir", str(tmp_path / "s"))
    assert code == 2 and "nope.csv: cannot open" in err


def test_bad_rows_are_rejected_counted_and_never_traded(tmp_path, capsys):
    candles = synthetic_candles(3000, seed=3)
    rows = [format_candle(c) for c in candles]
    bad = {
        1000: f"{candles[1000].ts},nan,1,1,1,1\n",
        1100: f"{candles[1100].ts},-5,1,-6,1,1\n",
        1200: f"{candles[1200].ts},0,0,0,0,1\n",
        1300: f"{candles[1300].ts},100,90,110,100,1\n",  # high < low
        1400: f"{candles[1400].ts},abc,1,1,1,1\n",  # text in a number field
        1450: "1,2,3\n",  # too few fields
    }
    for index, row in bad.items():
        rows[index] = row
    rows.insert(1501, format_candle(candles[1500]))  # identical duplicate: ignored
    rows.insert(1600, format_candle(candles[1599]._replace(close=candles[1599].close + 1)))  # conflicting
    rows.insert(1700, format_candle(candles[1000]))  # far out of order
    path = _file(tmp_path, HEADER + "".join(rows), "BAD-EUR.csv")
    code, out, err = _run(capsys, "--source", "replay", "--replay-file", path, "--state-dir", str(tmp_path / "s"))
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["rejected_candles"] == 8
    assert summary["duplicates_ignored"] == 1
    assert summary["candles"] == 3000 - 6
    assert "line 1402: open='abc' is not a number" in err  # row 1400 of the data is line 1402 of the file
    rejected_ts = {candles[i].ts for i in (1000, 1100, 1200, 1300, 1400)}
    for trade in read_csv(tmp_path / "s" / "logs" / "trades.csv"):
        assert int(trade["timestamp_ms"]) not in rejected_ts


@pytest.mark.parametrize(
    "env,message",
    [
        ({"TAKE_PROFIT_PCT": "abc"}, "invalid setting TAKE_PROFIT_PCT=abc"),
        ({"MAX_POSITIONS": "0"}, "invalid setting MAX_POSITIONS=0: Input should be greater than or equal to 1"),
        ({"SOURCE": "kraken"}, "invalid setting SOURCE=kraken: allowed values are 'synthetic', 'replay' or 'bitvavo'"),
        ({"SPEED": "fast"}, "invalid setting SPEED=fast: expected max, realtime or a positive number"),
        ({"SYMBOL": "btc_eur"}, "invalid setting SYMBOL=btc_eur: expected BASE-QUOTE such as BTC-EUR"),
        ({"SMA_FAST": "40"}, "SMA_FAST: must be smaller than SMA_SLOW"),
        ({"STRATEGY": "moon"}, "invalid setting STRATEGY=moon: allowed values are"),
    ],
)
def test_invalid_settings_exit_2_with_one_line(tmp_path, env, message):
    result = subprocess.run(
        [sys.executable, "-m", "papertrader.cli", "run", "--state-dir", str(tmp_path / "s"), "--max-candles", "10"],
        env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_a_misaligned_file_exits_2_naming_alignment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Open times shifted by 7 s: every candle is rejected by one rule; the run says so and exits 2."""
    candles = [c._replace(ts=c.ts + 7_000) for c in synthetic_candles(60)]
    path = _file(tmp_path, HEADER + "".join(format_candle(c) for c in candles))
    code, out, err = _run(capsys, "--source", "replay", "--replay-file", path, "--state-dir", str(tmp_path / "s"))
    assert code == 2
    first = candles[0].ts
    lines = [line for line in err.splitlines() if line.startswith("papertrader run:")]
    assert lines == [
        "papertrader run: every candle was rejected: 60 of 60 candles were rejected, 60 of them by rule misaligned "
        f"(first: timestamp {first} not aligned to the 60000 ms interval (7000 ms past a boundary)); timestamps "
        "must be candle open times on 60000 ms boundaries: shift them back by the offset (a file of close times "
        "is one interval late, less 1 ms) or check CANDLE_INTERVAL"]
    assert json.loads(out.strip().splitlines()[-1])["dominant_rejection"] == "misaligned"


def test_a_partly_bad_file_trades_and_names_its_dominant_rejection(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    candles = synthetic_candles(200)
    rows = [format_candle(c._replace(ts=c.ts + 5_000) if 50 <= i < 60 else c) for i, c in enumerate(candles)]
    code, out, err = _run(capsys, "--source", "replay", "--replay-file", _file(tmp_path, HEADER + "".join(rows)),
                          "--state-dir", str(tmp_path / "s"))
    summary = json.loads(out.strip().splitlines()[-1])
    first = candles[50].ts + 5_000
    assert [line for line in err.splitlines() if "candles were rejected" in line] == [
        "papertrader run: 10 of 200 candles were rejected, 10 of them by rule misaligned (first: timestamp "
        f"{first} not aligned to the 60000 ms interval (5000 ms past a boundary)); timestamps must be candle open "
        "times on 60000 ms boundaries: shift them back by the offset (a file of close times is one interval late, "
        "less 1 ms) or check CANDLE_INTERVAL (see the 'candle rejected' log lines)"]
    assert code == 0 and summary["candles"] == 190 and summary["rejected_candles"] == 10
    assert summary["dominant_rejection"] == "misaligned"
    assert summary["rejection_note"].startswith("10 of 200 candles were rejected, 10 of them by rule misaligned")


def test_train_names_the_rule_that_rejected_every_candle(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from papertrader.ml.train_cli import main as train

    candles = [c._replace(ts=c.ts + 7_000) for c in synthetic_candles(60)]
    path = _file(tmp_path, HEADER + "".join(format_candle(c) for c in candles))
    code = train(["--data", path, "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and "60 of 60 candles were rejected, 60 of them by rule misaligned" in err
    assert "7000 ms past a boundary" in err and "shift them back by the offset" in err


def test_a_live_source_warns_once_when_one_rule_takes_a_high_share(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Live candles never end in a summary: the engine says it once, as it happens, naming rule, count, example."""
    from papertrader.config import load_settings
    from papertrader.engine.pipeline import Engine
    from papertrader.ledger.store import LedgerStore
    from papertrader.strategy.registry import create_strategy

    settings = load_settings({"source": "bitvavo", "state_dir": str(tmp_path / "s")})
    engine = Engine(settings.engine, settings.risk, settings.exchange, create_strategy(settings),
                    LedgerStore(tmp_path / "state.db"))
    engine.restore()
    candles = synthetic_candles(300)
    with caplog.at_level("WARNING", logger="papertrader"):
        for i, candle in enumerate(candles):
            engine.process(candle._replace(ts=candle.ts + 3_000) if i % 10 == 9 else candle)
    engine.finish()
    warnings = [r.getMessage() for r in caplog.records if "candles were rejected" in r.getMessage()]
    assert warnings == [f"BTC-EUR: 5 of 50 candles were rejected, 5 of them by rule misaligned (first: timestamp "
                        f"{candles[9].ts + 3_000} not aligned to the 60000 ms interval (3000 ms past a boundary)); "
                        "timestamps must be candle open times on 60000 ms boundaries: shift them back by the offset "
                        "(a file of close times is one interval late, less 1 ms) or check CANDLE_INTERVAL"]
    assert engine.summary()["rejected_candles"] == 30
