"""Portfolio risk across the symbols of one PaperTrader (no single worker can see it).

Each worker reports its equity and its current drawdown from its own peak. The portfolio drawdown is
`sum(peak_i - equity_i) / sum(peak_i)` with `peak_i = equity_i / (1 - drawdown_i)`: the loss from the sum of
the per-symbol peaks. It never understates the drawdown of the summed equity curve (whose peak is at most the
sum of the peaks), so a halt based on it is conservative, and it needs no memory in the operator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from papertrader_operator.settings import HaltScope


@dataclasses.dataclass(frozen=True)
class Portfolio:
    """Aggregate paper results of the workers that reported."""

    initial_capital: Decimal
    equity: Decimal
    return_pct: float
    drawdown_pct: float  # percent, e.g. 12.5
    open_positions: int
    reporting: int  # workers counted, stale ones included
    stale: int = 0  # workers counted at their last known results because they cannot be reached now


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def portfolio_halted(health: dict[str, Any]) -> bool:
    """Whether a worker's `/health` shows the operator's portfolio halt (older workers: any halt)."""
    halts = health.get("halts")
    return HaltScope.PORTFOLIO.value in halts if isinstance(halts, dict) else bool(health.get("entries_halted"))


def portfolio(healths: Sequence[dict[str, Any]], stale: Sequence[dict[str, Any]] = ()) -> Portfolio | None:
    """Aggregate the `portfolio` blocks of worker `/health` documents; None when nobody reported.

    `stale` are the last documents of workers that cannot be reached now: they count at their last known equity
    and drawdown (a failing loser must not hide its loss) and are counted in `Portfolio.stale`.
    """
    initial = equity = peaks = Decimal(0)
    open_positions = reporting = stale_count = 0
    for health, is_stale in [*((h, False) for h in healths), *((h, True) for h in stale)]:
        block = health.get("portfolio") or {}
        symbol_equity = _decimal(block.get("equity"))
        if symbol_equity is None:
            continue
        drawdown = min(max(float(block.get("drawdown_pct") or 0.0), 0.0), 99.999)
        symbol_initial = _decimal(block.get("initial_capital")) or symbol_equity
        reporting += 1
        stale_count += is_stale
        initial += symbol_initial
        equity += symbol_equity
        peaks += max(symbol_equity / Decimal(str(1 - drawdown / 100)), symbol_equity)
        open_positions += int(block.get("open_positions") or 0)
    if not reporting:
        return None
    return_pct = float((equity - initial) / initial * 100) if initial else 0.0
    drawdown_pct = float((peaks - equity) / peaks * 100) if peaks else 0.0
    return Portfolio(initial, equity, round(return_pct, 4), round(drawdown_pct, 4), open_positions, reporting,
                     stale_count)


def breached(port: Portfolio | None, max_drawdown_fraction: float) -> bool:
    """Whether the portfolio drawdown reached the limit (`spec.risk.maxDrawdownPct`, a fraction)."""
    return port is not None and port.drawdown_pct >= max_drawdown_fraction * 100


def halt_reason(port: Portfolio, max_drawdown_fraction: float) -> str:
    """The human explanation carried by the condition, the Event and the halt request."""
    return (f"portfolio drawdown {port.drawdown_pct:.2f}% reached the limit {max_drawdown_fraction * 100:.2f}% "
            f"(spec.risk.maxDrawdownPct) across {port.reporting} worker(s)")
