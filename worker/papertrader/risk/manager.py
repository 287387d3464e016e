"""Entry limits, decision-time exits and portfolio guards for one symbol.

Entries are refused while any of these holds: a halt (max drawdown, daily loss, or an operator/manual halt),
MAX_POSITIONS or MAX_POSITIONS_PER_SYMBOL open lots, the cooldown after the last close, or the daily entry cap
(MAX_DAILY_TRADES_PER_SYMBOL per UTC day). Exits decided at a candle's close (filled at the next open): the
strategy's sell signal once MIN_HOLD_TIME_MINUTES have passed, and the time exit at MAX_HOLD_HOURS. Guards: when
equity falls MAX_DAILY_LOSS_PCT below the day's starting equity, entries stop until the next UTC day; when it falls
MAX_DRAWDOWN_PCT below its peak, entries stop until a person resumes the worker.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from papertrader.ledger.portfolio import Lot
from papertrader.ledger.returns import drawdown as drawdown_from

DAY_MS = 86_400_000
MINUTE_MS = 60_000
_NONE: list[str] = []


@dataclass
class RiskLimits:
    max_positions: int
    max_positions_per_symbol: int
    min_hold_ms: int
    max_hold_ms: int  # 0 = no time exit
    cooldown_ms: int
    max_daily_entries: int  # 0 = no cap
    max_daily_loss_pct: float  # 0 = off
    max_drawdown_pct: float  # 0 = off


@dataclass
class RiskState:
    day: int = -1
    entries_today: int = 0
    day_start_equity: float = 0.0
    last_equity: float = 0.0
    last_close_ts: int | None = None
    peak_equity: float = 0.0
    max_drawdown_pct: float = 0.0
    halts: dict[str, str] = field(default_factory=dict)  # kind -> reason


class RiskManager:
    """Decides which entries are allowed and which exits are due; tracks drawdown and daily loss."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        #: whether a lot can be due to close without a sell signal (MAX_HOLD_HOURS is set)
        self.time_exits = bool(limits.max_hold_ms)
        self.state = RiskState()
        self._next_day_ts = 0

    # --- guards -------------------------------------------------------------------------------------------
    def on_equity(self, ts: int, equity: float) -> list[str]:
        """Update peak, drawdown and the daily baseline with the equity at a candle's close.

        Returns messages for halts that started now (for logs and events)."""
        state = self.state
        if equity == state.last_equity and ts < self._next_day_ts:
            return _NONE  # nothing can change: same equity, same day
        started = _NONE  # (a new list only when a halt starts)
        day = ts // DAY_MS
        if day != state.day:
            state.day = day
            self._next_day_ts = (day + 1) * DAY_MS
            state.entries_today = 0
            state.day_start_equity = state.last_equity or equity
            state.halts.pop("daily_loss", None)
        peak = state.peak_equity
        if equity > peak:
            state.peak_equity = peak = equity
        drawdown = drawdown_from(peak, equity)
        if drawdown > state.max_drawdown_pct:
            state.max_drawdown_pct = drawdown
        limits = self.limits
        if limits.max_drawdown_pct and drawdown >= limits.max_drawdown_pct and "drawdown" not in state.halts:
            state.halts["drawdown"] = (f"drawdown {drawdown:.2%} reached MAX_DRAWDOWN_PCT "
                                       f"{limits.max_drawdown_pct:.2%}: no new entries until resumed")
            started = [state.halts["drawdown"]]
        if limits.max_daily_loss_pct and state.day_start_equity and "daily_loss" not in state.halts:
            loss = (state.day_start_equity - equity) / state.day_start_equity
            if loss >= limits.max_daily_loss_pct:
                state.halts["daily_loss"] = (f"daily loss {loss:.2%} reached MAX_DAILY_LOSS_PCT "
                                             f"{limits.max_daily_loss_pct:.2%}: no new entries today (UTC)")
                started = [*started, state.halts["daily_loss"]]
        state.last_equity = equity
        return started

    def on_steady_equity(self, timestamps: Sequence[int], equity: float) -> list[tuple[int, str]]:
        """:meth:`on_equity` for candles in time order with one equity (no position open): after the first, only
        the first of each new UTC day can change anything. Returns (candle time, message) for halts started."""
        started: list[tuple[int, str]] = []
        index, count = 0, len(timestamps)
        while index < count:
            ts = timestamps[index]
            started += [(ts, message) for message in self.on_equity(ts, equity)]
            index = bisect_left(timestamps, self._next_day_ts, index + 1)
        return started

    def current_drawdown(self, equity: float) -> float:
        return drawdown_from(self.state.peak_equity, equity)

    def halt(self, kind: str, reason: str) -> None:
        """Stop new entries: ``manual`` (operator, Telegram /pause, HTTP control) or a system kind such as
        ``data_breaker``."""
        self.state.halts[kind] = reason

    def resume(self, kind: str) -> None:
        """Lift a halt. A ``manual`` resume also lifts the drawdown halt (a person decided to continue) and
        measures drawdown from now on; the daily-loss halt always ends with the UTC day."""
        self.state.halts.pop(kind, None)
        if kind == "manual" and self.state.halts.pop("drawdown", None) is not None:
            self.state.peak_equity = 0.0

    # --- decisions ------------------------------------------------------------------------------------------
    def entry_block(self, decision_ts: int, open_lots: int, pending_entries: int) -> str | None:
        """Why an entry decided at ``decision_ts`` is not allowed, or None when it is."""
        state, limits = self.state, self.limits
        if state.halts:
            return "halted:" + ",".join(sorted(state.halts))
        lots = open_lots + pending_entries
        if lots >= limits.max_positions_per_symbol:
            return "max_positions_per_symbol"
        if lots >= limits.max_positions:
            return "max_positions"
        if state.last_close_ts is not None and decision_ts < state.last_close_ts + limits.cooldown_ms:
            return "cooldown"
        if limits.max_daily_entries and state.entries_today >= limits.max_daily_entries:
            return "daily_trade_cap"
        return None

    def record_entry_decision(self) -> None:
        self.state.entries_today += 1

    def record_close(self, ts: int) -> None:
        self.state.last_close_ts = ts

    def due_exit(self, lot: Lot, decision_ts: int, sell_signal: bool) -> str | None:
        """The exit to place at this close for ``lot`` (filled at the next open), if any."""
        held = decision_ts - lot.entry_ts
        if self.limits.max_hold_ms and held >= self.limits.max_hold_ms:
            return "time_exit"
        if sell_signal and held >= self.limits.min_hold_ms:
            return "signal"
        return None

    # --- persistence -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return vars(self.state).copy()

    def load_state(self, state: dict[str, Any]) -> None:
        self.state = RiskState(**state)
        self._next_day_ts = (self.state.day + 1) * DAY_MS
