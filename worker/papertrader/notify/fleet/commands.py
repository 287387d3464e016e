"""The fleet's chat commands: each answer is one message built from the PaperTraders and their workers' /health.

/status, /status <trader> [<symbol>], /positions, /trades <trader> [n], /pnl, /health, /pause <trader>|all,
/resume <trader>|all, /help. Unknown commands, traders and symbols get a clear reply.
"""

from __future__ import annotations

import time
from typing import Any

from papertrader.errors import PapertraderError
from papertrader.notify.fleet.directory import Directory, Trader, Worker
from papertrader.notify.telegram import command_name
from papertrader_operator.risk import portfolio

HELP = ("/status [trader] [symbol] - fleet table: equity, return, open positions, ready, data age\n"
        "/positions - open positions\n/trades <trader> [n] - last trades\n/pnl - profit and loss per trader\n"
        "/health - health of every worker\n/pause <trader>|all [reason] - stop new entries\n"
        "/resume <trader>|all - allow new entries again\n/help - this list")
COMMANDS = ("status", "positions", "trades", "pnl", "health", "pause", "resume", "help")
MAX_TRADES = 10


class UnknownName(PapertraderError):
    """A trader or symbol the fleet does not have (the message is the reply)."""


def data_age(health: dict[str, Any], now_ms: float) -> str:
    last = health.get("last_candle_ms")
    if last is None:
        return "-"
    seconds = max(0.0, now_ms - float(last)) / 1000
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.0f}h"


def status_table(workers: list[Worker], now_ms: float | None = None) -> str:
    """One line per worker: trader symbol equity return% positions ready data-age (a header line first)."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    lines = ["trader symbol equity return% pos ready age"]
    for w in workers:
        h = w.health
        if h is None:
            lines.append(f"{w.trader} {w.symbol} unreachable")
            continue
        p = h.get("portfolio") or {}
        halted = " halted" if h.get("entries_halted") else ""
        lines.append(f"{w.trader} {w.symbol} {float(p.get('equity') or 0):.2f} {float(p.get('return_pct') or 0):+.2f}"
                     f" {int(p.get('open_positions') or 0)} {'yes' if h.get('ready') else 'no'}"
                     f" {data_age(h, now_ms)}{halted}")
    return "\n".join(lines)


class CommandHandler:
    """Turns a command text into its reply, acting through the :class:`Directory`."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def reply(self, text: str, who: str = "telegram") -> tuple[str, str]:
        """(command name, reply text); the name is ``unknown`` for anything not in :data:`COMMANDS`."""
        command = command_name(text)
        args = text.split()[1:]
        if command not in COMMANDS:
            return "unknown", f"unknown command /{command[:32]}\n{HELP}"
        if command == "help":
            return command, HELP
        try:
            traders = await self.directory.traders()
            return command, await getattr(self, f"_{command}")(traders, args, who)
        except UnknownName as exc:
            return command, str(exc)

    # --- selection ---------------------------------------------------------------------------------------------
    @staticmethod
    def _trader(traders: list[Trader], name: str) -> Trader:
        found = [t for t in traders if t.name == name]
        if not found:
            known = ", ".join(t.name for t in traders) or "none"
            raise UnknownName(f"unknown trader '{name[:64]}' (known: {known})")
        return found[0]

    async def _workers(self, traders: list[Trader]) -> list[Worker]:
        return await self.directory.read_health(self.directory.workers_of([t for t in traders if not t.paused]))

    # --- commands ----------------------------------------------------------------------------------------------
    async def _status(self, traders: list[Trader], args: list[str], _who: str) -> str:
        if args:
            traders = [self._trader(traders, args[0])]
            if len(args) > 1:
                symbol = args[1].upper()
                if symbol not in traders[0].symbols:
                    raise UnknownName(f"trader '{traders[0].name}' has no symbol '{args[1][:32]}' "
                                      f"(it has: {', '.join(traders[0].symbols)})")
                traders = [Trader(traders[0].namespace, traders[0].name, [symbol], traders[0].paused,
                                  traders[0].halt_reason)]
        if not traders:
            return "no PaperTraders"
        workers = await self._workers(traders)
        paused = [t.name for t in traders if t.paused]
        tail = f"\npaused (scaled to zero): {', '.join(paused)}" if paused else ""
        return status_table(workers) + tail

    async def _positions(self, traders: list[Trader], _args: list[str], _who: str) -> str:
        lines = []
        for w in await self._workers(traders):
            p = (w.health or {}).get("portfolio") or {}
            if int(p.get("open_positions") or 0):
                lines.append(f"{w.trader} {w.symbol}: {p['open_positions']} open, value "
                             f"{float(p.get('position_value') or 0):.2f}")
        return "open positions:\n" + "\n".join(lines) if lines else "no open positions"

    async def _trades(self, traders: list[Trader], args: list[str], _who: str) -> str:
        if not args:
            return "usage: /trades <trader> [n]"
        trader = self._trader(traders, args[0])
        count = int(args[1]) if len(args) > 1 and args[1].isdigit() else MAX_TRADES
        count = max(1, min(count, MAX_TRADES))
        rows: list[tuple[int, str, dict[str, Any]]] = []
        for worker in self.directory.workers_of([trader]):
            for trade in await self.directory.trades(worker) or []:
                rows.append((int(trade.get("ts") or 0), worker.symbol, trade))
        if not rows:
            return f"{trader.name}: no trades yet"
        lines = [f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(ts / 1000))} {symbol} {t['side']} {t['quantity']}"
                 f" @ {t['price']}" + (f" pnl {t['realized_pnl']}" if t.get("side") == "sell" else "")
                 for ts, symbol, t in sorted(rows, key=lambda r: r[0])[-count:]]
        return f"{trader.name} last trades:\n" + "\n".join(lines)

    async def _pnl(self, traders: list[Trader], _args: list[str], _who: str) -> str:
        workers = await self._workers(traders)
        lines = []
        for trader in traders:
            port = portfolio([w.health for w in workers if w.trader == trader.name and w.health])
            if port is None:
                lines.append(f"{trader.name}: no worker reporting")
                continue
            lines.append(f"{trader.name}: equity {port.equity:.2f} (start {port.initial_capital:.2f}), return "
                         f"{port.return_pct:+.2f} %, drawdown {port.drawdown_pct:.2f} %, {port.open_positions} open")
        fleet = portfolio([w.health for w in workers if w.health])
        if fleet is not None:
            lines.append(f"fleet: equity {fleet.equity:.2f}, return {fleet.return_pct:+.2f} %")
        return "P&L\n" + "\n".join(lines) if lines else "no PaperTraders"

    async def _health(self, traders: list[Trader], _args: list[str], _who: str) -> str:
        lines = []
        for w in await self._workers(traders):
            h = w.health
            if h is None:
                lines.append(f"{w.trader} {w.symbol}: unreachable")
                continue
            ready = "ready" if h.get("ready") else "not ready: " + "; ".join(h.get("not_ready") or [])
            lines.append(f"{w.trader} {w.symbol}: {float(h.get('score') or 0):.1f} {h.get('level')}, {ready}")
        return "health\n" + "\n".join(lines) if lines else "no workers"

    async def _pause(self, traders: list[Trader], args: list[str], who: str) -> str:
        return await self._halt(traders, args, who, pause=True)

    async def _resume(self, traders: list[Trader], args: list[str], who: str) -> str:
        return await self._halt(traders, args, who, pause=False)

    async def _halt(self, traders: list[Trader], args: list[str], who: str, pause: bool) -> str:
        verb = "pause" if pause else "resume"
        if not args:
            return f"usage: /{verb} <trader>|all"
        chosen = traders if args[0] == "all" else [self._trader(traders, args[0])]
        reason = " ".join(args[1:])[:200] or f"paused via {who}"
        for trader in chosen:
            await self.directory.set_halt(trader, reason if pause else None)
        names = ", ".join(t.name for t in chosen) or "none"
        if pause:
            return f"new entries halted for {names} ({reason}); open positions are still managed"
        return f"entries resumed for {names}"
