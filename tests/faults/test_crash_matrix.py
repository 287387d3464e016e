"""Crash matrix (tests/harness/crash.py): SIGKILL at seeded random moments, restart, compare with a run never
interrupted -- trades.csv and portfolio.csv byte for byte, the ledger (fills, marks) row by row.

CI: replay and synthetic run in tests/engine/test_crash_resume.py (10 kills); here the fake-live scenario (a worker
on --source bitvavo against ``papertrader fake-exchange``, killed in start-up, warm-up / restart backfill and the
stream). Full matrix (>= 100 kills over the three sources): ``python -m pytest -m slow tests/faults`` or
``python -m tests.harness.crash --full --kills 40`` (docs/proof.md).
"""

from __future__ import annotations

import json

import pytest

from tests.harness.crash import full_matrix, live_crash_matrix


def test_fake_live_survives_sigkill_with_backfill(tmp_path):
    report = live_crash_matrix(tmp_path, kills=5, seed=11, max_candles=800)
    print(f"\nCRASH-LIVE {json.dumps(report)}")
    assert report["kills_before_first_finish"] == 5  # every kill hit a run that was still going
    assert report["landed"].get("loop", 0) >= 1  # at least one in the candle loop itself
    assert report["contiguous_slice"] and report["recorded"] == 800  # no candle lost or invented
    assert report["backfilled_restarts"] >= 1  # restarts fetched what they missed from REST
    assert report["trades"] > 0
    assert report["identical"], report


@pytest.mark.slow
def test_full_crash_matrix(tmp_path):
    report = full_matrix(tmp_path, kills_per_source=40, seed=1)
    print(f"\nCRASH-FULL {json.dumps(report)}")
    assert report["kills"] >= 120
    assert report["identical"], report
