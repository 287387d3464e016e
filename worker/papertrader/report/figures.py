"""The figures of one run, recomputed from its ledger: per-candle equity, buy-and-hold, drawdown, round trips and
the summary statistics.

Equity at the close of candle t is the cash after every fill stamped t or earlier plus the open quantity times t's
close: the same valuation the engine's drawdown guard uses, so the maximum drawdown here equals the worker's
``max_drawdown_pct``. Final equity is valued like a portfolio row (position value rounded to the cent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

from papertrader.report.snapshot import FillRow, RunData

#: sell reasons drawn as stop exits and as target exits (risk/exits.py); other sells are strategy/risk exits
STOP_REASONS = frozenset({"stop_loss", "trailing_stop", "emergency_stop"})
TARGET_REASONS = frozenset({"take_profit"})
_YEAR_MS = 365 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """One lot from entry to exit (exit fields None while it is open)."""

    position_id: int
    entry_ts: int
    entry_price: Decimal
    quantity: Decimal
    entry_reason: str
    exit_ts: int | None
    exit_price: Decimal | None
    exit_reason: str | None
    pnl: Decimal | None
    fees: Decimal


@dataclass(slots=True)
class RunFigures:
    """Series (one value per accepted candle) and figures of one run."""

    initial_capital: Decimal
    interval_ms: int | None
    ts: np.ndarray
    closes: np.ndarray
    equity: np.ndarray
    buy_hold: np.ndarray
    drawdown_pct: np.ndarray
    round_trips: list[RoundTrip]
    gaps: list[tuple[int, int]]  # (ts of the first missing candle, candles missing)
    rejections: list[tuple[int, str]]  # (ts, reason) of rejected candles that had a timestamp
    stats: dict[str, Any] = field(default_factory=dict)


def compute(run: RunData) -> RunFigures:
    """Recompute everything the report shows from ``run``."""
    initial = _initial_capital(run)
    ts, closes = run.price_ts, run.closes
    if len(ts):
        equity, quantity = _equity_per_candle(run.fills, ts, closes, initial)
    else:  # CSVs only: the portfolio rows are the equity series
        ts = np.array([mark.ts for mark in run.marks], dtype=np.int64)
        closes = np.zeros(0)
        equity = np.array([float(mark.equity) for mark in run.marks], dtype=np.float64)
        quantity = np.array([float(mark.open_positions) for mark in run.marks])
    interval = _interval_ms(ts) if len(closes) else None
    peak = np.maximum.accumulate(equity) if len(equity) else equity
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = np.where(peak > 0, (peak - equity) / peak * 100.0, 0.0)
    buy_hold = float(initial) * closes / closes[0] if len(closes) else np.zeros(0)
    trips = round_trips(run.fills)
    figures = RunFigures(initial, interval, ts, closes, equity, buy_hold, drawdown, trips,
                         _gaps(ts, interval) if interval else [],
                         [(t, detail) for t, kind, detail in run.events if kind == "candle_rejected" and t is not None])
    figures.stats = _stats(run, figures, quantity)
    return figures


def _cent(run: RunData) -> Decimal:
    return Decimal(1).scaleb(-int(run.settings.get("QUOTE_DECIMALS", 2)))


def _initial_capital(run: RunData) -> Decimal:
    configured = run.settings.get("INITIAL_CAPITAL")
    if configured is not None:
        return Decimal(str(configured)).quantize(_cent(run))
    if run.fills:
        first = run.fills[0]
        return first.cash_after + first.notional + first.fee if first.side == "buy" else first.cash_after
    return run.marks[0].equity if run.marks else Decimal("10000")


def _equity_per_candle(fills: list[FillRow], ts: np.ndarray, closes: np.ndarray,
                       initial: Decimal) -> tuple[np.ndarray, np.ndarray]:
    fill_ts = np.array([fill.ts for fill in fills], dtype=np.int64)
    cash_after = np.array([float(initial)] + [float(fill.cash_after) for fill in fills])
    signed = np.array([0.0] + [float(fill.quantity) * (1 if fill.side == "buy" else -1) for fill in fills])
    held = np.cumsum(signed)
    applied = np.searchsorted(fill_ts, ts, side="right")  # fills stamped at or before each candle
    quantity = held[applied]
    quantity[np.abs(quantity) < 1e-12] = 0.0
    return cash_after[applied] + quantity * closes, quantity


def _interval_ms(ts: np.ndarray) -> int | None:
    if len(ts) < 2:
        return None
    steps = np.diff(ts)
    return int(np.min(steps[steps > 0])) if np.any(steps > 0) else None


def _gaps(ts: np.ndarray, interval: int) -> list[tuple[int, int]]:
    steps = np.diff(ts)
    where = np.nonzero(steps > interval)[0]
    return [(int(ts[i]) + interval, int(steps[i] // interval) - 1) for i in where]


def round_trips(fills: list[FillRow]) -> list[RoundTrip]:
    """Pair each lot's buy with its sell (by position id), in entry order."""
    open_lots: dict[int, FillRow] = {}
    trips: dict[int, RoundTrip] = {}
    for fill in fills:
        if fill.side == "buy":
            open_lots[fill.position_id] = fill
            trips[fill.position_id] = RoundTrip(fill.position_id, fill.ts, fill.price, fill.quantity, fill.reason,
                                                None, None, None, None, fill.fee)
            continue
        entry = open_lots.pop(fill.position_id, None)
        if entry is None:
            continue
        trips[fill.position_id] = RoundTrip(fill.position_id, entry.ts, entry.price, entry.quantity, entry.reason,
                                            fill.ts, fill.price, fill.reason, fill.realized_pnl,
                                            entry.fee + fill.fee)
    return list(trips.values())


def _stats(run: RunData, figures: RunFigures, quantity: np.ndarray) -> dict[str, Any]:
    initial, equity = figures.initial_capital, figures.equity
    final = _final_equity(run, figures)
    closed = [trip for trip in figures.round_trips if trip.pnl is not None]
    wins = [trip.pnl for trip in closed if trip.pnl is not None and trip.pnl > 0]
    losses = [trip.pnl for trip in closed if trip.pnl is not None and trip.pnl < 0]
    gross_profit = sum(wins, Decimal(0))
    gross_loss = -sum(losses, Decimal(0))
    returns = equity[1:] / equity[:-1] - 1.0 if len(equity) > 1 else np.zeros(0)
    per_year = math.sqrt(_YEAR_MS / figures.interval_ms) if figures.interval_ms else None
    sharpe = _ratio(float(np.mean(returns)), float(np.std(returns, ddof=1))) if len(returns) > 1 else None
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if len(returns) else 0.0
    sortino = _ratio(float(np.mean(returns)), downside) if len(returns) > 1 else None
    closes = figures.closes
    return {
        "candles": int(len(closes)) if len(closes) else None,
        "trades": len(run.fills),
        "round_trips": len(closed),
        "final_equity": float(final),
        "return_pct": round(float((final - initial) / initial * 100), 4),
        "buy_hold_return_pct": round(float((closes[-1] / closes[0] - 1.0) * 100), 4) if len(closes) else None,
        "max_drawdown_pct": round(float(np.max(figures.drawdown_pct)), 4) if len(equity) else 0.0,
        "win_rate": round(100.0 * len(wins) / len(closed), 2) if closed else 0.0,
        "fees_paid": float(sum((fill.fee for fill in run.fills), Decimal(0))),
        "exposure_pct": round(float(np.mean(quantity > 0) * 100), 2) if len(closes) else None,
        "sharpe": _round(sharpe),
        "sortino": _round(sortino),
        "sharpe_annualised": _round(sharpe * per_year) if sharpe is not None and per_year else None,
        "sortino_annualised": _round(sortino * per_year) if sortino is not None and per_year else None,
        "profit_factor": _round(float(gross_profit / gross_loss)) if gross_loss else None,
        "rejected_candles": sum(1 for _, kind, _ in run.events if kind == "candle_rejected"),
        "gaps": len(figures.gaps),
        "missing_candles": sum(missing for _, missing in figures.gaps),
    }


def _final_equity(run: RunData, figures: RunFigures) -> Decimal:
    """Valued like a portfolio row: cash plus the open quantity at the last close, rounded to the cent."""
    if not len(figures.closes):
        return run.marks[-1].equity if run.marks else figures.initial_capital
    cash = run.fills[-1].cash_after if run.fills else figures.initial_capital
    held = sum((fill.quantity if fill.side == "buy" else -fill.quantity for fill in run.fills), Decimal(0))
    value = (held * Decimal(repr(float(figures.closes[-1])))).quantize(_cent(run), rounding=ROUND_HALF_UP)
    return cash + value


def _ratio(mean: float, spread: float) -> float | None:
    return mean / spread if spread > 0 and math.isfinite(spread) else None


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)
