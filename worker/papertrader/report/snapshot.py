"""Read one state directory, read-only, as a consistent snapshot.

The ledger (``state.db``) is copied into memory with SQLite's backup API from a ``mode=ro`` connection, so a
running worker's directory can be read while it commits, and nothing in the directory is ever written. Without a
``state.db`` (for example CSVs copied out of a pod), the run is read from ``logs/trades.csv`` and
``logs/portfolio.csv``; there is then no per-candle price series, and the report says so.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from papertrader.errors import PapertraderError


class ReportInputError(PapertraderError, ValueError):
    """A state directory cannot be read as a run."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class FillRow:
    """One executed paper order, as in trades.csv."""

    ts: int
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    reason: str
    notional: Decimal
    cash_after: Decimal
    position_id: int


@dataclass(frozen=True, slots=True)
class MarkRow:
    """One portfolio row, as in portfolio.csv."""

    ts: int
    cash: Decimal
    position_value: Decimal
    equity: Decimal
    open_positions: int


@dataclass(slots=True)
class RunData:
    """Everything a report needs from one state directory."""

    name: str
    path: Path
    source: str  # "ledger" or "csv"
    meta: dict[str, str]
    settings: dict[str, Any]
    summary: dict[str, Any] | None
    fills: list[FillRow]
    marks: list[MarkRow]
    events: list[tuple[int | None, str, str]]
    price_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    closes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))

    @property
    def symbol(self) -> str:
        return self.meta.get("symbol") or (self.summary or {}).get("symbol", "?")


def load_run(state_dir: Path) -> RunData:
    """Read ``state_dir`` (never modified). Raises :class:`ReportInputError` with one clear line."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        raise ReportInputError(f"{state_dir}: not a state directory (no such directory)")
    summary = _read_summary(state_dir / "summary.json")
    db_path = state_dir / "state.db"
    if db_path.is_file():
        return _from_ledger(state_dir, db_path, summary)
    if (state_dir / "logs" / "trades.csv").is_file():
        return _from_csvs(state_dir, summary)
    raise ReportInputError(f"{state_dir}: no state.db and no logs/trades.csv: not a papertrader state directory")


def _read_summary(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportInputError(f"{path}: unreadable summary ({exc})") from None
    return value if isinstance(value, dict) else None


def _snapshot_connection(db_path: Path) -> sqlite3.Connection:
    """An in-memory copy of the ledger taken in one read transaction (consistent while a worker writes)."""
    try:
        source = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            memory = sqlite3.connect(":memory:")
            source.backup(memory)
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise ReportInputError(f"{db_path}: cannot read the ledger ({exc})") from None
    return memory


def _from_ledger(state_dir: Path, db_path: Path, summary: dict[str, Any] | None) -> RunData:
    db = _snapshot_connection(db_path)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "fills" not in tables:
            raise ReportInputError(f"{db_path}: not a papertrader ledger (no fills table)")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        fills = [
            FillRow(ts, side, Decimal(qty), Decimal(price), Decimal(fee), Decimal(pnl), reason, Decimal(notional),
                    Decimal(cash_after), position_id)
            for ts, side, qty, price, fee, pnl, reason, notional, cash_after, position_id in db.execute(
                "SELECT ts, side, quantity, price, fee, realized_pnl, reason, notional, cash_after, position_id"
                " FROM fills ORDER BY id")
        ]
        marks = [
            MarkRow(ts, Decimal(cash), Decimal(value), Decimal(equity), open_positions)
            for ts, cash, value, equity, open_positions in db.execute(
                "SELECT ts, cash, position_value, equity, open_positions FROM marks ORDER BY id")
        ]
        events = list(db.execute("SELECT ts, kind, detail FROM events ORDER BY id"))
        ts_parts, close_parts = [], []
        if "prices" in tables:
            for ts_blob, close_blob in db.execute("SELECT ts, close FROM prices ORDER BY id"):
                ts_parts.append(np.frombuffer(ts_blob, dtype=np.int64))
                close_parts.append(np.frombuffer(close_blob, dtype=np.float64))
    finally:
        db.close()
    settings = json.loads(meta.pop("settings", "{}"))
    return RunData(
        name=state_dir.name, path=state_dir, source="ledger", meta=meta, settings=settings, summary=summary,
        fills=fills, marks=marks, events=events,
        price_ts=np.concatenate(ts_parts) if ts_parts else np.zeros(0, dtype=np.int64),
        closes=np.concatenate(close_parts) if close_parts else np.zeros(0, dtype=np.float64),
    )


def _from_csvs(state_dir: Path, summary: dict[str, Any] | None) -> RunData:
    logs = state_dir / "logs"
    fills = [
        FillRow(int(row["timestamp_ms"]), row["side"], Decimal(row["quantity"]), Decimal(row["price"]),
                Decimal(row["fee"]), Decimal(row["realized_pnl"]), row["reason"], Decimal(row["notional"]),
                Decimal(row["cash_after"]), int(row["position_id"]))
        for row in _csv_rows(logs / "trades.csv")
    ]
    marks = [
        MarkRow(int(row["timestamp_ms"]), Decimal(row["cash"]), Decimal(row["position_value"]),
                Decimal(row["equity"]), int(row["open_positions"]))
        for row in _csv_rows(logs / "portfolio.csv")
    ]
    symbol = (summary or {}).get("symbol", "")
    return RunData(name=state_dir.name, path=state_dir, source="csv", meta={"symbol": symbol}, settings={},
                   summary=summary, fills=fills, marks=marks, events=[])


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, ValueError, KeyError) as exc:
        raise ReportInputError(f"{path}: unreadable ({exc})") from None
