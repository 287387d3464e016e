"""One lazily opened aiohttp session with a total timeout (opened again after a close), for REST clients."""

from __future__ import annotations

import aiohttp


class LazySession:
    """``session()`` opens the aiohttp session on first use (inside the running loop); ``close()`` closes it."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
