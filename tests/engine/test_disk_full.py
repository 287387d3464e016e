"""A full disk stops trading cleanly with one clear error, corrupts nothing, and the worker continues when space
returns: its files end identical to a run that never saw the problem."""

from __future__ import annotations

import errno
import itertools
import sqlite3

from papertrader.ledger.csv_logs import CsvLog
from papertrader.ledger.store import LedgerStore
from tests.conftest import synthetic_candles, write_candle_file
from tests.engine.helpers import run_replay


def test_full_disk_pauses_trading_and_loses_nothing(tmp_path, monkeypatch):
    data = write_candle_file(tmp_path / "DISK-EUR_1m.csv", synthetic_candles(6000, seed=8))
    run_replay(tmp_path / "clean", data, COMMIT_EVERY_CANDLES=250)

    real_flush, real_commit = CsvLog.flush, LedgerStore.commit_batch
    flushes, commits = itertools.count(), itertools.count()

    def failing_flush(self: CsvLog) -> int:
        if 40 <= next(flushes) < 46:  # the disk fills up during a CSV write: half a row may hit the file
            handle = self._file
            handle.seek(self._committed_size)
            handle.write("1700000000000,FULL")
            handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_flush(self)

    def failing_commit(self: LedgerStore, *args, **kwargs) -> None:
        if 12 <= next(commits) < 15:
            raise sqlite3.OperationalError("database or disk is full")
        real_commit(self, *args, **kwargs)

    monkeypatch.setattr(CsvLog, "flush", failing_flush)
    monkeypatch.setattr(LedgerStore, "commit_batch", failing_commit)
    summary = run_replay(tmp_path / "full", data, COMMIT_EVERY_CANDLES=250, STORAGE_RETRY_SECONDS=0.01)

    assert summary["finished"]
    for name in ("trades.csv", "portfolio.csv"):
        assert (tmp_path / "full" / "logs" / name).read_bytes() == (tmp_path / "clean" / "logs" / name).read_bytes()
    log = (tmp_path / "full" / "logs" / "errors.log").read_text()
    assert log.count("cannot persist the ledger") == 2  # one line per outage, not one per retry
    assert "No space left on device" in log and "database or disk is full" in log
    main_log = (tmp_path / "full" / "logs" / "enhanced_paper_trader.log").read_text()
    assert main_log.count("storage works again") == 2
    db = sqlite3.connect(tmp_path / "full" / "state.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
