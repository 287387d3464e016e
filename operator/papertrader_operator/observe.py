"""Observe a PaperTrader's workers: their StatefulSet and pod from the caches, their `/health` over HTTP.

A worker that cannot be reached now is shown at the last `/health` the operator read from it (or, after an
operator restart, at the results its status entry kept), marked stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from papertrader_operator.cache import ChildCache, PodCache, TraderKey, belongs_to
from papertrader_operator.children import child_name
from papertrader_operator.health_client import HealthClient, WorkerUrls
from papertrader_operator.spec import TraderSpec
from papertrader_operator.status import SymbolObservation, now_iso

Health = dict[str, Any]


def from_status(entry: Mapping[str, Any] | None, spec: TraderSpec) -> tuple[Health | None, str | None]:
    """A worker's last known results as the status kept them (after an operator restart), shaped like /health."""
    if not entry or entry.get("equity") is None:
        return None, None
    portfolio = {"equity": entry["equity"], "drawdown_pct": entry.get("drawdownPct") or 0.0,
                 "initial_capital": str(spec.capital.initial), "return_pct": entry.get("returnPct"),
                 "open_positions": entry.get("openPositions"), "trades": entry.get("trades")}
    return {"portfolio": portfolio}, entry.get("lastSeen")


class WorkerObserver:
    """Builds each symbol's `SymbolObservation`; remembers the last `/health` read from every worker."""

    def __init__(self, health: HealthClient, urls: WorkerUrls, children: ChildCache, pods: PodCache) -> None:
        self._health = health
        self._urls = urls
        self._children = children
        self._pods = pods
        self._last_seen: dict[tuple[str, str], tuple[Health, str]] = {}  # (namespace, workload) -> (/health, when)

    def forget(self, trader: TraderKey) -> None:
        """Drop what was remembered of a deleted trader's workers."""
        for key in [key for key in self._last_seen if belongs_to(key, trader)]:
            del self._last_seen[key]

    async def observe(self, trader: TraderKey, spec: TraderSpec,
                      old_entries: list[Mapping[str, Any]]) -> list[SymbolObservation]:
        """One observation per symbol, in spec order; `old_entries` are the symbols of the status last written."""
        namespace, name = trader
        remembered = {entry.get("symbol"): entry for entry in old_entries}

        async def one(symbol: str) -> SymbolObservation:
            workload = child_name(name, symbol)
            obs = SymbolObservation(symbol, workload,
                                    statefulset=self._children.get(("StatefulSet", namespace, workload)),
                                    pod=self._pods.get((namespace, f"{workload}-0")))
            if spec.paused:
                return obs
            obs.health = await self._health.health(self._urls.url(trader, workload, symbol))
            if obs.health is not None:
                self._last_seen[(namespace, workload)] = (obs.health, now_iso())
            else:
                obs.last_health, obs.last_seen = self._last_seen.get((namespace, workload)) or from_status(
                    remembered.get(symbol), spec)
            return obs

        return list(await asyncio.gather(*[one(symbol) for symbol in spec.symbols]))
