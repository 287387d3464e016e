"""kopf registrations: thin adapters from kopf's causes to the level-based `Runtime.reconcile`.

Run with `kopf run --standalone -m papertrader_operator.handlers` (what `papertrader operator` does).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from papertrader_operator import settings as s
from papertrader_operator.kube import ApiError, KubeClient
from papertrader_operator.reconcile import InvalidSpec, Runtime, plain

PT = (s.GROUP, s.VERSION, s.PLURAL)
MANAGED = {s.LABEL_MANAGED_BY: s.MANAGED_BY}
RETRY_DELAYS = (1, 2, 5, 10, 30, 60)


class _State:
    """The running operator's runtime and credentials (one operator per process)."""

    runtime: Runtime | None = None
    connection: kopf.ConnectionInfo | None = None


async def _connection() -> kopf.ConnectionInfo:
    if _State.connection is None:
        raise kopf.TemporaryError("not logged in yet", delay=1)
    return _State.connection


def _runtime() -> Runtime:
    if _State.runtime is None:
        raise kopf.TemporaryError("operator is starting", delay=1)
    return _State.runtime


@kopf.on.login(errors=kopf.ErrorsMode.PERMANENT)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, then the kubeconfig; the operator's own client reuses them."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    _State.connection = info
    return info


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, logger: logging.Logger, **_: Any) -> None:
    """Brand kopf's storage with papertrader.io, set timeouts and backoff, start the runtime."""
    settings.persistence.finalizer = f"{s.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=s.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=s.GROUP, key="last-handled-configuration")
    settings.posting.level = logging.INFO
    settings.watching.connect_timeout = 30
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.queueing.error_delays = RETRY_DELAYS
    config = s.current()
    _State.runtime = Runtime(config, KubeClient(_connection))
    await _State.runtime.start()
    logger.info("papertrader operator started: image=%s, worker url=%s, resync every %.0fs",
                config.worker_image, config.worker_url_template, config.resync_interval)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if _State.runtime is not None:
        await _State.runtime.stop()
        _State.runtime = None


@kopf.on.event(*PT)
async def trader_event(event: dict[str, Any], **_: Any) -> None:
    """Track every PaperTrader for the resync loop; clean up after a deleted one."""
    await _runtime().on_trader_event(event.get("type"), plain(event["object"]))


@kopf.on.resume(*PT)
@kopf.on.create(*PT)
@kopf.on.update(*PT, field="spec")
async def reconcile(body: kopf.Body, retry: int, **_: Any) -> None:
    """Create, resume and spec changes all converge through the same idempotent reconcile."""
    try:
        await _runtime().reconcile(plain(body))
    except InvalidSpec as exc:
        raise kopf.PermanentError(str(exc)) from exc
    except ApiError as exc:
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAYS[min(retry, len(RETRY_DELAYS) - 1)]) from exc


def _watch_children(group: str, version: str, plural: str) -> None:
    @kopf.on.event(group, version, plural, labels=MANAGED, id=f"child-{plural}")
    async def child_event(event: dict[str, Any], **_: Any) -> None:
        if _State.runtime is not None:
            _State.runtime.on_child_event(event.get("type"), plain(event["object"]))


for _resource in (("apps", "v1", "statefulsets"), ("", "v1", "services"), ("", "v1", "configmaps")):
    _watch_children(*_resource)


@kopf.on.event("", "v1", "pods", labels=MANAGED, id="worker-pods")
async def pod_event(event: dict[str, Any], **_: Any) -> None:
    """Worker pods (restart counts) from a watch: the status passes read no pods from the API."""
    if _State.runtime is not None:
        _State.runtime.on_pod_event(event.get("type"), plain(event["object"]))
