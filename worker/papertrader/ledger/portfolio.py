"""The portfolio: exact cash (Decimal, quote currency) and open lots, derived from fills.

Money rules (see docs/fill-model.md): every notional and fee is rounded to the quote currency's cents when it is
booked, so ``cash = initial - sum(buy notional) - sum(fees) + sum(sell notional)`` holds exactly, and every
portfolio row has ``cash + position_value == equity`` to the cent because equity is defined as that sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from papertrader.events import Fill, PortfolioSnapshot, Side


@dataclass(slots=True)
class Lot:
    """One open position (a lot): bought once, sold once."""

    id: int
    quantity: Decimal
    entry_price: Decimal
    entry_ts: int
    entry_cost: Decimal  # notional + fee paid to open
    qty_f: float
    entry_f: float
    peak_f: float  # highest high since entry, through the last completed candle
    trailing_armed: bool = False

    def state(self) -> list[Any]:
        return [self.id, str(self.quantity), str(self.entry_price), self.entry_ts, str(self.entry_cost),
                self.peak_f, self.trailing_armed]

    @classmethod
    def from_state(cls, state: list[Any]) -> Lot:
        lot_id, qty, price, ts, cost, peak, armed = state
        quantity, entry_price = Decimal(qty), Decimal(price)
        return cls(lot_id, quantity, entry_price, ts, Decimal(cost), float(quantity), float(entry_price), peak, armed)


class Portfolio:
    """Cash, open lots and running totals for one symbol."""

    def __init__(self, symbol: str, initial_capital: Decimal, quote_decimals: int = 2) -> None:
        self.symbol = symbol
        self.cent = Decimal(1).scaleb(-quote_decimals)
        self.initial_capital = initial_capital.quantize(self.cent)
        self.cash = self.initial_capital
        self.cash_f = float(self.cash)
        self.lots: list[Lot] = []
        self.next_lot_id = 1
        self.fills = 0
        self.fees = Decimal(0)
        self.realized_pnl = Decimal(0)
        self.closed_lots = 0
        self.winning_lots = 0

    # --- booking -------------------------------------------------------------------------------------------
    def book_buy(self, ts: int, quantity: Decimal, price: Decimal, notional: Decimal, fee: Decimal,
                 reason: str) -> Fill:
        lot = Lot(self.next_lot_id, quantity, price, ts, notional + fee, float(quantity), float(price),
                  float(price))
        self.next_lot_id += 1
        self.lots.append(lot)
        self._move_cash(-(notional + fee), fee)
        return Fill(ts, self.symbol, Side.BUY, quantity, price, fee, Decimal(0), reason, lot.id)

    def book_sell(self, ts: int, lot: Lot, price: Decimal, notional: Decimal, fee: Decimal, reason: str) -> Fill:
        self.lots.remove(lot)
        pnl = notional - fee - lot.entry_cost
        self.realized_pnl += pnl
        self.closed_lots += 1
        if pnl > 0:
            self.winning_lots += 1
        self._move_cash(notional - fee, fee)
        return Fill(ts, self.symbol, Side.SELL, lot.quantity, price, fee, pnl, reason, lot.id)

    def _move_cash(self, amount: Decimal, fee: Decimal) -> None:
        self.cash += amount
        self.cash_f = float(self.cash)
        self.fees += fee
        self.fills += 1

    # --- valuation -----------------------------------------------------------------------------------------
    def equity_f(self, mark: float) -> float:
        """Fast float equity for statistics and guards (never booked)."""
        equity = self.cash_f
        for lot in self.lots:
            equity += lot.qty_f * mark
        return equity

    def position_value(self, mark: Decimal) -> Decimal:
        quantity = sum((lot.quantity for lot in self.lots), Decimal(0))
        return (quantity * mark).quantize(self.cent, rounding=ROUND_HALF_UP)

    def snapshot(self, ts: int, mark: float) -> PortfolioSnapshot:
        value = self.position_value(Decimal(repr(mark))) if self.lots else Decimal(0).quantize(self.cent)
        return PortfolioSnapshot(ts, self.cash, value, self.cash + value, len(self.lots))

    # --- persistence -----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "cash": str(self.cash),
            "lots": [lot.state() for lot in self.lots],
            "next_lot_id": self.next_lot_id,
            "fills": self.fills,
            "fees": str(self.fees),
            "realized_pnl": str(self.realized_pnl),
            "closed_lots": self.closed_lots,
            "winning_lots": self.winning_lots,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.cash = Decimal(state["cash"])
        self.cash_f = float(self.cash)
        self.lots = [Lot.from_state(item) for item in state["lots"]]
        self.next_lot_id = state["next_lot_id"]
        self.fills = state["fills"]
        self.fees = Decimal(state["fees"])
        self.realized_pnl = Decimal(state["realized_pnl"])
        self.closed_lots = state["closed_lots"]
        self.winning_lots = state["winning_lots"]
