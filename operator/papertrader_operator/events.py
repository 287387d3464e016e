"""Kubernetes Events about a PaperTrader, posted with the operator's own API client.

`kopf.info/warn` only work inside kopf's per-object handler tasks (they need its event-queue context); the
resync loop runs outside them, so every Event goes through here instead, from any task. Events are helpful but
auxiliary: a failure to post one is logged and never fails a reconcile.
"""

from __future__ import annotations

import datetime
import enum
import logging
from typing import Any

from papertrader_operator import settings as s
from papertrader_operator.kube import ApiError, KubeClient

logger = logging.getLogger(__name__)

MAX_MESSAGE = 1000
COMPONENT = "papertrader-operator"


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class EventReason(enum.StrEnum):
    """The reasons of the Events the operator posts about a PaperTrader (docs/operator.md)."""

    INVALID_SPEC = "InvalidSpec"
    RECONCILED = "Reconciled"
    RECONCILE_FAILED = "ReconcileFailed"
    RISK_HALTED = "RiskHalted"
    RISK_RESUMED = "RiskResumed"


def event_body(trader: dict[str, Any], event_type: EventType, reason: EventReason, message: str) -> dict[str, Any]:
    """A core/v1 Event about `trader`, as `kubectl describe` shows them (plain strings, as stored)."""
    meta = trader["metadata"]
    now = datetime.datetime.now(datetime.UTC).isoformat()
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"namespace": meta.get("namespace") or "default", "generateName": "papertrader-"},
        "type": event_type.value, "reason": reason.value, "message": message[:MAX_MESSAGE], "action": reason.value,
        "reportingComponent": COMPONENT, "reportingInstance": COMPONENT, "source": {"component": COMPONENT},
        "involvedObject": {"apiVersion": s.API_VERSION, "kind": s.KIND, "name": meta["name"],
                           "namespace": meta.get("namespace"), "uid": meta.get("uid")},
        "firstTimestamp": now, "lastTimestamp": now, "eventTime": now,
    }


class EventPoster:
    """Posts Events through the operator's API client."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def post(self, trader: dict[str, Any], event_type: EventType, reason: EventReason, message: str) -> None:
        """Post one Event; logs (and swallows) API errors."""
        try:
            await self._kube.create(event_body(trader, event_type, reason, message))
        except ApiError as exc:
            logger.warning("could not post event %s for %s: %s", reason.value, trader["metadata"].get("name"), exc)
