"""A worker SIGKILLed at random moments and restarted ends with the same files as one never interrupted.

CI runs a bounded, seeded subset; the full matrix is ``python -m tests.harness.crash --kills 20 ...`` (README).
"""

from __future__ import annotations

import pytest

from tests.conftest import synthetic_candles, write_candle_file
from tests.harness.crash import crash_matrix


def test_replay_survives_sigkill_byte_for_byte(tmp_path):
    data = write_candle_file(tmp_path / "CRASH-EUR_1m.csv", synthetic_candles(40_000, seed=5))
    report = crash_matrix(tmp_path, ["--source", "replay", "--replay-file", str(data)], kills=6, seed=3)
    assert report["kills"] == 6
    assert report["trades"] > 50
    assert report["identical"], report


def test_synthetic_survives_sigkill_byte_for_byte(tmp_path):
    report = crash_matrix(tmp_path, ["--source", "synthetic", "--seed", "9", "--max-candles", "25000"], kills=4,
                          seed=4)
    assert report["kills"] == 4
    assert report["identical"], report


@pytest.mark.slow
def test_replay_survives_twenty_sigkills(tmp_path):
    data = write_candle_file(tmp_path / "CRASH-EUR_1m.csv", synthetic_candles(60_000, seed=6))
    report = crash_matrix(tmp_path, ["--source", "replay", "--replay-file", str(data)], kills=20, seed=20)
    assert report["kills"] == 20 and report["identical"], report
