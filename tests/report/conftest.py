"""Finished replays of the real sample (with its two gaps and one rejected row) for the report tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REAL_SAMPLE


def run_replay(tmp: Path, name: str, *extra: str, candle_file: Path | None = None) -> Path:
    """``papertrader run --source replay`` into ``tmp/name``; returns the state directory."""
    state_dir = tmp / name
    done = subprocess.run(
        [sys.executable, "-m", "papertrader.cli", "run", "--source", "replay", "--replay-file",
         str(candle_file or REAL_SAMPLE), "--state-dir", str(state_dir), "--http-port", "0", "--ws-port", "0",
         *extra], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return state_dir


def sample_with_bad_row(tmp: Path) -> Path:
    """The real sample with one row's close replaced by NaN: a rejected candle that has a timestamp."""
    lines = REAL_SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    ts, opening, high, low, _close, volume = lines[1500].rstrip("\n").split(",")
    lines[1500] = ",".join([ts, opening, high, low, "nan", volume]) + "\n"
    path = tmp / "sample_bad_row.csv"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def replay_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two finished runs on the same candles: the default risk rules, and tighter stops and targets."""
    tmp = tmp_path_factory.mktemp("report-runs")
    bad = sample_with_bad_row(tmp)
    first = run_replay(tmp, "sma-default", "--symbol", "BTC-EUR", candle_file=bad)
    env_second = ["--symbol", "BTC-EUR", "--config", str(_config(tmp))]
    second = run_replay(tmp, "sma-tight", *env_second, candle_file=bad)
    return first, second


def _config(tmp: Path) -> Path:
    path = tmp / "tight.yaml"
    path.write_text("STOP_LOSS_PCT: 0.004\nTAKE_PROFIT_PCT: 0.006\nTRAILING_STOP_PCT: 0\n", encoding="utf-8")
    return path
