"""``trades.csv`` and ``portfolio.csv``: append-only views of the ledger, crash-safe.

Rows are buffered and written (and flushed) right before the ledger commit that contains them; the commit records
each file's byte size. On start a file longer than its recorded size is truncated (rows of a batch whose commit
never happened: they will be produced again), and a file whose content differs from the database in any byte
(missing, shorter, edited) is rebuilt from it. So after any crash the files hold neither duplicates nor
half-written rows, and they always say what the ledger says.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from papertrader.events import Fill, PortfolioSnapshot
from papertrader.ledger.store import LedgerError

log = logging.getLogger("papertrader.ledger")

TRADES_HEADER = "timestamp_ms,symbol,side,quantity,price,fee,realized_pnl,reason,notional,cash_after,position_id\n"
PORTFOLIO_HEADER = "timestamp_ms,cash,position_value,equity,open_positions\n"


def trade_row(symbol: str, ts: int, side: str, quantity: Any, price: Any, fee: Any, pnl: Any, reason: str,
              notional: Any, cash_after: Any, position_id: int) -> str:
    return f"{ts},{symbol},{side},{quantity},{price},{fee},{pnl},{reason},{notional},{cash_after},{position_id}\n"


def fill_row(fill: Fill, notional: Any, cash_after: Any) -> str:
    return trade_row(fill.symbol, fill.ts, fill.side, fill.quantity, fill.price, fill.fee, fill.realized_pnl,
                     fill.reason, notional, cash_after, fill.position_id)


def portfolio_row(ts: int, cash: Any, position_value: Any, equity: Any, open_positions: int) -> str:
    return f"{ts},{cash},{position_value},{equity},{open_positions}\n"


def snapshot_row(snapshot: PortfolioSnapshot) -> str:
    return portfolio_row(snapshot.ts, snapshot.cash, snapshot.position_value, snapshot.equity,
                         snapshot.open_positions)


class CsvLog:
    """One append-only CSV file with a header, synchronised to ledger commits.

    Rows appended since the last confirmed commit stay in memory; :meth:`flush` rewrites them after the committed
    end of the file, so a flush that failed half-way (a full disk) or whose ledger commit failed can simply be
    repeated without leaving duplicate or partial rows.
    """

    def __init__(self, path: Path, header: str) -> None:
        self.path = path
        self.header = header
        self._pending: list[str] = []
        self._file: Any = None
        self._committed_size = 0

    def open(self, committed_size: int | None, rebuild_rows: Callable[[], Iterable[str]] | None) -> None:
        """Open for appending, first making the file match the last commit (``None``: nothing committed yet).

        Rows written after the commit are cut off. With ``rebuild_rows`` (the ledger's rows) the file's content is
        then compared with the ledger and rewritten from it when it differs in any byte (a lost, shortened or
        edited file: the ledger is the only truth); without it (a recording, which the ledger does not hold) the
        file is kept as it is. A rewrite that fails (a full disk) raises :class:`LedgerError` (one line)."""
        try:
            self._align(committed_size, rebuild_rows)
            self._file = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot rebuild it from the ledger ({exc.strerror or exc}); free disk "
                              "space (or make the state directory writable) and start again") from None
        self._committed_size = self._file.tell()

    def _align(self, committed_size: int | None, rebuild_rows: Callable[[], Iterable[str]] | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        actual = self.path.stat().st_size if self.path.exists() else -1
        if committed_size is None:
            if actual > len(self.header):
                log.warning("%s exists but this state directory has no record of it: starting it afresh", self.path)
            self._rewrite(self.header.encode("utf-8"))
            return
        if actual > committed_size:
            with open(self.path, "r+b") as handle:
                handle.truncate(committed_size)
        if rebuild_rows is not None:
            expected = (self.header + "".join(rebuild_rows())).encode("utf-8")
            if actual < 0 or self.path.read_bytes() != expected:
                self._rewrite(expected)
                log.warning("%s %s: rebuilt from the ledger", self.path,
                            "was missing" if actual < 0 else "differed from the ledger (edited, shortened or damaged)")
        elif actual < 0:  # a recording deleted since the last commit: it starts again, with its header
            log.warning("%s was deleted since the last commit: starting it again", self.path)
            self._rewrite(self.header.encode("utf-8"))

    def _rewrite(self, content: bytes) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(content)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def append(self, row: str) -> None:
        self._pending.append(row)

    def flush(self) -> int:
        """Write the rows since the last confirmed commit after the committed end; returns the size to record."""
        if not self._pending:
            return self._committed_size
        handle = self._file
        handle.seek(self._committed_size)
        handle.truncate()
        handle.writelines(self._pending)
        handle.flush()
        return handle.tell()

    def committed(self, size: int) -> None:
        """The ledger commit that recorded ``size`` succeeded: forget the rows it contains."""
        self._committed_size = size
        self._pending.clear()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
