"""Level-based reconciliation of one PaperTrader: validate and parse its spec, converge its children, observe its
workers, keep its halts, write its status.

Every trigger (create, resume, spec update, a drifted or deleted child, the periodic resync) runs the same
idempotent `Reconciler.reconcile`; each step is done by the collaborator handed in for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from papertrader_operator.cache import TraderKey, child_key, trader_key
from papertrader_operator.children import child_name, render_symbol
from papertrader_operator.control_tokens import ControlTokenError, ControlTokens
from papertrader_operator.converge import ChildConverger
from papertrader_operator.errors import OperatorError
from papertrader_operator.events import EventPoster, EventReason, EventType
from papertrader_operator.halts import EntriesHalt, PortfolioRiskLatch
from papertrader_operator.kube import ApiError
from papertrader_operator.metrics import OperatorMetrics
from papertrader_operator.observe import WorkerObserver
from papertrader_operator.spec import TraderSpec
from papertrader_operator.status import Outcome
from papertrader_operator.status_writer import StatusWriter
from papertrader_operator.validation import name_errors, validate_spec


class InvalidSpec(OperatorError):
    """The spec can never be reconciled as it is; the message names the offending fields."""


@dataclasses.dataclass(frozen=True)
class WorkerDefaults:
    """What the operator's flags add to every rendered worker."""

    image: str
    gateway_url: str = ""  # --market-gateway-url
    notifier_url: str = ""  # --notifier-url


def parse_spec(trader: dict[str, Any]) -> TraderSpec:
    """The trader's spec, defaulted, validated and typed; InvalidSpec names every offending field."""
    spec, errors = validate_spec(trader.get("spec"))
    errors = errors or name_errors(trader["metadata"]["name"], spec["symbols"])
    if errors:
        raise InvalidSpec("; ".join(errors))
    return TraderSpec.from_defaulted(spec)


class Reconciler:
    """One reconcile at a time per PaperTrader, through the collaborators handed in."""

    def __init__(self, *, defaults: WorkerDefaults, converger: ChildConverger, observer: WorkerObserver,
                 statuses: StatusWriter, risk_latch: PortfolioRiskLatch, entries_halt: EntriesHalt,
                 tokens: ControlTokens, events: EventPoster, metrics: OperatorMetrics) -> None:
        self._defaults = defaults
        self._metrics = metrics
        self._converger = converger
        self._observer = observer
        self._statuses = statuses
        self._risk_latch = risk_latch
        self._entries_halt = entries_halt
        self._tokens = tokens
        self._events = events
        self._invalid: dict[TraderKey, str] = {}  # the InvalidSpec message last posted as an Event
        self._locks: dict[TraderKey, asyncio.Lock] = {}

    def forget(self, key: TraderKey) -> None:
        self._invalid.pop(key, None)
        self._locks.pop(key, None)

    async def reconcile(self, trader: dict[str, Any]) -> Outcome:
        """Converge one PaperTrader's children and write its status; raises InvalidSpec or ApiError."""
        await self._converger.prime()
        lock = self._locks.setdefault(trader_key(trader), asyncio.Lock())
        async with lock:
            started = time.perf_counter()
            try:
                outcome = await self._reconcile(trader)
            except InvalidSpec:
                self._metrics.reconciled("invalid")
                raise
            except Exception:
                self._metrics.reconciled("error")
                self._metrics.error("reconcile")
                raise
            finally:
                self._metrics.reconcile_took(time.perf_counter() - started)
            self._metrics.reconciled("ok")
            self._metrics.workers(*self._statuses.worker_totals())
            return outcome

    async def _reconcile(self, trader: dict[str, Any]) -> Outcome:
        key = trader_key(trader)
        name = key[1]
        generation = int(trader["metadata"].get("generation") or 0)
        try:
            spec = parse_spec(trader)
        except InvalidSpec as exc:
            await self._report_invalid(trader, generation, str(exc))
            raise
        self._invalid.pop(key, None)

        defaults = self._defaults
        desired = {child_key(body): body for symbol in spec.symbols
                   for body in render_symbol(trader, spec, symbol, defaults.image, defaults.gateway_url,
                                             defaults.notifier_url)}
        self._converger.want(key, desired)
        outcome = Outcome(generation=generation, paused=spec.paused, observations=[])
        try:
            await self._tokens.token(trader)  # the workers mount its Secret: it must exist before they start
            outcome.changes = await self._converger.converge(key, desired,
                                                             [child_name(name, symbol) for symbol in spec.symbols])
        except (ApiError, ControlTokenError) as exc:
            what = "API error while converging children" if isinstance(exc, ApiError) else "control credential"
            outcome.error = f"{what}: {exc}"
            await self._statuses.write(trader, outcome)
            await self._events.post(trader, EventType.WARNING, EventReason.RECONCILE_FAILED, outcome.error)
            raise
        if outcome.changes:
            await self._events.post(trader, EventType.NORMAL, EventReason.RECONCILED, "; ".join(outcome.changes))

        previous = self._statuses.previous(trader)
        outcome.observations = await self._observer.observe(key, spec, previous.get("symbols") or [])
        await self._risk_latch.apply(trader, spec, outcome, previous.get("risk") or {})
        await self._entries_halt.apply(trader, outcome)
        await self._statuses.write(trader, outcome)
        return outcome

    async def _report_invalid(self, trader: dict[str, Any], generation: int, message: str) -> None:
        key = trader_key(trader)
        if self._invalid.get(key) != message:
            await self._events.post(trader, EventType.WARNING, EventReason.INVALID_SPEC, message)
            self._invalid[key] = message
        self._converger.forget(key)
        outcome = Outcome(generation=generation, paused=False, observations=[], invalid_spec=message)
        await self._statuses.write(trader, outcome)
