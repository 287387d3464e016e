"""CsvLog.open brings a file back to its last commit, or starts it again with its header."""

from __future__ import annotations

from papertrader.ledger.csv_logs import CsvLog

HEADER = "timestamp_ms,open\n"


def test_a_recording_deleted_since_its_commit_starts_again_with_its_header(tmp_path):
    path = tmp_path / "recording.csv"
    log = CsvLog(path, HEADER)
    log.open(None, None)
    log.append("1,10\n")
    committed = log.flush()
    log.close()
    assert path.read_text() == HEADER + "1,10\n" and committed == len(HEADER) + 5
    path.unlink()
    log = CsvLog(path, HEADER)
    log.open(committed, None)  # a recording: the ledger cannot rebuild its rows
    log.append("2,11\n")
    log.flush()
    log.close()
    assert path.read_text() == HEADER + "2,11\n"  # readable by --source replay again


def test_rows_past_the_commit_are_cut_back(tmp_path):
    path = tmp_path / "trades.csv"
    path.write_text(HEADER + "1,10\n" + "2,half-writ")
    log = CsvLog(path, HEADER)
    log.open(len(HEADER) + 5, None)
    log.close()
    assert path.read_text() == HEADER + "1,10\n"
