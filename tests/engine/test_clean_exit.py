"""Every clean way out of ``papertrader run`` closes the ledger: no state.db-wal / state.db-shm is left behind;
an unwritable state directory is one line naming it and exit 2."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "bitvavo_BTC-EUR_1h_sample.csv"


def _cli(state: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "papertrader.cli", "run", "--state-dir", str(state), "--strategy", "sma-cross",
            "--http-port", "0", "--ws-port", "0", *args]


def _assert_closed(state: Path) -> None:
    assert (state / "state.db").is_file()
    assert not (state / "state.db-wal").exists() and not (state / "state.db-shm").exists(), sorted(os.listdir(state))


@pytest.mark.parametrize("args", [("--source", "synthetic", "--symbol", "BTC-EUR", "--max-candles", "120"),
                                  ("--source", "replay", "--replay-file", str(SAMPLE))],
                         ids=["max-candles", "end-of-replay"])
def test_exit_closes_ledger(tmp_path, args):
    state = tmp_path / "state"
    proc = subprocess.run(_cli(state, *args), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _assert_closed(state)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_ledger(tmp_path, sig):
    state = tmp_path / "state"
    proc = subprocess.Popen(_cli(state, "--source", "synthetic", "--symbol", "BTC-EUR"),
                            env={**os.environ, "SPEED_FACTOR": "3600"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not (state / "state.db-wal").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (state / "state.db-wal").exists(), "worker never opened its ledger"
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 130), err[-2000:]
    _assert_closed(state)


def test_unwritable_state_dir_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "not-a-dir"  # works as root too, where mode bits do not stop writes
    blocker.write_text("x")
    state = blocker / "state"
    proc = subprocess.run(_cli(state, "--source", "synthetic", "--symbol", "BTC-EUR", "--max-candles", "5"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].endswith(f"state directory {state} is not writable (Not a directory); mount "
                                                 "a writable volume there or set STATE_DIR"), proc.stderr


@pytest.mark.parametrize("existing", [True, False], ids=["earlier-run", "fresh"])
def test_read_only_state_dir_is_one_line_and_exit_2(tmp_path, existing):
    """A state directory on a read-only mount (a real one: a read-only bind mount in a private mount namespace,
    since mode bits do not stop root): one line naming it, exit 2, no traceback, the earlier run untouched."""
    state = tmp_path / "state"
    if existing:
        first = subprocess.run(_cli(state, "--source", "synthetic", "--symbol", "BTC-EUR", "--max-candles", "60"),
                               capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr[-2000:]
        target, before = state, (state / "state.db").read_bytes()
    else:
        target = tmp_path / "ro"
        target.mkdir()
        state = target / "state"
    cli = " ".join(_cli(state, "--source", "synthetic", "--symbol", "BTC-EUR", "--max-candles", "90"))
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {target} {target} && exec {cli}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].endswith(f"state directory {state} is not writable (Read-only file "
                                                 "system); mount a writable volume there or set STATE_DIR"), lines
    if existing:
        assert (state / "state.db").read_bytes() == before
