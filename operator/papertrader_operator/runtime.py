"""The running operator: watch events into the caches, reconciles on demand and by the resync loop.

`main.build_runtime` composes it; the kopf handlers (handlers.py) feed it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from papertrader_operator.cache import (
    ChildCache,
    PodCache,
    TraderCache,
    TraderKey,
    child_key,
    owner_of,
    restart_counts,
    trader_key,
)
from papertrader_operator.control_tokens import ControlTokens
from papertrader_operator.converge import ChildConverger
from papertrader_operator.drift import drifted_fields
from papertrader_operator.halts import halt_annotation
from papertrader_operator.health_client import HealthClient
from papertrader_operator.kube import KubeClient
from papertrader_operator.metrics import OperatorHttp, OperatorMetrics
from papertrader_operator.observe import WorkerObserver
from papertrader_operator.reconcile import InvalidSpec, Reconciler
from papertrader_operator.scheduler import ResyncScheduler
from papertrader_operator.status import Outcome
from papertrader_operator.status_writer import StatusWriter

logger = logging.getLogger(__name__)


def _readiness(child: Mapping[str, Any] | None) -> tuple[Any, Any]:
    status = (child or {}).get("status") or {}
    return status.get("replicas"), status.get("readyReplicas")


class Runtime:
    """Keeps the caches from watch events and asks for reconciles when something a trader depends on changed."""

    def __init__(self, *, kube: KubeClient, health: HealthClient, http: OperatorHttp, traders: TraderCache,
                 children: ChildCache, pods: PodCache, converger: ChildConverger, observer: WorkerObserver,
                 statuses: StatusWriter, tokens: ControlTokens, reconciler: Reconciler, resync_interval: float,
                 max_concurrent_reconciles: int, metrics: OperatorMetrics) -> None:
        self._kube = kube
        self._metrics = metrics
        self._health = health
        self._http = http
        self._traders = traders
        self._children = children
        self._pods = pods
        self._converger = converger
        self._observer = observer
        self._statuses = statuses
        self._tokens = tokens
        self._reconciler = reconciler
        self._scheduler = ResyncScheduler(interval=resync_interval, limit=max_concurrent_reconciles,
                                          keys=traders.keys, run_pass=self._resync, on_beat=http.beat,
                                          on_pass_done=metrics.resynced)

    @property
    def http_port(self) -> int:
        """The port of the operator's own /healthz, /readyz and /metrics (known once started)."""
        return self._http.port

    async def start(self) -> None:
        await self._http.start()
        self._scheduler.start()

    async def stop(self) -> None:
        await self._scheduler.stop()
        await self._health.close()
        await self._kube.close()
        await self._http.stop()

    async def reconcile(self, trader: dict[str, Any]) -> Outcome:
        """Reconcile one PaperTrader now (kopf's create/resume/update handlers); raises InvalidSpec or ApiError."""
        outcome = await self._reconciler.reconcile(trader)
        self._scheduler.passed(trader_key(trader))
        return outcome

    async def _resync(self, key: TraderKey) -> None:
        trader = self._traders.get(key)
        if trader is None:
            return
        try:
            await self.reconcile(trader)
        except InvalidSpec:
            pass  # already reported through status and an Event

    # --- watch events --------------------------------------------------------------------------------------------

    async def on_trader_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Keep the trader cache; a deleted trader's children are deleted (garbage collection does it too)."""
        key = trader_key(body)
        if event_type == "DELETED":
            self._traders.pop(key)
            self._converger.forget(key)
            self._statuses.forget(key)
            self._reconciler.forget(key)
            self._scheduler.forget(key)
            self._tokens.forget(*key)
            self._pods.forget(key)
            self._observer.forget(key)
            await self._converger.delete_children_of(key, body["metadata"].get("uid"))
        else:
            before = self._traders.put(body)
            if before is not None and halt_annotation(before) != halt_annotation(body):
                self._scheduler.request(key)  # a /pause or /resume: act now, not at the next resync
        self._metrics.traders(len(self._traders))

    def on_child_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Keep the child cache; ask for a reconcile when a child vanished, drifted or is no longer wanted."""
        key = child_key(body)
        before = self._children.get(key)
        if event_type == "DELETED":
            self._children.pop(key)
        else:
            self._children.put(body)
        owner = owner_of(body)
        desired = None if owner is None else self._converger.desired_of(owner)
        if owner is None or desired is None:
            return  # unknown owner, or not reconciled yet: its first reconcile looks at everything
        wanted = desired.get(key)
        if event_type == "DELETED":
            needs = wanted is not None
        else:
            needs = wanted is None or bool(drifted_fields(wanted, body))
        if not needs and _readiness(before) != _readiness(body):
            self._scheduler.request(owner)  # a worker became (un)ready: refresh the status now, not at the resync
            return
        if needs:
            logger.info("child %s/%s/%s %s: reconciling %s/%s", *key,
                        "deleted" if event_type == "DELETED" else "drifted or unwanted", *owner)
            self._scheduler.request(owner)

    def on_pod_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Keep the pod cache (restart counts) from the pod watch; a changed restart count refreshes the status."""
        before = self._pods.apply(event_type, body)
        owner = owner_of(body)
        if (owner is not None and self._converger.desired_of(owner) is not None
                and restart_counts(before) != restart_counts(body)):
            self._scheduler.request(owner)
