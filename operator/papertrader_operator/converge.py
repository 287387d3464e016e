"""Converge a PaperTrader's children on the desired ones: create what is missing, repair drift, delete the rest.

A create that meets an existing object reads it and carries on, so an operator restart never duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from papertrader_operator import settings as s
from papertrader_operator.cache import ChildCache, ChildKey, TraderKey, child_key, owner_of
from papertrader_operator.children import CHILD_KINDS
from papertrader_operator.drift import drifted_fields, needs_recreate, repair_patch
from papertrader_operator.kube import ApiError, KubeClient
from papertrader_operator.metrics import OperatorMetrics

logger = logging.getLogger(__name__)

Desired = dict[ChildKey, dict[str, Any]]


def has_glob(namespace: str) -> bool:
    return any(char in namespace for char in "*?[!")


class ChildConverger:
    """Creates, patches, recreates and deletes children through `kube`, keeping `children` current; remembers
    each trader's desired children so that watch events can tell drift."""

    def __init__(self, kube: KubeClient, children: ChildCache, namespaces: tuple[str, ...],
                 metrics: OperatorMetrics) -> None:
        self._kube = kube
        self._metrics = metrics
        self._children = children
        self._namespaces = namespaces
        self._desired: dict[TraderKey, Desired] = {}
        self._prime_lock = asyncio.Lock()
        self._primed = False

    def desired_of(self, trader: TraderKey) -> Desired | None:
        """The children last wanted for `trader`; None before its first (valid) reconcile."""
        return self._desired.get(trader)

    def forget(self, trader: TraderKey) -> None:
        self._desired.pop(trader, None)

    async def prime(self) -> None:
        """Fill the child cache once, before the first reconcile, so a restart re-creates nothing."""
        async with self._prime_lock:
            if not self._primed:
                await self._list_children()
                self._primed = True

    async def _list_children(self) -> None:
        namespaces: list[str | None] = [ns for ns in self._namespaces if not has_glob(ns)] or [None]
        if len(namespaces) != len(self._namespaces or [None]):
            return  # namespace globs: the watches fill the cache, creates that meet existing objects adopt them
        selector = f"{s.LABEL_MANAGED_BY}={s.MANAGED_BY}"
        try:
            for kind in CHILD_KINDS:
                for namespace in namespaces:
                    for body in await self._kube.list(kind, namespace, selector):
                        if owner_of(body) is not None and self._children.get(child_key(body)) is None:
                            self._children.put(body)
        except ApiError as exc:
            logger.warning("could not list existing children (%s); relying on the watches", exc)

    def want(self, trader: TraderKey, desired: Desired) -> None:
        """Remember the children `trader` should have (watch events compare with them)."""
        self._desired[trader] = desired

    async def converge(self, trader: TraderKey, desired: Desired, workloads: list[str]) -> list[str]:
        """Converge every symbol's children (`workloads`: their names), then delete unwanted ones; returns what
        changed, one phrase each."""
        results = await asyncio.gather(*[self._converge_symbol(desired, trader[0], name) for name in workloads])
        changes = [change for result in results for change in result]
        return changes + await self._delete_unwanted(trader, desired)

    async def _converge_symbol(self, desired: Desired, namespace: str, name: str) -> list[str]:
        changes = []
        for kind in CHILD_KINDS:  # ConfigMap and Service before the StatefulSet that uses them
            change = await self._converge_child(desired[(kind, namespace, name)])
            if change:
                changes.append(change)
        return changes

    async def _converge_child(self, body: dict[str, Any]) -> str | None:
        key = child_key(body)
        kind, namespace, name = key
        actual = self._children.get(key)
        if actual is None:
            try:
                self._children.put(await self._kube.create(body))
                self._metrics.child_changed(kind, "create")
                return f"created {kind} {name}"
            except ApiError as exc:
                if exc.status != 409:
                    raise
                actual = await self._kube.get(kind, namespace, name)
                if actual is None:
                    raise
                self._children.put(actual)
        fields = drifted_fields(body, actual)
        if not fields:
            return None
        if needs_recreate(kind, fields):
            await self._kube.delete(kind, namespace, name, propagation="Orphan")
            self._children.put(await self._kube.create(body))
            self._metrics.child_changed(kind, "recreate")
            return f"recreated {kind} {name} (immutable {', '.join(fields)} changed; pods and volumes kept)"
        self._children.put(await self._kube.merge_patch(kind, namespace, name, repair_patch(body, fields)))
        self._metrics.child_changed(kind, "patch")
        return f"patched {kind} {name} ({', '.join(fields)})"

    async def _delete_unwanted(self, trader: TraderKey, desired: Desired) -> list[str]:
        unwanted = [ckey for ckey in self._children.owned_by(trader) if ckey not in desired]
        for kind, namespace, name in unwanted:
            await self._kube.delete(kind, namespace, name)
            self._children.pop((kind, namespace, name))
            self._metrics.child_changed(kind, "delete")
        return [f"deleted {kind} {name} (symbol removed)" for kind, _, name in unwanted]

    async def delete_children_of(self, trader: TraderKey, uid: str | None) -> None:
        """Delete a deleted trader's children (those it owned, by uid; garbage collection does it too)."""
        for ckey in self._children.owned_by(trader):
            refs = (self._children.get(ckey) or {}).get("metadata", {}).get("ownerReferences") or []
            if uid is None or any(ref.get("uid") == uid for ref in refs):
                try:
                    await self._kube.delete(*ckey)
                except ApiError as exc:
                    logger.warning("could not delete %s/%s/%s: %s", *ckey, exc)
                self._children.pop(ckey)
