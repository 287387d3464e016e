"""What the control surfaces (HTTP ``/control/*``, Telegram commands) do and answer.

:class:`AnnouncedControl` applies a halt or resume through the worker's :class:`~papertrader.engine.facts.WorkerControl`
and announces it; :class:`WorkerCommands` answers the chat commands from the worker's facts; :class:`RecentFills`
keeps the last fills for ``/trades`` and ``/trades`` in chat.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from papertrader.events import BaseListener, Fill

if TYPE_CHECKING:
    from papertrader.engine.facts import WorkerControl, WorkerView

#: (category, text, priority) -> queued; the notifier's ``notify``
Announce = Callable[[str, str, str], Any]

RECENT_FILLS = 10


class RecentFills(BaseListener):
    """The last fills as ``(ts, side, quantity, price, fee, realized_pnl, reason)``, seeded from the ledger."""

    def __init__(self, rows: Iterable[tuple[Any, ...]] = ()) -> None:
        self.fills: deque[tuple[Any, ...]] = deque(rows, maxlen=RECENT_FILLS)

    def on_fill(self, fill: Fill) -> None:
        self.fills.append((fill.ts, fill.side, fill.quantity, fill.price, fill.fee, fill.realized_pnl, fill.reason))


class AnnouncedControl:
    """Halts and resumes asked for from outside: applied to the worker, then announced (when ``announce`` is set)."""

    def __init__(self, view: WorkerView, control: WorkerControl, symbol: str, announce: Announce | None = None
                 ) -> None:
        self.view = view
        self.control = control
        self.symbol = symbol
        self.announce = announce

    def halt(self, reason: str, source: str, kind: str = "manual") -> None:
        already = self.view.facts().halts.get(kind) == reason
        self.control.halt(reason, kind)
        if not already and self.announce is not None:
            self.announce("status", f"{self.symbol}: new entries halted via {source}: {reason}", "high")

    def resume(self, source: str, kind: str = "manual") -> None:
        """Lift the ``kind`` halt; ``portfolio`` (the operator's) leaves the worker's own halts in place."""
        was = bool(self.view.facts().halts)
        self.control.resume(kind)
        if was and self.announce is not None:
            self.announce("status", f"{self.symbol}: entries resumed via {source}", "normal")

    def state(self) -> dict[str, Any]:
        """``entries_halted``, ``halts``, ``halt_reason``: the answer of ``POST /control/*``."""
        facts = self.view.facts()
        return {"entries_halted": bool(facts.halts), "halts": dict(facts.halts), "halt_reason": facts.halt_reason}


class WorkerCommands:
    """Text answers to a worker's chat commands (the Telegram notifier's ``CommandAnswers``)."""

    def __init__(self, view: WorkerView, control: AnnouncedControl, health_report: Callable[[], dict[str, Any]],
                 recent: RecentFills) -> None:
        self.view = view
        self.control = control
        self.health_report = health_report
        self.recent = recent

    def reply(self, command: str, text: str = "") -> str:
        facts = self.view.facts()
        symbol = facts.symbol
        if command == "pause":
            reason = text.partition(" ")[2].strip() or "paused via Telegram"
            self.control.halt(reason[:200], source="telegram")
            return f"{symbol}: new entries halted ({reason[:200]}); open positions are still managed"
        if command == "resume":
            self.control.resume(source="telegram")
            halts = self.view.facts().halts
            return f"{symbol}: entries resumed" + (f" (still halted: {', '.join(halts)})" if halts else "")
        if command == "positions":
            if not facts.lots:
                return f"{symbol}: no open positions"
            mark = facts.last_candle.close if facts.last_candle else 0.0
            lines = [f"#{lot.id} {lot.quantity} @ {lot.entry_price} (now {mark:g}, "
                     f"{(mark / float(lot.entry_price) - 1) * 100:+.2f} %)" for lot in facts.lots]
            return f"{symbol} open positions:\n" + "\n".join(lines)
        if command == "trades":
            if not self.recent.fills:
                return f"{symbol}: no trades yet"
            lines = [f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(int(ts) / 1000))} {side} {qty} @ {price}"
                     f" fee {fee}" + (f" pnl {pnl}" if side == "sell" else "") + f" ({reason})"
                     for ts, side, qty, price, fee, pnl, reason in self.recent.fills]
            return f"{symbol} last trades:\n" + "\n".join(lines)
        report = self.health_report()
        p = report["portfolio"]
        if command == "status":
            halted = f"\nentries halted: {report['halt_reason']}" if report["entries_halted"] else ""
            return (f"{symbol} {report['status']} ({facts.source}, {facts.strategy})\ncandles "
                    f"{report['candles_processed']}, trades {p['trades']}\nequity {p['equity']} "
                    f"({p['return_pct']:+.2f} %)\nhealth {report['score']:.1f} "
                    f"{report['level']}{'' if report['ready'] else ' (not ready)'}{halted}")
        if command == "pnl":
            s = self.view.summary()
            return (f"{symbol} P&L\nequity {p['equity']} (start {p['initial_capital']})\nreturn "
                    f"{p['return_pct']:+.2f} %, max drawdown {p['max_drawdown_pct']:.2f} %\nrealized "
                    f"{s['realized_pnl']:.2f}, fees {s['fees_paid']:.2f}\nround trips {s['round_trips']}, "
                    f"win rate {s['win_rate']} %")
        if command == "health":
            lines = [f"{name}: {c['score']:.0f} ({c['detail']})" for name, c in report["components"].items()]
            ready = "ready" if report["ready"] else "not ready: " + "; ".join(report["not_ready"])
            return f"{symbol} health {report['score']:.1f} {report['level']}, {ready}\n" + "\n".join(lines)
        return "unknown command"
