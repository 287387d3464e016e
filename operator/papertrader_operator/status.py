"""Build a PaperTrader's status: conditions (transition times kept), per-symbol paper results, portfolio."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any

from papertrader_operator.risk import Portfolio


class ConditionType(enum.StrEnum):
    """The conditions every PaperTrader status carries, in this order."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    RISK_HALTED = "RiskHalted"


class Reason(enum.StrEnum):
    """The `reason` of a condition."""

    INVALID_SPEC = "InvalidSpec"
    PAUSED = "Paused"
    ALL_WORKERS_READY = "AllWorkersReady"
    WORKERS_NOT_READY = "WorkersNotReady"
    RECONCILING = "Reconciling"
    WAITING_FOR_WORKERS = "WaitingForWorkers"
    CONVERGED = "Converged"
    RECONCILE_ERROR = "ReconcileError"
    WORKERS_UNHEALTHY = "WorkersUnhealthy"
    AS_EXPECTED = "AsExpected"
    PORTFOLIO_DRAWDOWN_BREACHED = "PortfolioDrawdownBreached"
    WITHIN_LIMITS = "WithinLimits"


class Entries(enum.StrEnum):
    """`status.entries`: whether the papertrader.io/halt-entries annotation stops new entries."""

    OPEN = "open"
    HALTED = "halted"


UNHEALTHY_LEVELS = frozenset({"poor", "critical"})


def now_iso() -> str:
    """The current time as Kubernetes writes it (RFC 3339, UTC, seconds)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: ConditionType, status: bool, reason: Reason, message: str, generation: int) -> dict[str, Any]:
    """One condition (plain strings, as stored); `lastTransitionTime` is filled in by `merge_conditions`."""
    return {"type": kind.value, "status": "True" if status else "False", "reason": reason.value, "message": message,
            "observedGeneration": generation}


def merge_conditions(old: list[dict[str, Any]] | None, new: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    """Keep each condition's `lastTransitionTime` unless its status changed."""
    previous = {item.get("type"): item for item in old or []}
    merged = []
    for item in new:
        before = previous.get(item["type"]) or {}
        kept = before.get("lastTransitionTime") if before.get("status") == item["status"] else None
        merged.append({**item, "lastTransitionTime": kept or now})
    return merged


@dataclasses.dataclass
class SymbolObservation:
    """What the operator saw of one symbol's worker."""

    symbol: str
    workload: str
    statefulset: dict[str, Any] | None = None
    pod: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    last_health: dict[str, Any] | None = None  # the last /health read while the worker cannot be reached now
    last_seen: str | None = None  # when `last_health` was read

    @property
    def ready(self) -> bool:
        ready_replicas = ((self.statefulset or {}).get("status") or {}).get("readyReplicas") or 0
        return ready_replicas >= 1 or bool(self.health and self.health.get("ready") is True)

    @property
    def restarts(self) -> int:
        statuses = ((self.pod or {}).get("status") or {}).get("containerStatuses") or []
        return sum(int(item.get("restartCount") or 0) for item in statuses)

    @property
    def level(self) -> str:
        return str((self.health or {}).get("level") or "unknown")


def _ms_to_iso(value: Any) -> str | None:
    try:
        moment = datetime.datetime.fromtimestamp(int(value) / 1000, datetime.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def symbol_entry(obs: SymbolObservation, paused: bool) -> dict[str, Any]:
    """The status entry of one symbol; fields the worker did not report are left out."""
    health = obs.health or obs.last_health or {}
    block = health.get("portfolio") or {}
    entry: dict[str, Any] = {
        "symbol": obs.symbol,
        "workload": obs.workload,
        "ready": obs.ready and not paused,
        "restarts": obs.restarts,
        "healthLevel": "paused" if paused else obs.level,
    }
    optional = {
        "healthScore": health.get("score"),
        "equity": None if block.get("equity") is None else str(block["equity"]),
        "returnPct": block.get("return_pct"),
        "drawdownPct": block.get("drawdown_pct"),
        "openPositions": block.get("open_positions"),
        "trades": block.get("trades"),
        "lastCandleTime": _ms_to_iso(health.get("last_candle_ms")),
        "modelVersion": None if health.get("model_version") is None else str(health["model_version"]),
        "entriesHalted": health.get("entries_halted"),
    }
    entry.update({key: value for key, value in optional.items() if value is not None})
    if obs.health is None and obs.last_health is not None and not paused:
        entry["stale"] = True  # unreachable: the results shown are the last ones it reported
        if obs.last_seen:
            entry["lastSeen"] = obs.last_seen
    return entry


@dataclasses.dataclass
class Outcome:
    """Everything one reconcile learned, from which the status is built."""

    generation: int
    paused: bool
    observations: list[SymbolObservation]
    changes: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    invalid_spec: str | None = None
    portfolio: Portfolio | None = None
    halted: bool = False
    halt_reason: str = ""
    halted_at: str | None = None
    halted_generation: int | None = None
    entries_halt_reason: str | None = None  # the papertrader.io/halt-entries annotation


def _conditions(out: Outcome) -> list[dict[str, Any]]:
    gen = out.generation
    T, R = ConditionType, Reason
    total = len(out.observations)
    not_ready = [obs.symbol for obs in out.observations if not obs.ready]
    unhealthy = [f"{obs.symbol} ({obs.level})" for obs in out.observations if obs.level in UNHEALTHY_LEVELS]
    if out.invalid_spec:
        ready = condition(T.READY, False, R.INVALID_SPEC, out.invalid_spec, gen)
        progressing = condition(T.PROGRESSING, False, R.INVALID_SPEC, "the spec cannot be reconciled", gen)
    elif out.paused:
        ready = condition(T.READY, False, R.PAUSED, "spec.paused is true: every worker is scaled to zero", gen)
        progressing = condition(T.PROGRESSING, False, R.PAUSED, "nothing to do while paused", gen)
    else:
        ready_count = total - len(not_ready)
        ready = (condition(T.READY, True, R.ALL_WORKERS_READY, f"{ready_count}/{total} workers ready", gen)
                 if not not_ready else
                 condition(T.READY, False, R.WORKERS_NOT_READY,
                           f"{ready_count}/{total} workers ready; waiting for {', '.join(not_ready)}", gen))
        if out.changes:
            progressing = condition(T.PROGRESSING, True, R.RECONCILING, "; ".join(out.changes)[:1000], gen)
        elif not_ready:
            progressing = condition(T.PROGRESSING, True, R.WAITING_FOR_WORKERS, ready["message"], gen)
        else:
            progressing = condition(T.PROGRESSING, False, R.CONVERGED, "every child matches the spec", gen)
    if out.invalid_spec:
        degraded = condition(T.DEGRADED, True, R.INVALID_SPEC, out.invalid_spec, gen)
    elif out.error:
        degraded = condition(T.DEGRADED, True, R.RECONCILE_ERROR, out.error, gen)
    elif unhealthy and not out.paused:
        degraded = condition(T.DEGRADED, True, R.WORKERS_UNHEALTHY, "unhealthy: " + ", ".join(unhealthy), gen)
    else:
        degraded = condition(T.DEGRADED, False, R.AS_EXPECTED, "no errors, no unhealthy workers", gen)
    halted = (condition(T.RISK_HALTED, True, R.PORTFOLIO_DRAWDOWN_BREACHED, out.halt_reason, gen) if out.halted else
              condition(T.RISK_HALTED, False, R.WITHIN_LIMITS, "portfolio drawdown within spec.risk.maxDrawdownPct",
                        gen))
    return [ready, progressing, degraded, halted]


def build_status(out: Outcome, old_status: dict[str, Any] | None) -> dict[str, Any]:
    """The full status subresource for this outcome, keeping unchanged transition times from `old_status`."""
    old_status = old_status or {}
    ready_count = sum(1 for obs in out.observations if obs.ready and not out.paused)
    status: dict[str, Any] = {
        "observedGeneration": out.generation,
        "workers": f"{ready_count}/{0 if out.paused else len(out.observations)}",
        "readyWorkers": ready_count,
        "conditions": merge_conditions(old_status.get("conditions"), _conditions(out), now_iso()),
        "symbols": [symbol_entry(obs, out.paused) for obs in out.observations],
        "risk": {"halted": out.halted},
        "symbolList": ",".join(obs.symbol for obs in out.observations),
        "entries": (Entries.OPEN if out.entries_halt_reason is None else Entries.HALTED).value,
    }
    if out.entries_halt_reason is not None:
        status["entriesHaltReason"] = out.entries_halt_reason
    if out.halted:
        status["risk"].update({"reason": out.halt_reason, "haltedAt": out.halted_at or now_iso(),
                               "haltedGeneration": out.halted_generation or out.generation})
    if out.portfolio is not None:
        port = out.portfolio
        status["portfolio"] = {"initialCapital": f"{port.initial_capital:.2f}", "equity": f"{port.equity:.2f}",
                               "returnPct": port.return_pct, "drawdownPct": port.drawdown_pct,
                               "openPositions": port.open_positions, "reportingWorkers": port.reporting,
                               "staleWorkers": port.stale}
    elif old_status.get("portfolio"):
        status["portfolio"] = old_status["portfolio"]  # keep the last known results while workers are away
    return status
