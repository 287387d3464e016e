"""Each PaperTrader's control credential: created once as the Secret `<trader>-control`, read back and cached.

The workers of a trader mount that Secret (CONTROL_TOKEN_FILE) and refuse `POST /control/*` without it; the
operator presents it when it sends the portfolio halt and resume. The token is random (256 bits), made by the
operator the first time it sees the trader, and kept as long as the Secret exists: the Secret is owned by the
PaperTrader, so deleting the trader deletes it, and a new trader of the same name gets a new token.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

from papertrader_operator import settings as s
from papertrader_operator.children import control_secret_name, render_control_secret
from papertrader_operator.errors import OperatorError
from papertrader_operator.kube import ApiError, KubeClient


class ControlTokenError(OperatorError):
    """The trader's control Secret exists but holds no usable token."""


class ControlTokens:
    """Get-or-create of each trader's control token, cached by the trader's uid."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self._cache: dict[tuple[str, str, str], str] = {}

    async def token(self, trader: dict[str, Any]) -> str:
        """The trader's token, creating its Secret when there is none."""
        meta = trader["metadata"]
        key = (meta["namespace"], meta["name"], meta.get("uid", ""))
        if key not in self._cache:
            self._cache[key] = await self._get_or_create(trader)
        return self._cache[key]

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted trader's token."""
        for key in [key for key in self._cache if key[:2] == (namespace, name)]:
            del self._cache[key]

    async def _get_or_create(self, trader: dict[str, Any]) -> str:
        namespace, name = trader["metadata"]["namespace"], control_secret_name(trader["metadata"]["name"])
        existing = await self._kube.get("Secret", namespace, name)
        if existing is None:
            token = secrets.token_urlsafe(32)
            try:
                await self._kube.create(render_control_secret(trader, token))
                return token
            except ApiError as exc:
                if exc.status != 409:  # created meanwhile (a second operator replica): read theirs
                    raise
            existing = await self._kube.get("Secret", namespace, name)
        return _token_of(existing, namespace, name)


def _token_of(secret: dict[str, Any] | None, namespace: str, name: str) -> str:
    data = (secret or {}).get("data") or {}
    try:
        token = base64.b64decode(data.get(s.CONTROL_SECRET_KEY) or "", validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        token = ""
    if not token:
        raise ControlTokenError(f"Secret {namespace}/{name} has no usable key {s.CONTROL_SECRET_KEY!r}: delete it "
                                "and the operator makes a new one")
    return token
