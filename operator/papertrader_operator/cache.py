"""What the watches tell the operator, kept in memory: PaperTraders, their children and their worker pods.

The child and pod watches keep these caches current (the informer pattern), so a reconcile reads no children or
pods from the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from papertrader_operator import settings as s

TraderKey = tuple[str, str]  # (namespace, name)
ChildKey = tuple[str, str, str]  # (kind, namespace, name)
PodKey = tuple[str, str]  # (namespace, pod name)


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
    """The PaperTrader a managed child (or worker pod) belongs to, by its labels."""
    meta = child.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(s.LABEL_MANAGED_BY) != s.MANAGED_BY or not labels.get(s.LABEL_INSTANCE):
        return None
    return meta.get("namespace") or "", labels[s.LABEL_INSTANCE]


def belongs_to(key: tuple[str, str], trader: TraderKey) -> bool:
    """Whether a (namespace, object name) key names one of the trader's children (`<trader>-<symbol>...`)."""
    return key[0] == trader[0] and key[1].startswith(f"{trader[1]}-")


class TraderCache:
    """Every PaperTrader the operator has seen, by key."""

    def __init__(self) -> None:
        self._bodies: dict[TraderKey, dict[str, Any]] = {}

    def get(self, key: TraderKey) -> dict[str, Any] | None:
        return self._bodies.get(key)

    def put(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Keep `body`; returns the version it replaced."""
        key = trader_key(body)
        before = self._bodies.get(key)
        self._bodies[key] = body
        return before

    def pop(self, key: TraderKey) -> None:
        self._bodies.pop(key, None)

    def keys(self) -> list[TraderKey]:
        return list(self._bodies)

    def __len__(self) -> int:
        return len(self._bodies)


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


class PodCache:
    """Worker pods (their restart counts) by (namespace, name), kept by the pod watch."""

    def __init__(self) -> None:
        self._pods: dict[PodKey, dict[str, Any]] = {}

    def get(self, key: PodKey) -> dict[str, Any] | None:
        return self._pods.get(key)

    def apply(self, event_type: str | None, body: dict[str, Any]) -> dict[str, Any] | None:
        """Keep (or, on DELETED, drop) the pod of a watch event; returns the version it replaced."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        before = self._pods.pop(key, None)
        if event_type != "DELETED":
            self._pods[key] = body
        return before

    def forget(self, trader: TraderKey) -> None:
        """Drop the pods of a deleted trader."""
        for key in [key for key in self._pods if belongs_to(key, trader)]:
            del self._pods[key]


def restart_counts(pod: Mapping[str, Any] | None) -> list[Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return [item.get("restartCount") for item in statuses]
