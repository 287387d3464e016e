"""Talk to a worker over HTTP: read its `/health`, and halt or resume its entries (docs/worker-http.md)."""

from __future__ import annotations

import enum
import logging
from typing import Any

import aiohttp

from papertrader_operator.metrics import OperatorMetrics
from papertrader_operator.settings import HaltScope

logger = logging.getLogger(__name__)


class ControlAction(enum.StrEnum):
    """`POST /control/<action>` of a worker."""

    HALT = "halt"
    RESUME = "resume"


def worker_url(template: str, *, name: str, namespace: str, trader: str, symbol: str) -> str:
    """The worker's base URL from a template such as `http://{name}.{namespace}.svc:8766`."""
    return template.format(name=name, namespace=namespace, trader=trader, symbol=symbol.lower()).rstrip("/")


class WorkerUrls:
    """Where each worker's HTTP API is, from the operator's `--worker-url-template`."""

    def __init__(self, template: str) -> None:
        self._template = template

    def url(self, trader: tuple[str, str], workload: str, symbol: str) -> str:
        """The base URL of the worker `workload` of `trader` ((namespace, name)) for `symbol`."""
        namespace, name = trader
        return worker_url(self._template, name=workload, namespace=namespace, trader=name, symbol=symbol)


class HealthClient:
    """A shared aiohttp session with a short timeout for worker calls."""

    def __init__(self, timeout: float, metrics: OperatorMetrics | None = None) -> None:
        self._metrics = metrics or OperatorMetrics()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout,
                                                  connector=aiohttp.TCPConnector(limit=100, force_close=True))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def health(self, base_url: str) -> dict[str, Any] | None:
        """The worker's `/health` document, or None when it cannot be read."""
        try:
            async with self._get_session().get(f"{base_url}/health") as response:
                if response.status != 200:
                    self._metrics.health_polled("bad_status")
                    return None
                document = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            logger.debug("health of %s unavailable: %s", base_url, exc)
            self._metrics.health_polled("unreachable")
            return None
        self._metrics.health_polled("ok")
        return document if isinstance(document, dict) else None

    async def control(self, base_url: str, action: ControlAction, reason: str, scope: HaltScope, *,
                      token: str) -> bool:
        """POST `/control/halt` or `/control/resume` of one halt `scope`, presenting the trader's control `token`;
        True when the worker accepted it."""
        body = {"reason": reason, "scope": str(scope)}
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self._get_session().post(f"{base_url}/control/{action}", json=body,
                                                 headers=headers) as response:
                if response.status == 401:
                    logger.warning("control/%s on %s refused: the worker does not accept the trader's control "
                                   "credential (Secret rotated or mounted late?)", action, base_url)
                    self._metrics.error("worker_control")
                return response.status < 300
        except (TimeoutError, aiohttp.ClientError) as exc:
            logger.warning("control/%s on %s failed: %s", action, base_url, exc)
            self._metrics.error("worker_control")
            return False
