"""``<state-dir>/state.db``: the append-only ledger (SQLite, WAL) and the engine checkpoint.

Tables:
- ``meta``: what this state directory belongs to (symbol, source, strategy) and the schema version.
- ``fills``: every executed paper order, in order (append-only).
- ``marks``: every portfolio row (equity mark), in order (append-only).
- ``events``: orders rejected, candles rejected, halts and other things that happened (append-only).
- ``control``: halt/resume requests (HTTP, Telegram), each committed on its own before it is acknowledged, so
  none is lost by a crash; the checkpoint's engine state names the last one it includes, later ones are replayed
  on start.
- ``prices``: the close of every accepted candle, one row per committed batch (packed arrays, append-only), so
  that reports can show prices, buy-and-hold and per-candle equity without the input file.
- ``meta`` also keeps ``settings``: the masked effective settings of the latest start (what produced the run),
  and ``fingerprint``: the settings and input that decide results (:mod:`papertrader.ledger.fingerprint`).
- ``checkpoint``: one row: candles consumed, the source cursor, the engine's in-memory state, and the byte sizes
  of the CSV logs that match this checkpoint.

Cash and open lots are derived from ``fills`` (:meth:`LedgerStore.derive_portfolio`) and checked against the
checkpoint on every start. Everything a batch produced is written in one transaction together with the new
checkpoint, so a crash leaves either the whole batch or none of it.

``state.db-commits`` (next to the database) holds the item count of the last commit, written after each commit:
a ledger whose checkpoint is behind it lost committed batches (its ``-wal`` was deleted, or an older copy was put
back), which :meth:`LedgerStore.check_not_behind` refuses instead of silently resuming from an older state.
"""

from __future__ import annotations

import json
import os
import sqlite3
from array import array
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from papertrader.errors import PapertraderError
from papertrader.events import Fill, PortfolioSnapshot

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fills (
    id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, side TEXT NOT NULL, quantity TEXT NOT NULL, price TEXT NOT NULL,
    notional TEXT NOT NULL, fee TEXT NOT NULL, realized_pnl TEXT NOT NULL, reason TEXT NOT NULL,
    position_id INTEGER NOT NULL, cash_after TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS marks (
    id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, cash TEXT NOT NULL, position_value TEXT NOT NULL,
    equity TEXT NOT NULL, open_positions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, ts INTEGER, kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prices (
    id INTEGER PRIMARY KEY, ts BLOB NOT NULL, close BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS control (
    id INTEGER PRIMARY KEY, ts INTEGER, action TEXT NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1), items INTEGER NOT NULL, last_ts INTEGER, cursor TEXT NOT NULL,
    engine_state TEXT NOT NULL, file_sizes TEXT NOT NULL);
"""


class LedgerError(PapertraderError, RuntimeError):
    """The state database is unusable or inconsistent."""

    exit_code = 2
    keep_in_logs = True


class LedgerStore:
    """SQLite access for one worker's state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._commits_since_checkpoint = 0
        self._closed = False
        self._marker_path = path.with_name(path.name + "-commits")
        self._marker_fd: int | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # WAL checkpoints run between candles (checkpoint_if_due), never inside a commit on the decision path
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{path}: cannot open state database ({exc})") from None

    # --- identity --------------------------------------------------------------------------------------------
    def check_identity(self, identity: dict[str, str]) -> None:
        """Bind the directory to a symbol/source/strategy on first use; refuse to mix runs later."""
        stored = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if not stored:
            rows = [("schema_version", SCHEMA_VERSION), *identity.items()]
            self.db.executemany("INSERT INTO meta VALUES (?, ?)", rows)
            return
        for key, value in identity.items():
            if key in stored and stored[key] != value:
                raise LedgerError(
                    f"state directory {self.path.parent} belongs to {key.upper()}={stored[key]}, not {value}; "
                    "use another --state-dir"
                )

    def record_settings(self, settings: dict[str, Any]) -> None:
        """Keep the (masked) effective settings of this start with the ledger, for reports."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)",
                        (json.dumps(settings, sort_keys=True, default=str),))

    def stored_fingerprint(self) -> dict[str, str] | None:
        """The results fingerprint of the run this directory holds (None before the first start)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        return json.loads(row[0]) if row else None

    def record_fingerprint(self, fingerprint: dict[str, str]) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)",
                        (json.dumps(fingerprint, sort_keys=True),))

    def has_checkpoint(self) -> bool:
        """True once a batch was committed (the run has results to protect)."""
        return self.db.execute("SELECT 1 FROM checkpoint WHERE id = 1").fetchone() is not None

    # --- control ----------------------------------------------------------------------------------------------
    def append_control(self, ts: int | None, action: str, kind: str, reason: str) -> int:
        """Commit one halt/resume request now (its own transaction, outside any batch); returns its id."""
        cursor = self.db.execute("INSERT INTO control (ts, action, kind, reason) VALUES (?, ?, ?, ?)",
                                 (ts, action, kind, reason))
        return int(cursor.lastrowid or 0)

    def control_after(self, last_id: int) -> list[tuple[int, str, str, str]]:
        """Control requests with an id above ``last_id``, in order: (id, action, kind, reason)."""
        return self.db.execute("SELECT id, action, kind, reason FROM control WHERE id > ? ORDER BY id",
                               (last_id,)).fetchall()

    # --- checkpoint ------------------------------------------------------------------------------------------
    def load_checkpoint(self) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT items, last_ts, cursor, engine_state, file_sizes FROM checkpoint WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        items, last_ts, cursor, engine_state, sizes = row
        return {
            "items": items,
            "last_ts": last_ts,
            "cursor": json.loads(cursor),
            "engine_state": json.loads(engine_state),
            "file_sizes": json.loads(sizes),
        }

    def commit_batch(
        self,
        fills: Iterable[tuple[Fill, Decimal, Decimal]],
        marks: Iterable[PortfolioSnapshot],
        events: Iterable[tuple[int | None, str, str]],
        checkpoint: dict[str, Any],
        prices: tuple[array[int], array[float]] | None = None,
    ) -> None:
        """Append a batch and replace the checkpoint, atomically. ``prices``: the batch's candle open times and
        closes (int64 / float64 arrays of one length), stored packed as one row."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO fills (ts, side, quantity, price, notional, fee, realized_pnl, reason, position_id,"
                " cash_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (f.ts, f.side, str(f.quantity), str(f.price), str(notional), str(f.fee), str(f.realized_pnl),
                     f.reason, f.position_id, str(cash_after))
                    for f, notional, cash_after in fills
                ],
            )
            db.executemany(
                "INSERT INTO marks (ts, cash, position_value, equity, open_positions) VALUES (?, ?, ?, ?, ?)",
                [(m.ts, str(m.cash), str(m.position_value), str(m.equity), m.open_positions) for m in marks],
            )
            db.executemany("INSERT INTO events (ts, kind, detail) VALUES (?, ?, ?)", list(events))
            if prices is not None and len(prices[0]):
                db.execute("INSERT INTO prices (ts, close) VALUES (?, ?)", (prices[0].tobytes(), prices[1].tobytes()))
            db.execute(
                "INSERT OR REPLACE INTO checkpoint (id, items, last_ts, cursor, engine_state, file_sizes)"
                " VALUES (1, ?, ?, ?, ?, ?)",
                (
                    checkpoint["items"],
                    checkpoint["last_ts"],
                    json.dumps(checkpoint["cursor"], separators=(",", ":")),
                    json.dumps(checkpoint["engine_state"], separators=(",", ":")),
                    json.dumps(checkpoint["file_sizes"], separators=(",", ":")),
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a full disk may already have rolled it back
                db.execute("ROLLBACK")
            raise
        self._commits_since_checkpoint += 1
        self._write_marker(checkpoint["items"])

    # --- commit marker -----------------------------------------------------------------------------------
    def _write_marker(self, items: int) -> None:
        """Record the committed item count outside the database (a marker that lags behind is harmless)."""
        try:
            if self._marker_fd is None:
                self._marker_fd = os.open(self._marker_path, os.O_RDWR | os.O_CREAT, 0o644)
            os.pwrite(self._marker_fd, f"{items:020d}\n".encode("ascii"), 0)
        except OSError:
            pass

    def check_not_behind(self) -> None:
        """Raise :class:`LedgerError` when the checkpoint is older than the last commit this directory saw."""
        try:
            text = self._marker_path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return
        if not text.isdigit():
            return
        row = self.db.execute("SELECT items FROM checkpoint WHERE id = 1").fetchone()
        have = row[0] if row else 0
        if have < int(text):
            state = f"its checkpoint is at {have} items" if row else "it has no checkpoint"
            raise LedgerError(f"{self.path} is behind the last commit ({state}, the worker had committed "
                              f"{int(text)}): its -wal file was lost or an older copy was restored; restore the "
                              "complete ledger, or pass --reset-state to archive this run and start afresh")

    def checkpoint_if_due(self, every_commits: int = 200) -> None:
        """Copy the WAL back into the database file every ``every_commits`` commits (off the decision path)."""
        if self._commits_since_checkpoint >= every_commits:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._commits_since_checkpoint = 0

    # --- derivations ------------------------------------------------------------------------------------------
    def derive_portfolio(self, initial_capital: Decimal) -> tuple[Decimal, set[int]]:
        """Cash and the ids of open lots, computed from the fills alone."""
        cash = initial_capital
        open_lots: set[int] = set()
        for side, notional, fee, position_id in self.db.execute(
            "SELECT side, notional, fee, position_id FROM fills ORDER BY id"
        ):
            if side == "buy":
                cash -= Decimal(notional) + Decimal(fee)
                open_lots.add(position_id)
            else:
                cash += Decimal(notional) - Decimal(fee)
                open_lots.discard(position_id)
        return cash, open_lots

    def fill_rows(self) -> list[tuple[Any, ...]]:
        return self.db.execute(
            "SELECT ts, side, quantity, price, fee, realized_pnl, reason, notional, cash_after, position_id"
            " FROM fills ORDER BY id"
        ).fetchall()

    def fills_by_side(self) -> dict[str, int]:
        """How many committed fills each side has (``{"buy": n, "sell": m}``; a side without fills is absent).
        Reads only; counters seeded from it survive a restart."""
        return {str(side): int(count) for side, count in
                self.db.execute("SELECT side, COUNT(*) FROM fills GROUP BY side")}

    def recent_fills(self, limit: int) -> list[tuple[Any, ...]]:
        """The last ``limit`` committed fills, oldest first, as ``(ts, side, quantity, price, fee, realized_pnl,
        reason)`` with the stored values (quantities and money as the ledger's decimal strings). Reads only."""
        rows = self.db.execute("SELECT ts, side, quantity, price, fee, realized_pnl, reason FROM fills"
                               " ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return rows[::-1]

    def mark_rows(self) -> list[tuple[Any, ...]]:
        return self.db.execute(
            "SELECT ts, cash, position_value, equity, open_positions FROM marks ORDER BY id"
        ).fetchall()

    def close(self) -> None:
        """Checkpoint the WAL into the database and close it: no ``state.db-wal``/``-shm`` is left behind.
        Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._marker_fd is not None:
            os.close(self._marker_fd)
            self._marker_fd = None
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()
