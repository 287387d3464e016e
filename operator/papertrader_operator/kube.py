"""A small asyncio Kubernetes API client (aiohttp) for the children, with retries and backoff.

kopf's own API client is private, so the operator keeps the credentials kopf logs in with (`@kopf.on.login`)
and talks to the API server with this client: JSON in and out, merge patches, and bounded retries with
exponential backoff on 429, 5xx and connection errors.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import kopf

from papertrader_operator.errors import OperatorError
from papertrader_operator.metrics import OperatorMetrics

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# kind -> (API path prefix, plural)
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "Secret": ("/api/v1", "secrets"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "PaperTrader": ("/apis/papertrader.io/v1alpha1", "papertraders"),
}


class ApiError(OperatorError):
    """A failed API request: the HTTP status and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def object_path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    """The REST path of a namespaced object (or of its collection when `name` is None)."""
    prefix, plural = KINDS[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def _write_temp(data: str | bytes) -> str:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    with tempfile.NamedTemporaryFile(delete=False, suffix=".pem") as handle:
        handle.write(raw)
        return handle.name


def ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    """The TLS settings of a kopf ConnectionInfo (CA, client certificate, insecure flag)."""
    if info.insecure:
        return False
    if not info.server.startswith("https"):
        return True
    cadata = base64.b64decode(info.ca_data).decode() if info.ca_data else None
    context = ssl.create_default_context(cafile=info.ca_path or None, cadata=cadata)
    cert = info.certificate_path or (_write_temp(info.certificate_data) if info.certificate_data else None)
    key = info.private_key_path or (_write_temp(info.private_key_data) if info.private_key_data else None)
    if cert:
        context.load_cert_chain(cert, key)
    return context


class KubeClient:
    """JSON requests against the API server described by a kopf ConnectionInfo."""

    def __init__(self, login: Callable[[], Awaitable[kopf.ConnectionInfo]], *, timeout: float = 30.0,
                 retries: int = 5, backoff: float = 0.2, metrics: OperatorMetrics | None = None) -> None:
        self._login = login
        self._metrics = metrics or OperatorMetrics()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._backoff = backoff
        self._session: aiohttp.ClientSession | None = None
        self._info: kopf.ConnectionInfo | None = None

    async def _connect(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._info = info = await self._login()
            headers = {"Accept": "application/json", "User-Agent": "papertrader-operator"}
            auth = None
            if info.token:
                headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
            elif info.username and info.password:
                auth = aiohttp.BasicAuth(info.username, info.password)
            connector = aiohttp.TCPConnector(ssl=ssl_context(info), limit=50)
            self._session = aiohttp.ClientSession(base_url=info.server.rstrip("/"), headers=headers, auth=auth,
                                                  connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session; the next request logs in again."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
                      content_type: str = "application/json") -> Any:
        """One API call with retries; returns the decoded JSON body, raises ApiError otherwise."""
        for attempt in range(self._retries + 1):
            try:
                session = await self._connect()
                data = None if body is None else json.dumps(body)
                async with session.request(method, path, data=data, params=params,
                                           headers={"Content-Type": content_type}) as response:
                    text = await response.text()
                    if response.status < 400:
                        return await response.json(content_type=None) if text else None
                    if response.status == 401:
                        await self.close()  # credentials may have rotated: log in again
                    if response.status not in RETRY_STATUSES | {401} or attempt == self._retries:
                        raise ApiError(response.status, _message(text))
                    error: Exception = ApiError(response.status, _message(text))
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                if attempt == self._retries:
                    self._metrics.error("api_connection")
                    raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc
                error = exc
            delay = self._backoff * 2 ** attempt
            logger.warning("API %s %s failed (%s); retry %d in %.1fs", method, path, error, attempt + 1, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", object_path(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace (or everywhere), with `kind` filled in on each item."""
        prefix, plural = KINDS[kind]
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
        result = await self.request("GET", path, params={"labelSelector": label_selector})
        return [{**item, "kind": kind} for item in (result or {}).get("items", [])]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a namespaced object."""
        meta = body["metadata"]
        return await self.request("POST", object_path(body["kind"], meta["namespace"]), body=body)

    async def merge_patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any],
                          subresource: str | None = None) -> dict[str, Any]:
        """Apply a JSON merge patch (RFC 7386)."""
        return await self.request("PATCH", object_path(kind, namespace, name, subresource), body=patch,
                                  content_type="application/merge-patch+json")

    async def delete(self, kind: str, namespace: str, name: str, propagation: str = "Background") -> None:
        """Delete an object; a missing one is fine."""
        try:
            await self.request("DELETE", object_path(kind, namespace, name),
                               body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation})
        except ApiError as exc:
            if exc.status != 404:
                raise


def _message(text: str) -> str:
    try:
        return str(json.loads(text).get("message", text))[:500]
    except (ValueError, AttributeError):
        return text[:500]
