"""The ledger is the only truth: CSVs that differ from it in any byte are rebuilt from it, a ledger that lost
committed batches (deleted WAL, deleted or older state.db) is refused instead of silently resuming from an older
state, and damaged storage ends in one line and exit 2."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from papertrader.cli import main
from papertrader.ledger.csv_logs import CsvLog

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "bitvavo_BTC-EUR_1h_sample.csv"


def _replay(state: Path, *args: str) -> int:
    return main(["run", "--http-port", "0", "--ws-port", "0", "--source", "replay", "--replay-file", str(SAMPLE),
                 "--state-dir", str(state), *args])


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = {line.split("papertrader: ", 1)[-1] for line in err.splitlines()
             if line.strip() and " WARNING " not in line and " INFO " not in line}
    assert len(lines) == 1, err
    return lines.pop()


def test_same_length_edit_and_inserted_row_in_trades_csv_are_rebuilt_from_the_ledger(tmp_path, capsys):
    state = tmp_path / "s"
    assert _replay(state, "--max-candles", "2000") == 0
    trades = state / "logs" / "trades.csv"
    original = trades.read_bytes()
    rows = original.splitlines(keepends=True)
    assert len(rows) > 3
    edited = rows[2].replace(b"buy", b"BUY").replace(b"sell", b"SELL")
    assert edited != rows[2] and len(edited) == len(rows[2])
    trades.write_bytes(b"".join(rows[:2] + [edited] + rows[3:]))  # same length, other content
    assert _replay(state, "--max-candles", "2000") == 0
    assert trades.read_bytes() == original
    trades.write_bytes(b"".join(rows[:2] + [b"1679788800000,BTC-EUR,buy,1,1,0,0,x,1,1,99\n"] + rows[2:]))
    assert _replay(state, "--max-candles", "2000") == 0  # an inserted row: no cut, no fused rows
    assert trades.read_bytes() == original
    assert "differed from the ledger" in (state / "logs" / "enhanced_paper_trader.log").read_text()


def _killed_mid_run(state: Path) -> None:
    """A paced worker (a commit per candle) SIGKILLed after a few commits: they sit in state.db-wal."""
    proc = subprocess.Popen([sys.executable, "-m", "papertrader.cli", "run", "--state-dir", str(state), "--source",
                             "synthetic", "--symbol", "BTC-EUR", "--speed", "600", "--http-port", "0", "--ws-port",
                             "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (state / "state.db-commits").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (state / "state.db-wal").exists()


def _restart(state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "papertrader.cli", "run", "--state-dir", str(state), "--source",
                           "synthetic", "--symbol", "BTC-EUR", "--max-candles", "5", "--http-port", "0",
                           "--ws-port", "0", *args], capture_output=True, text=True, timeout=120)


def test_a_lost_wal_is_an_error_not_a_silent_resume_from_an_older_state(tmp_path):
    state = tmp_path / "s"
    _killed_mid_run(state)
    (state / "state.db-wal").unlink()
    (state / "state.db-shm").unlink(missing_ok=True)
    proc = _restart(state)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _one_error_line(proc.stderr)
    assert "is behind the last commit" in line and "-wal file was lost" in line, line
    # --reset-state archives the damaged run and starts afresh
    proc = _restart(state, "--reset-state")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((state / "archive").iterdir())) == 1


def test_a_deleted_ledger_is_an_error_not_a_fresh_start(tmp_path):
    state = tmp_path / "s"
    _killed_mid_run(state)
    trades = (state / "logs" / "portfolio.csv").read_bytes()
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (state / name).unlink(missing_ok=True)
    proc = _restart(state)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "it has no checkpoint" in _one_error_line(proc.stderr)
    assert (state / "logs" / "portfolio.csv").read_bytes() == trades  # the history is not overwritten


def test_garbage_pages_in_state_db_are_one_line_and_exit_2(tmp_path, capsys):
    state = tmp_path / "s"
    assert _replay(state, "--max-candles", "2000") == 0
    db = state / "state.db"
    size = db.stat().st_size
    assert size > 8 * 4096
    with open(db, "r+b") as handle:
        for page in range(1, size // 4096):
            handle.seek(page * 4096)
            handle.write(os.urandom(4096))
    capsys.readouterr()
    assert _replay(state) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(db) in line and ("damaged" in line or "cannot open state database" in line), line


def test_full_disk_while_rebuilding_a_csv_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    state = tmp_path / "s"
    assert _replay(state, "--max-candles", "2000") == 0
    (state / "logs" / "trades.csv").unlink()

    def full_disk(self: CsvLog, content: bytes) -> None:
        with open(self.path.with_suffix(".tmp"), "wb") as handle:
            handle.write(content[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CsvLog, "_rewrite", full_disk)
    capsys.readouterr()
    assert _replay(state) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "trades.csv: cannot rebuild it from the ledger (No space left on device)" in line, line
    monkeypatch.undo()
    assert _replay(state, "--max-candles", "2000") == 0  # space is back: rebuilt
    assert (state / "logs" / "trades.csv").stat().st_size > 100
