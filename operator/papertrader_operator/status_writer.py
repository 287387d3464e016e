"""Write each PaperTrader's status subresource (as a merge patch of what changed) and remember what was written."""

from __future__ import annotations

from typing import Any

from papertrader_operator import settings as s
from papertrader_operator.cache import TraderKey, trader_key
from papertrader_operator.drift import merge_patch_diff
from papertrader_operator.kube import ApiError, KubeClient
from papertrader_operator.status import Outcome, build_status


class StatusWriter:
    """The last status written per trader (what the next reconcile compares with) and the writes themselves."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self._statuses: dict[TraderKey, dict[str, Any]] = {}

    def previous(self, trader: dict[str, Any]) -> dict[str, Any]:
        """The status last written, or the one the trader arrived with (after an operator restart)."""
        return self._statuses.get(trader_key(trader)) or trader.get("status") or {}

    def forget(self, key: TraderKey) -> None:
        self._statuses.pop(key, None)

    async def write(self, trader: dict[str, Any], outcome: Outcome) -> None:
        """Patch the status to the one `outcome` describes; a trader deleted meanwhile is skipped."""
        key = trader_key(trader)
        old = self.previous(trader)
        new = build_status(outcome, old)
        patch = merge_patch_diff(old, new)
        if patch:
            try:
                await self._kube.merge_patch(s.KIND, key[0], key[1], {"status": patch}, subresource="status")
            except ApiError as exc:
                if exc.status == 404:
                    return  # the trader is gone
                raise
        self._statuses[key] = new

    def worker_totals(self) -> tuple[int, int, int]:
        """(ready workers, desired workers, risk-halted traders) over every status written."""
        ready = desired = halted = 0
        for status in self._statuses.values():
            ready += int(status.get("readyWorkers") or 0)
            desired += int(str(status.get("workers", "0/0")).split("/")[1])
            halted += bool((status.get("risk") or {}).get("halted"))
        return ready, desired, halted
