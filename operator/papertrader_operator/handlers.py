"""kopf registrations: thin adapters from kopf's causes to the level-based `Runtime`.

`register` puts them into a registry the composition root (main.py) created and hands to `kopf.operator`; nothing
is registered on import.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from papertrader_operator import settings as s
from papertrader_operator.cache import plain
from papertrader_operator.kube import ApiError
from papertrader_operator.reconcile import InvalidSpec
from papertrader_operator.runtime import Runtime

PT = (s.GROUP, s.VERSION, s.PLURAL)
MANAGED = {s.LABEL_MANAGED_BY: s.MANAGED_BY}
CHILD_RESOURCES = (("apps", "v1", "statefulsets"), ("", "v1", "services"), ("", "v1", "configmaps"))
RETRY_DELAYS = (1, 2, 5, 10, 30, 60)


class Credentials:
    """The connection kopf logged in with (`@kopf.on.login`), which the operator's own API client reuses."""

    def __init__(self) -> None:
        self._info: kopf.ConnectionInfo | None = None

    def keep(self, info: kopf.ConnectionInfo | None) -> None:
        self._info = info

    async def connection(self) -> kopf.ConnectionInfo:
        if self._info is None:
            raise kopf.TemporaryError("not logged in yet", delay=1)
        return self._info


def register(registry: kopf.OperatorRegistry, *, runtime: Runtime, credentials: Credentials,
             started_message: str) -> None:
    """Register the operator's handlers into `registry`; `started_message` is logged once the runtime runs.

    The handler ids are those of the module-level handlers before (kopf keeps per-handler progress under them)."""

    @kopf.on.login(registry=registry, id="login", errors=kopf.ErrorsMode.PERMANENT)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster service account first, then the kubeconfig; the operator's own client reuses them."""
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        credentials.keep(info)
        return info

    @kopf.on.startup(registry=registry, id="startup")
    async def startup(logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> None:
        await runtime.start()
        logger.info(started_message)

    @kopf.on.cleanup(registry=registry, id="cleanup")
    async def cleanup(**_: Any) -> None:
        await runtime.stop()

    @kopf.on.event(*PT, registry=registry, id="trader_event")
    async def trader_event(event: kopf.RawEvent, **_: Any) -> None:
        """Track every PaperTrader for the resync loop; clean up after a deleted one."""
        await runtime.on_trader_event(event.get("type"), plain(event["object"]))

    @kopf.on.resume(*PT, registry=registry, id="reconcile")
    @kopf.on.create(*PT, registry=registry, id="reconcile")
    @kopf.on.update(*PT, registry=registry, id="reconcile", field="spec")
    async def reconcile(body: kopf.Body, retry: int, **_: Any) -> None:
        """Create, resume and spec changes all converge through the same idempotent reconcile."""
        try:
            await runtime.reconcile(plain(body))
        except InvalidSpec as exc:
            raise kopf.PermanentError(str(exc)) from exc
        except ApiError as exc:
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAYS[min(retry, len(RETRY_DELAYS) - 1)]) from exc

    for group, version, plural in CHILD_RESOURCES:
        @kopf.on.event(group, version, plural, registry=registry, labels=MANAGED, id=f"child-{plural}")
        async def child_event(event: kopf.RawEvent, **_: Any) -> None:
            runtime.on_child_event(event.get("type"), plain(event["object"]))

    @kopf.on.event("", "v1", "pods", registry=registry, labels=MANAGED, id="worker-pods")
    async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
        """Worker pods (restart counts) from a watch: the status passes read no pods from the API."""
        runtime.on_pod_event(event.get("type"), plain(event["object"]))
