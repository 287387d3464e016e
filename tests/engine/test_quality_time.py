"""Time sanity in the quality gate: a mistyped timestamp is rejected without poisoning the candles after it,
timestamps outside [1970, 2100) are rejected (no OverflowError), and a file that mixes candle intervals exits 2
naming the rows."""
from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from papertrader.cli import main
from papertrader.market.candle import Candle
from papertrader.market.candle_file import HEADER, format_candle
from papertrader.quality import DataQualityGate

MIN = 60_000
HOUR = 3_600_000
START = 1_700_000_000_000 - 1_700_000_000_000 % HOUR


def _walk(n: int, step: int = MIN, start: int = START) -> list[Candle]:
    out, price, rng = [], 100.0, random.Random(3)
    for i in range(n):
        close = price * (1 + rng.gauss(0.0, 0.001))
        out.append(Candle(start + i * step, price, max(price, close) * 1.001, min(price, close) * 0.999, close, 5.0))
        price = close
    return out


def _year(candle: Candle, years: int) -> Candle:
    return candle._replace(ts=candle.ts + years * 365 * 86_400_000 - (years * 365 * 86_400_000) % MIN)


def test_a_timestamp_typo_is_rejected_and_later_candles_are_still_accepted():
    candles = _walk(100)
    for typo in (_year(candles[50], 458),  # 2023 -> 2481: outside the sane range
                 _year(candles[50], 29)):  # 2023 -> 2052: in range, but a 29-year jump
        gate = DataQualityGate(MIN)
        feed = candles[:50] + [typo] + candles[51:]
        verdicts = [gate.check(c) for c in feed]
        assert verdicts[50].status == "rejected"
        assert [v.status for i, v in enumerate(verdicts) if i != 50] == ["ok"] * 99
        assert gate.counters.rejected == 1


def test_a_real_jump_is_accepted_once_the_next_candle_confirms_it():
    before, after = _walk(40), _walk(40, start=START + 90 * 86_400_000)  # a 90-day outage
    gate = DataQualityGate(MIN)
    verdicts = [gate.check(c).status for c in before + after]
    assert verdicts[40] == "rejected" and "rejected" not in verdicts[41:]  # (the first may be a suspect move)
    assert gate.counters.reasons == {"time_jump": 1}


def test_timestamps_outside_the_sane_range_are_rejected_with_a_reason():
    gate = DataQualityGate(MIN)
    for ts in (-MIN, 2**63 + MIN * 10, 10**30 * MIN, 4_102_444_800_000):
        verdict = gate.check(Candle(ts, 1.0, 1.0, 1.0, 1.0, 1.0))
        assert verdict.status == "rejected" and "outside the sane range" in verdict.reasons[0], ts
    assert gate.counters.reasons == {"timestamp_out_of_range": 4}


def _replay(tmp_path: Path, rows: list[str], *args: str) -> int:
    path = tmp_path / "in_BTC-EUR.csv"
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return main(["run", "--http-port", "0", "--ws-port", "0", "--source", "replay", "--replay-file", str(path),
                 "--state-dir", str(tmp_path / "s"), *args])


def test_int64_overflow_and_year_2482_in_a_file_are_rejected_rows_not_crashes(tmp_path, capsys):
    rows = [format_candle(c) for c in _walk(300)]
    rows[100] = "99999999999999999999999" + rows[100][rows[100].index(","):]
    rows[200] = str(_year(_walk(300)[200], 459).ts) + rows[200][rows[200].index(","):]
    assert _replay(tmp_path, rows, "--interval", "1m") == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    summary = out.out.splitlines()[-1]
    assert '"candles":298' in summary and '"rejected_candles":2' in summary, summary
    events = sqlite3.connect(tmp_path / "s" / "state.db").execute(
        "SELECT ts, detail FROM events WHERE kind = 'candle_rejected'").fetchall()
    assert len(events) == 2 and all(ts is None and "sane range" in detail for ts, detail in events)
    # and the restart resumes instead of crashing on the stored state
    assert _replay(tmp_path, rows, "--interval", "1m") == 0


def test_a_file_mixing_1h_and_1m_rows_exits_2_naming_the_rows(tmp_path, capsys):
    hourly = _walk(200, step=HOUR)
    minutes = _walk(100, start=hourly[-1].ts + HOUR)
    assert _replay(tmp_path, [format_candle(c) for c in hourly + minutes]) == 2  # interval inferred: 1h
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "the input mixes candle intervals: candles timestamp_ms" in line and "are 1m apart, CANDLE_INTERVAL is 1h" \
        in line, line
    assert str(minutes[0].ts) in line or str(hourly[-1].ts) in line, line


def test_a_1m_file_with_hourly_rows_exits_2(tmp_path, capsys):
    minutes = _walk(300)
    hourly = _walk(10, step=HOUR, start=minutes[-1].ts + HOUR)
    assert _replay(tmp_path, [format_candle(c) for c in minutes + hourly]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "are 1h apart, CANDLE_INTERVAL is 1m" in line, line


def test_ordinary_gaps_are_not_mixed_intervals(tmp_path, capsys):
    minutes = _walk(300)
    feed = minutes[:100] + minutes[160:170] + minutes[230:]  # two one-hour gaps, not in a row
    assert _replay(tmp_path, [format_candle(c) for c in feed]) == 0
