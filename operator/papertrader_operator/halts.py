"""The halts the operator keeps on a PaperTrader's workers: the portfolio risk latch and the entries halt of the
papertrader.io/halt-entries annotation. Both act through `WorkerControl` (`POST /control/*` of each worker)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from papertrader_operator import risk
from papertrader_operator import settings as s
from papertrader_operator.cache import trader_key
from papertrader_operator.control_tokens import ControlTokens
from papertrader_operator.events import EventPoster, EventReason, EventType
from papertrader_operator.health_client import ControlAction, HealthClient, WorkerUrls
from papertrader_operator.settings import HaltScope
from papertrader_operator.spec import TraderSpec
from papertrader_operator.status import Outcome, SymbolObservation, now_iso


class WorkerControl:
    """Sends halts and resumes to a trader's workers, presenting the trader's control credential."""

    def __init__(self, health: HealthClient, tokens: ControlTokens, urls: WorkerUrls) -> None:
        self._health = health
        self._tokens = tokens
        self._urls = urls

    async def send(self, trader: dict[str, Any], observations: list[SymbolObservation], action: ControlAction,
                   reason: str, scope: HaltScope) -> None:
        """`action` with `reason` on the workers of `observations`, all at once."""
        token = await self._tokens.token(trader)
        key = trader_key(trader)
        await asyncio.gather(*[self._health.control(self._urls.url(key, obs.workload, obs.symbol), action, reason,
                                                    scope, token=token) for obs in observations])


def halt_annotation(trader: Mapping[str, Any]) -> str | None:
    """The papertrader.io/halt-entries annotation (its value is the reason), or None."""
    return ((trader.get("metadata") or {}).get("annotations") or {}).get(s.ANNOTATION_HALT_ENTRIES)


class EntriesHalt:
    """Keeps every reachable worker's ``trader`` halt in line with the papertrader.io/halt-entries annotation."""

    def __init__(self, control: WorkerControl) -> None:
        self._control = control

    async def apply(self, trader: dict[str, Any], outcome: Outcome) -> None:
        reason = halt_annotation(trader)
        outcome.entries_halt_reason = wanted = None if reason is None else (reason.strip() or "halted")
        stale = [obs for obs in outcome.observations if obs.health is not None
                 and (obs.health.get("halts") or {}).get(HaltScope.TRADER) != wanted]
        if stale:
            action = ControlAction.RESUME if wanted is None else ControlAction.HALT
            await self._control.send(trader, stale, action, wanted or "annotation removed", HaltScope.TRADER)


class PortfolioRiskLatch:
    """Latches a halt of new entries on every worker while the portfolio drawdown is at `spec.risk.maxDrawdownPct`;
    a spec change seen below the limit lifts it. The latch lives in the trader's status (`status.risk`)."""

    def __init__(self, control: WorkerControl, events: EventPoster) -> None:
        self._control = control
        self._events = events

    async def apply(self, trader: dict[str, Any], spec: TraderSpec, outcome: Outcome,
                    previous: Mapping[str, Any]) -> None:
        """Decide the halt into `outcome`; `previous` is `status.risk` as last written."""
        limit = float(spec.risk.max_drawdown_pct)
        was_halted = bool(previous.get("halted"))
        outcome.portfolio = port = risk.portfolio([obs.health for obs in outcome.observations if obs.health],
                                                  [obs.last_health for obs in outcome.observations
                                                   if obs.last_health])
        if port is not None and risk.breached(port, limit):
            outcome.halted, outcome.halt_reason = True, risk.halt_reason(port, limit)
            outcome.halted_generation = outcome.generation  # spec changes during a breach do not lift it
        elif was_halted and (port is None or outcome.generation <= int(previous.get("haltedGeneration") or 0)):
            # latched until a spec change is seen with the drawdown known to be below the limit
            outcome.halted, outcome.halt_reason = True, str(previous.get("reason") or "portfolio drawdown limit")
            outcome.halted_generation = int(previous.get("haltedGeneration") or 0)
        if outcome.halted:
            outcome.halted_at = previous.get("haltedAt") if was_halted else now_iso()
            await self._send(trader, outcome, ControlAction.HALT, outcome.halt_reason)  # the halt, then the Event
            if not was_halted:
                await self._events.post(trader, EventType.WARNING, EventReason.RISK_HALTED,
                                        f"halting new entries on every worker: {outcome.halt_reason}")
        elif was_halted:
            await self._send(trader, outcome, ControlAction.RESUME, "portfolio risk halt lifted")
            await self._events.post(trader, EventType.NORMAL, EventReason.RISK_RESUMED,
                                    "spec changed and the portfolio drawdown is below spec.risk.maxDrawdownPct: "
                                    "lifting the portfolio halt (each worker's own halts, such as its drawdown "
                                    "halt, stay)")

    async def _send(self, trader: dict[str, Any], outcome: Outcome, action: ControlAction, reason: str) -> None:
        """The portfolio halt/resume to every reachable worker whose reported portfolio halt differs."""
        halted = action is ControlAction.HALT
        await self._control.send(trader, [obs for obs in outcome.observations
                                          if obs.health and risk.portfolio_halted(obs.health) != halted],
                                 action, reason, HaltScope.PORTFOLIO)
