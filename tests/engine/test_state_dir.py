"""A state directory holds exactly one run: an exclusive lock (a second worker exits 2 naming the first one's
pid), a results fingerprint (a restart with other result-deciding settings or another input file exits 2 naming
what differs, unless --reset-state archives the old run), and only regular files as replay input."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from papertrader.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "bitvavo_BTC-EUR_1h_sample.csv"


def _cli(state: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "papertrader.cli", "run", "--state-dir", str(state), "--http-port", "0",
            "--ws-port", "0", *args]


def _replay(state: Path, replay: Path = SAMPLE, *args: str) -> int:
    return main(["run", "--http-port", "0", "--ws-port", "0", "--source", "replay", "--replay-file", str(replay),
                 "--state-dir", str(state), *args])


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = {line.split("papertrader: ", 1)[-1] for line in err.splitlines() if line.strip()}
    assert len(lines) == 1, err  # cli.py prints it and logs it (no log file yet): the same one line
    return lines.pop()


# --- lock ---------------------------------------------------------------------------------------------------
def test_second_worker_on_a_state_dir_exits_2_naming_the_first_ones_pid(tmp_path):
    state = tmp_path / "state"
    first = subprocess.Popen(_cli(state, "--source", "synthetic", "--symbol", "BTC-EUR", "--speed", "30"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (state / "state.db").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # a commit or two
        second = subprocess.run(_cli(state, "--source", "synthetic", "--symbol", "BTC-EUR", "--max-candles", "5"),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        line = _one_error_line(second.stderr)
        assert f"in use by another worker (pid {first.pid})" in line, line
        assert first.poll() is None, "the first worker must keep running"
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=30)
    assert first.returncode == 0, err[-2000:]
    trades = (state / "logs" / "trades.csv").read_text()
    assert trades.count("timestamp_ms,") == 1  # one header: nobody else wrote into the logs
    # the lock goes with the process: a later start resumes the first worker's run
    resumed = subprocess.run(_cli(state, "--source", "synthetic", "--symbol", "BTC-EUR", "--max-candles", "1"),
                             capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_lock_is_released_when_the_worker_is_killed(tmp_path):
    state = tmp_path / "state"
    first = subprocess.Popen(_cli(state, "--source", "synthetic", "--symbol", "BTC-EUR", "--speed", "30"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (state / "state.db").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    first.kill()
    first.wait(timeout=30)
    again = subprocess.run(_cli(state, "--source", "synthetic", "--symbol", "BTC-EUR", "--max-candles", "1"),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr[-2000:]


# --- fingerprint ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value"), [("FEE_TAKER", "0.001"), ("SLIPPAGE_PCT", "0.002"),
                                             ("QUOTE_DECIMALS", "4"), ("CANDLE_INTERVAL", "1m"),
                                             ("SMA_FAST", "5"), ("INITIAL_CAPITAL", "5000")])
def test_restart_with_another_result_setting_exits_2_naming_it(tmp_path, capsys, monkeypatch, name, value):
    state = tmp_path / "s"
    assert _replay(state, SAMPLE, "--max-candles", "1500") == 0
    trades = (state / "logs" / "trades.csv").read_bytes()
    capsys.readouterr()
    monkeypatch.setenv(name, value)
    assert _replay(state) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"holds a run made with other settings: {name} " in line and f"-> {value}" in line, line
    assert "--reset-state" in line
    assert (state / "logs" / "trades.csv").read_bytes() == trades  # nothing touched


def test_settings_that_do_not_change_results_may_change(tmp_path, capsys, monkeypatch):
    state = tmp_path / "s"
    assert _replay(state, SAMPLE, "--max-candles", "1500") == 0
    monkeypatch.setenv("COMMIT_EVERY_CANDLES", "77")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    assert _replay(state, SAMPLE, "--max-candles", "2000") == 0


def test_replay_file_with_same_size_and_head_is_another_input(tmp_path, capsys):
    other = tmp_path / "other.csv"
    data = bytearray(SAMPLE.read_bytes())
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[1]
    edited = last.replace(b".", b"5", 1) if b"." in last else last  # same length, other price
    assert edited != last and len(edited) == len(last)
    data[len(data) - len(last) - 1:len(data) - 1] = edited
    other.write_bytes(bytes(data))
    assert other.stat().st_size == SAMPLE.stat().st_size
    state = tmp_path / "s"
    assert _replay(state, SAMPLE, "--max-candles", "1000") == 0
    capsys.readouterr()
    assert _replay(state, other) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "input data (REPLAY_FILE content or source) replay sha256:" in line, line


def test_moved_replay_file_with_the_same_content_resumes(tmp_path, capsys):
    moved = tmp_path / "moved_BTC-EUR.csv"
    moved.write_bytes(SAMPLE.read_bytes())
    state = tmp_path / "s"
    assert _replay(state, SAMPLE, "--max-candles", "1000") == 0
    assert _replay(state, moved, "--max-candles", "2000") == 0


def test_reset_state_archives_the_old_run_and_starts_afresh(tmp_path, capsys, monkeypatch):
    state = tmp_path / "s"
    assert _replay(state, SAMPLE, "--max-candles", "1500") == 0
    old_fills = sqlite3.connect(state / "state.db").execute("SELECT count(*), sum(fee) FROM fills").fetchone()
    monkeypatch.setenv("FEE_TAKER", "0.001")
    assert _replay(state, SAMPLE, "--max-candles", "1500", "--reset-state") == 0
    archives = sorted((state / "archive").iterdir())
    assert len(archives) == 1
    archived = sqlite3.connect(archives[0] / "state.db").execute("SELECT count(*), sum(fee) FROM fills").fetchone()
    assert archived == old_fills
    assert (archives[0] / "logs" / "trades.csv").is_file()
    new = sqlite3.connect(state / "state.db").execute("SELECT count(*), sum(fee) FROM fills").fetchone()
    assert new[0] > 0 and new[1] < old_fills[1]  # the new fee rate, from candle one
    # same settings again: RESET_STATE changes nothing when the run matches
    assert _replay(state, SAMPLE, "--max-candles", "2000", "--reset-state") == 0
    assert len(list((state / "archive").iterdir())) == 1


def test_named_pipe_as_replay_file_is_refused_with_one_line(tmp_path, capsys):
    fifo = tmp_path / "candles_BTC-EUR.csv"
    os.mkfifo(fifo)
    proc = subprocess.run(_cli(tmp_path / "s", "--source", "replay", "--replay-file", str(fifo)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert f"{fifo}: not a regular file" in line, line
