"""What the notifier knows about the fleet: the PaperTraders (Kubernetes API) and their workers' /health and /trades.

Pause and resume set or remove the PaperTrader's ``papertrader.io/halt-entries`` annotation; the operator keeps every
worker's ``trader`` halt in line with it (so it shows in ``kubectl get pt`` and survives restarts of every part).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from papertrader_operator import settings as op
from papertrader_operator.health_client import worker_url
from papertrader_operator.kube import ApiError, KubeClient

log = logging.getLogger("papertrader.notifier")


@dataclasses.dataclass
class Worker:
    """One (trader, symbol) and what its /health said (None: unreachable)."""

    namespace: str
    trader: str
    symbol: str
    url: str
    health: dict[str, Any] | None = None


@dataclasses.dataclass
class Trader:
    namespace: str
    name: str
    symbols: list[str]
    paused: bool  # spec.paused: scaled to zero
    halt_reason: str | None  # the halt-entries annotation


class Directory:
    """Reads PaperTraders and worker documents; writes the halt-entries annotation."""

    def __init__(self, kube: KubeClient, namespaces: tuple[str, ...], url_template: str, timeout: float = 3.0) -> None:
        self.kube = kube
        self.namespaces = namespaces
        self.url_template = url_template
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.kube.close()

    async def traders(self) -> list[Trader]:
        """Every PaperTrader in the watched namespaces (all of them when none are named), by namespace and name."""
        items: list[dict[str, Any]] = []
        for namespace in self.namespaces or (None,):
            items += await self.kube.list(op.KIND, namespace, "")
        found = []
        for item in items:
            meta, spec = item.get("metadata") or {}, item.get("spec") or {}
            annotations = meta.get("annotations") or {}
            found.append(Trader(meta.get("namespace") or "default", meta.get("name") or "?",
                                [str(sym) for sym in spec.get("symbols") or []], bool(spec.get("paused")),
                                annotations.get(op.ANNOTATION_HALT_ENTRIES)))
        return sorted(found, key=lambda t: (t.namespace, t.name))

    def workers_of(self, traders: list[Trader]) -> list[Worker]:
        return [Worker(t.namespace, t.name, symbol,
                       worker_url(self.url_template, name=f"{t.name}-{symbol.lower()}", namespace=t.namespace,
                                  trader=t.name, symbol=symbol))
                for t in traders for symbol in t.symbols]

    async def read_health(self, workers: list[Worker]) -> list[Worker]:
        """Fill in each worker's /health (concurrently); unreachable ones keep None."""
        documents = await asyncio.gather(*(self._get_json(f"{w.url}/health") for w in workers))
        for worker, document in zip(workers, documents, strict=True):
            worker.health = document
        return workers

    async def trades(self, worker: Worker) -> list[dict[str, Any]] | None:
        document = await self._get_json(f"{worker.url}/trades")
        return None if document is None else list(document.get("trades") or [])

    async def _get_json(self, url: str) -> dict[str, Any] | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    return None
                document = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.debug("%s unavailable: %s", url, exc)
            return None
        return document if isinstance(document, dict) else None

    async def set_halt(self, trader: Trader, reason: str | None) -> None:
        """Set (a reason) or remove (None) the trader's halt-entries annotation."""
        patch = {"metadata": {"annotations": {op.ANNOTATION_HALT_ENTRIES: reason}}}
        await self.kube.merge_patch(op.KIND, trader.namespace, trader.name, patch)


def kube_login() -> Callable[[], Awaitable[Any]]:
    """The in-cluster service account, else the kubeconfig (as the operator logs in)."""
    import kopf

    async def login() -> Any:
        settings = kopf.OperatorSettings()
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
        if info is None:
            raise ApiError(0, "no Kubernetes credentials: neither a service account nor a kubeconfig")
        return info

    return login
