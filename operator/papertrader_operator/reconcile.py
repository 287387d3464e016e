"""Level-based reconciliation of one PaperTrader: converge its children, observe its workers, write status.

Every trigger (create, resume, spec update, a drifted or deleted child, the periodic resync) runs the same
idempotent `Runtime.reconcile`. The live children come from a cache that the child watches keep current (the
informer pattern); a create that meets an existing object reads it and carries on, so restarts never duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from papertrader_operator import metrics, risk
from papertrader_operator import settings as s
from papertrader_operator.children import CHILD_KINDS, child_name, render_symbol
from papertrader_operator.control_tokens import ControlTokenError, ControlTokens
from papertrader_operator.events import post_event
from papertrader_operator.drift import drifted_fields, merge_patch_diff, needs_recreate, repair_patch
from papertrader_operator.health_client import HealthClient, worker_url
from papertrader_operator.kube import ApiError, KubeClient
from papertrader_operator.status import Outcome, SymbolObservation, build_status, now_iso
from papertrader_operator.validation import name_errors, validate_spec

logger = logging.getLogger(__name__)

TraderKey = tuple[str, str]  # (namespace, name)
ChildKey = tuple[str, str, str]  # (kind, namespace, name)


class InvalidSpec(Exception):
    """The spec can never be reconciled as it is; the message names the offending fields."""


def plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists (kopf hands out read-only mapping views)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def trader_key(trader: Mapping[str, Any]) -> TraderKey:
    meta = trader["metadata"]
    return meta.get("namespace") or "", meta["name"]


def child_key(body: Mapping[str, Any]) -> ChildKey:
    meta = body["metadata"]
    return body["kind"], meta.get("namespace") or "", meta["name"]


def owner_of(child: Mapping[str, Any]) -> TraderKey | None:
    """The PaperTrader a managed child belongs to (by its labels)."""
    meta = child.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(s.LABEL_MANAGED_BY) != s.MANAGED_BY or not labels.get(s.LABEL_INSTANCE):
        return None
    return meta.get("namespace") or "", labels[s.LABEL_INSTANCE]


def _restarts(pod: Mapping[str, Any] | None) -> list[Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return [item.get("restartCount") for item in statuses]


def _from_status(entry: Mapping[str, Any] | None, spec: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A worker's last known results as the status kept them (after an operator restart), shaped like /health."""
    if not entry or entry.get("equity") is None:
        return None, None
    portfolio = {"equity": entry["equity"], "drawdown_pct": entry.get("drawdownPct") or 0.0,
                 "initial_capital": str(spec["capital"]["initial"]), "return_pct": entry.get("returnPct"),
                 "open_positions": entry.get("openPositions"), "trades": entry.get("trades")}
    return {"portfolio": portfolio}, entry.get("lastSeen")


def _halt_annotation(trader: Mapping[str, Any]) -> str | None:
    return ((trader.get("metadata") or {}).get("annotations") or {}).get(s.ANNOTATION_HALT_ENTRIES)


def _readiness(child: Mapping[str, Any] | None) -> tuple[Any, Any]:
    status = (child or {}).get("status") or {}
    return status.get("replicas"), status.get("readyReplicas")


class ChildCache:
    """Live children by key, indexed by owning PaperTrader (filled by watches and by API responses)."""

    def __init__(self) -> None:
        self._bodies: dict[ChildKey, dict[str, Any]] = {}
        self._owned: dict[TraderKey, set[ChildKey]] = {}

    def get(self, key: ChildKey) -> dict[str, Any] | None:
        return self._bodies.get(key)

    def put(self, body: dict[str, Any]) -> dict[str, Any]:
        key = child_key(body)
        self.pop(key)
        self._bodies[key] = body
        owner = owner_of(body)
        if owner is not None:
            self._owned.setdefault(owner, set()).add(key)
        return body

    def pop(self, key: ChildKey) -> None:
        body = self._bodies.pop(key, None)
        owner = owner_of(body) if body is not None else None
        if owner is not None:
            self._owned.get(owner, set()).discard(key)

    def owned_by(self, owner: TraderKey) -> list[ChildKey]:
        return sorted(self._owned.get(owner, ()))


class Runtime:
    """The operator's state: API and worker clients, caches of traders and children, the resync loop."""

    def __init__(self, config: s.OperatorConfig, kube: KubeClient) -> None:
        self.config = config
        self.kube = kube
        self.health = HealthClient(config.health_timeout)
        self.tokens = ControlTokens(kube)
        self.http = metrics.OperatorHttp(config.http_host, config.http_port,
                                         stale_after=max(60.0, 4 * config.resync_interval))
        self.traders: dict[TraderKey, dict[str, Any]] = {}
        self.children = ChildCache()
        self.desired: dict[TraderKey, dict[ChildKey, dict[str, Any]]] = {}
        self.statuses: dict[TraderKey, dict[str, Any]] = {}
        self.invalid: dict[TraderKey, str] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, pod name) -> pod, kept by a watch
        self.last_seen: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}  # workload -> (/health, when)
        self._locks: dict[TraderKey, asyncio.Lock] = {}
        self._due: dict[TraderKey, float] = {}
        self._requested: set[TraderKey] = set()  # asked for now; kept when asked while a pass is running
        self._running: set[TraderKey] = set()
        self._wakeup = asyncio.Event()
        self._limit = asyncio.Semaphore(config.max_concurrent_reconciles)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._prime_lock = asyncio.Lock()
        self._primed = False

    # --- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.http.start()
        self._loop_task = asyncio.create_task(self._resync_loop(), name="papertrader-resync")

    async def _prime_children(self) -> None:
        """Fill the child cache once, before the first reconcile, so a restart re-creates nothing."""
        async with self._prime_lock:
            if not self._primed:
                await self._list_children()
                self._primed = True

    async def _list_children(self) -> None:
        namespaces = [ns for ns in self.config.namespaces if not any(c in ns for c in "*?[!")] or [None]
        if len(namespaces) != len(self.config.namespaces or [None]):
            return  # namespace globs: the watches fill the cache, creates that meet existing objects adopt them
        selector = f"{s.LABEL_MANAGED_BY}={s.MANAGED_BY}"
        try:
            for kind in CHILD_KINDS:
                for namespace in namespaces:
                    for body in await self.kube.list(kind, namespace, selector):
                        if owner_of(body) is not None and self.children.get(child_key(body)) is None:
                            self.children.put(body)
        except ApiError as exc:
            logger.warning("could not list existing children (%s); relying on the watches", exc)

    async def stop(self) -> None:
        for task in [self._loop_task, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._loop_task, *self._tasks] if t is not None], return_exceptions=True)
        await self.health.close()
        await self.kube.close()
        await self.http.stop()

    # --- watch events --------------------------------------------------------------------------------------------

    async def on_trader_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Keep the trader cache; a deleted trader's children are deleted (garbage collection does it too)."""
        key = trader_key(body)
        if event_type == "DELETED":
            self.traders.pop(key, None)
            for store in (self.desired, self.statuses, self.invalid, self._due, self._locks):
                store.pop(key, None)
            self._requested.discard(key)
            self.tokens.forget(*key)
            for store in (self.pods, self.last_seen):
                for item in [k for k in store if k[0] == key[0] and k[1].startswith(f"{key[1]}-")]:
                    del store[item]
            await self._delete_children_of(key, body["metadata"].get("uid"))
        else:
            before = self.traders.get(key)
            self.traders[key] = body
            if before is not None and _halt_annotation(before) != _halt_annotation(body):
                self.request(key)  # a /pause or /resume: act now, not at the next resync
        metrics.TRADERS.set(len(self.traders))

    def on_child_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Keep the child cache; ask for a reconcile when a child vanished, drifted or is no longer wanted."""
        key = child_key(body)
        before = self.children.get(key)
        if event_type == "DELETED":
            self.children.pop(key)
        else:
            self.children.put(body)
        owner = owner_of(body)
        if owner is None or owner not in self.desired:
            return  # unknown owner, or not reconciled yet: its first reconcile looks at everything
        wanted = self.desired[owner].get(key)
        if event_type == "DELETED":
            needs = wanted is not None
        else:
            needs = wanted is None or bool(drifted_fields(wanted, body))
        if not needs and _readiness(before) != _readiness(body):
            self.request(owner)  # a worker became (un)ready: refresh the status now, not at the next resync
            return
        if needs:
            logger.info("child %s/%s/%s %s: reconciling %s/%s", *key,
                        "deleted" if event_type == "DELETED" else "drifted or unwanted", *owner)
            self.request(owner)

    def on_pod_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Keep the pod cache (restart counts) from the pod watch; a changed restart count refreshes the status."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        before = self.pods.pop(key, None)
        if event_type != "DELETED":
            self.pods[key] = body
        owner = owner_of(body)
        if owner is not None and owner in self.desired and _restarts(before) != _restarts(body):
            self.request(owner)

    def request(self, key: TraderKey) -> None:
        """Schedule a reconcile of `key` by the resync loop now (again after a pass running at the moment)."""
        self._requested.add(key)
        self._wakeup.set()

    # --- the loop ----------------------------------------------------------------------------------------------

    async def _resync_loop(self) -> None:
        while True:
            self.http.beat()
            self._wakeup.clear()
            now = time.monotonic()
            for key in list(self.traders):
                due = key in self._requested or self._due.setdefault(key, now) <= now
                if key not in self._running and due:
                    self._running.add(key)
                    self._requested.discard(key)
                    task = asyncio.create_task(self._background(key))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            metrics.LAST_RESYNC.set(time.time())
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=min(1.0, self.config.resync_interval))
            except asyncio.TimeoutError:
                pass

    async def _background(self, key: TraderKey) -> None:
        try:
            async with self._limit:
                trader = self.traders.get(key)
                if trader is not None:
                    await self.reconcile(trader)
        except InvalidSpec:
            pass  # already reported through status and an Event
        except Exception as exc:  # noqa: BLE001 - the loop must survive anything; the next pass retries
            logger.warning("reconcile of %s/%s failed: %s", *key, exc)
        finally:
            self._running.discard(key)
            self._due[key] = time.monotonic() + self.config.resync_interval
            if key in self._requested:
                self._wakeup.set()

    # --- reconcile ---------------------------------------------------------------------------------------------

    async def reconcile(self, trader: dict[str, Any]) -> Outcome:
        """Converge one PaperTrader's children and write its status; raises InvalidSpec or ApiError."""
        await self._prime_children()
        key = trader_key(trader)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            started = time.perf_counter()
            try:
                outcome = await self._reconcile(trader)
            except InvalidSpec:
                metrics.RECONCILES.labels(result="invalid").inc()
                raise
            except Exception:
                metrics.RECONCILES.labels(result="error").inc()
                metrics.ERRORS.labels(kind="reconcile").inc()
                raise
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
            metrics.RECONCILES.labels(result="ok").inc()
            self._due[key] = time.monotonic() + self.config.resync_interval
            self._update_worker_gauges()
            return outcome

    async def _reconcile(self, trader: dict[str, Any]) -> Outcome:
        key = trader_key(trader)
        namespace, name = key
        generation = int(trader["metadata"].get("generation") or 0)
        spec, errors = validate_spec(trader.get("spec"))
        errors = errors or name_errors(name, spec["symbols"])
        if errors:
            await self._report_invalid(trader, generation, "; ".join(errors))
        self.invalid.pop(key, None)

        desired = {child_key(body): body for symbol in spec["symbols"]
                   for body in render_symbol(trader, spec, symbol, self.config.worker_image,
                                             self.config.market_gateway_url, self.config.notifier_url)}
        self.desired[key] = desired
        outcome = Outcome(generation=generation, paused=bool(spec["paused"]), observations=[])
        try:
            await self.tokens.token(trader)  # the workers mount its Secret: it must exist before they start
            results = await asyncio.gather(*[self._converge_symbol(desired, namespace, child_name(name, symbol))
                                             for symbol in spec["symbols"]])
            outcome.changes = [change for result in results for change in result]
            outcome.changes += await self._delete_unwanted(key, desired)
        except (ApiError, ControlTokenError) as exc:
            what = "API error while converging children" if isinstance(exc, ApiError) else "control credential"
            outcome.error = f"{what}: {exc}"
            await self._write_status(trader, outcome)
            await post_event(self.kube, trader, "Warning", "ReconcileFailed", outcome.error)
            raise
        if outcome.changes:
            await post_event(self.kube, trader, "Normal", "Reconciled", "; ".join(outcome.changes))

        outcome.observations = await self._observe(trader, spec)
        await self._apply_risk(trader, spec, outcome)
        await self._apply_entries_halt(trader, outcome)
        await self._write_status(trader, outcome)
        return outcome

    async def _report_invalid(self, trader: dict[str, Any], generation: int, message: str) -> None:
        key = trader_key(trader)
        if self.invalid.get(key) != message:
            await post_event(self.kube, trader, "Warning", "InvalidSpec", message)
            self.invalid[key] = message
        self.desired.pop(key, None)
        outcome = Outcome(generation=generation, paused=False, observations=[], invalid_spec=message)
        await self._write_status(trader, outcome)
        raise InvalidSpec(message)

    async def _converge_symbol(self, desired: dict[ChildKey, dict[str, Any]], namespace: str, name: str) -> list[str]:
        changes = []
        for kind in CHILD_KINDS:  # ConfigMap and Service before the StatefulSet that uses them
            change = await self._converge_child(desired[(kind, namespace, name)])
            if change:
                changes.append(change)
        return changes

    async def _converge_child(self, body: dict[str, Any]) -> str | None:
        key = child_key(body)
        kind, namespace, name = key
        actual = self.children.get(key)
        if actual is None:
            try:
                self.children.put(await self.kube.create(body))
                metrics.CHILD_CHANGES.labels(kind=kind, action="create").inc()
                return f"created {kind} {name}"
            except ApiError as exc:
                if exc.status != 409:
                    raise
                actual = await self.kube.get(kind, namespace, name)
                if actual is None:
                    raise
                self.children.put(actual)
        fields = drifted_fields(body, actual)
        if not fields:
            return None
        if needs_recreate(kind, fields):
            await self.kube.delete(kind, namespace, name, propagation="Orphan")
            self.children.put(await self.kube.create(body))
            metrics.CHILD_CHANGES.labels(kind=kind, action="recreate").inc()
            return f"recreated {kind} {name} (immutable {', '.join(fields)} changed; pods and volumes kept)"
        self.children.put(await self.kube.merge_patch(kind, namespace, name, repair_patch(body, fields)))
        metrics.CHILD_CHANGES.labels(kind=kind, action="patch").inc()
        return f"patched {kind} {name} ({', '.join(fields)})"

    async def _delete_unwanted(self, key: TraderKey, desired: dict[ChildKey, dict[str, Any]]) -> list[str]:
        unwanted = [ckey for ckey in self.children.owned_by(key) if ckey not in desired]
        for kind, namespace, name in unwanted:
            await self.kube.delete(kind, namespace, name)
            self.children.pop((kind, namespace, name))
            metrics.CHILD_CHANGES.labels(kind=kind, action="delete").inc()
        return [f"deleted {kind} {name} (symbol removed)" for kind, _, name in unwanted]

    async def _delete_children_of(self, key: TraderKey, uid: str | None) -> None:
        for ckey in self.children.owned_by(key):
            refs = (self.children.get(ckey) or {}).get("metadata", {}).get("ownerReferences") or []
            if uid is None or any(ref.get("uid") == uid for ref in refs):
                try:
                    await self.kube.delete(*ckey)
                except ApiError as exc:
                    logger.warning("could not delete %s/%s/%s: %s", *ckey, exc)
                self.children.pop(ckey)

    # --- observation, risk, status -----------------------------------------------------------------------------

    async def _observe(self, trader: dict[str, Any], spec: dict[str, Any]) -> list[SymbolObservation]:
        namespace, name = trader_key(trader)
        remembered = {entry.get("symbol"): entry for entry in self._old_status(trader).get("symbols") or []}

        async def one(symbol: str) -> SymbolObservation:
            workload = child_name(name, symbol)
            obs = SymbolObservation(symbol, workload,
                                    statefulset=self.children.get(("StatefulSet", namespace, workload)),
                                    pod=self.pods.get((namespace, f"{workload}-0")))
            if spec["paused"]:
                return obs
            url = worker_url(self.config.worker_url_template, name=workload, namespace=namespace,
                             trader=name, symbol=symbol)
            obs.health = await self.health.health(url)
            if obs.health is not None:
                self.last_seen[(namespace, workload)] = (obs.health, now_iso())
            else:
                obs.last_health, obs.last_seen = self.last_seen.get((namespace, workload)) or _from_status(
                    remembered.get(symbol), spec)
            return obs

        return list(await asyncio.gather(*[one(symbol) for symbol in spec["symbols"]]))

    def _url(self, trader: dict[str, Any], obs: SymbolObservation) -> str:
        namespace, name = trader_key(trader)
        return worker_url(self.config.worker_url_template, name=obs.workload, namespace=namespace,
                          trader=name, symbol=obs.symbol)

    async def _apply_risk(self, trader: dict[str, Any], spec: dict[str, Any], outcome: Outcome) -> None:
        """Latch a halt while the portfolio drawdown is at the limit; a spec change seen below it lifts it."""
        limit = float(spec["risk"]["maxDrawdownPct"])
        previous = self._old_status(trader).get("risk") or {}
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
            await self._control(trader, outcome, "halt", outcome.halt_reason)  # the halt first, then the Event
            if not was_halted:
                await post_event(self.kube, trader, "Warning", "RiskHalted",
                                 f"halting new entries on every worker: {outcome.halt_reason}")
        elif was_halted:
            await self._control(trader, outcome, "resume", "portfolio risk halt lifted")
            await post_event(self.kube, trader, "Normal", "RiskResumed",
                             "spec changed and the portfolio drawdown is below spec.risk.maxDrawdownPct: lifting "
                             "the portfolio halt (each worker's own halts, such as its drawdown halt, stay)")

    async def _apply_entries_halt(self, trader: dict[str, Any], outcome: Outcome) -> None:
        """Keep every reachable worker's ``trader`` halt in line with the papertrader.io/halt-entries annotation."""
        reason = ((trader.get("metadata") or {}).get("annotations") or {}).get(s.ANNOTATION_HALT_ENTRIES)
        outcome.entries_halt_reason = None if reason is None else (reason.strip() or "halted")
        wanted = outcome.entries_halt_reason
        stale = [obs for obs in outcome.observations if obs.health is not None
                 and (obs.health.get("halts") or {}).get(s.HALT_SCOPE_TRADER) != wanted]
        if not stale:
            return
        token = await self.tokens.token(trader)
        action = "resume" if wanted is None else "halt"
        await asyncio.gather(*[self.health.control(self._url(trader, obs), action, wanted or "annotation removed",
                                                   scope=s.HALT_SCOPE_TRADER, token=token) for obs in stale])

    async def _control(self, trader: dict[str, Any], outcome: Outcome, action: str, reason: str) -> None:
        """Send the portfolio halt/resume to every reachable worker whose reported portfolio halt differs."""
        halted = action == "halt"
        token = await self.tokens.token(trader)
        await asyncio.gather(*[self.health.control(self._url(trader, obs), action, reason, scope=risk.SCOPE,
                                                   token=token)
                               for obs in outcome.observations
                               if obs.health and risk.portfolio_halted(obs.health) != halted])

    def _old_status(self, trader: dict[str, Any]) -> dict[str, Any]:
        return self.statuses.get(trader_key(trader)) or trader.get("status") or {}

    async def _write_status(self, trader: dict[str, Any], outcome: Outcome) -> None:
        key = trader_key(trader)
        old = self._old_status(trader)
        new = build_status(outcome, old)
        patch = merge_patch_diff(old, new)
        if patch:
            try:
                await self.kube.merge_patch(s.KIND, key[0], key[1], {"status": patch}, subresource="status")
            except ApiError as exc:
                if exc.status == 404:
                    return  # the trader is gone
                raise
        self.statuses[key] = new

    def _update_worker_gauges(self) -> None:
        ready = desired = halted = 0
        for status in self.statuses.values():
            ready += int(status.get("readyWorkers") or 0)
            desired += int(str(status.get("workers", "0/0")).split("/")[1])
            halted += bool((status.get("risk") or {}).get("halted"))
        metrics.WORKERS_READY.set(ready)
        metrics.WORKERS_DESIRED.set(desired)
        metrics.RISK_HALTED.set(halted)
