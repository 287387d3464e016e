"""Upstream REST for the gateway: budgeted, coalesced (identical requests in flight share one answer).

Every request first asks the :class:`~papertrader.market.gateway.budget.WeightBudget`; a refusal comes back as a
:class:`Refused` (with the exchange time to retry at) without touching the exchange. Rate-limit answers block the
budget centrally and come back as :class:`Refused` too, so clients never see the exchange's ban. Network failures
and timeouts come back as a 503 answer (the exchange is down, for the client as for a worker talking to it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from papertrader.market.bitvavo.clock import ExchangeClock
from papertrader.market.bitvavo.parse import api_error
from papertrader.market.bitvavo.session import LazySession
from papertrader.market.gateway.budget import WeightBudget

log = logging.getLogger("papertrader.gateway")


@dataclass(frozen=True)
class Answer:
    """An upstream answer: HTTP status and decoded JSON body (None when not JSON)."""

    status: int
    body: Any
    sent_exchange_ms: int  # the gateway's exchange clock when the request was sent, minus its uncertainty


@dataclass(frozen=True)
class Refused:
    """Not sent (budget spent, rate limited, banned): retry at this exchange time (0: not known yet, the clock has
    never been synchronised)."""

    retry_at_ms: int


DOWN_BODY = {"errorCode": 101, "error": "Market gateway: the exchange is unreachable; retry later."}


class UpstreamRest:
    """GETs against the exchange's REST base URL."""

    def __init__(self, base_url: str, clock: ExchangeClock, budget: WeightBudget, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.budget = budget
        self._http = LazySession(timeout_s)
        self._inflight: dict[tuple[str, tuple[tuple[str, str], ...]], asyncio.Task[Answer | Refused]] = {}
        self.requests_by_path: dict[str, int] = {}
        self.coalesced = 0
        self.failures = 0

    async def close(self) -> None:
        await self._http.close()

    async def get(self, path: str, params: dict[str, str] | None = None) -> Answer | Refused:
        """GET ``path`` (relative to the base URL); identical requests in flight are sent once."""
        key = (path, tuple(sorted((params or {}).items())))
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._send(path, params))
            self._inflight[key] = task
            task.add_done_callback(lambda _done: self._inflight.pop(key, None))
        else:
            self.coalesced += 1
        return await asyncio.shield(task)  # a client that goes away does not cancel the others' answer

    async def _send(self, path: str, params: dict[str, str] | None) -> Answer | Refused:
        retry_at = self.budget.try_spend(1)
        if retry_at is not None:
            return Refused(retry_at)
        name = path.split("/")[-1] if "/" in path else path
        self.requests_by_path[name] = self.requests_by_path.get(name, 0) + 1
        sent_local = time.monotonic()
        sent_ms = self.budget.now() - int(self.clock.round_trip_ms * max(self.clock.rate, 1.0))
        try:
            async with self._http.session().get(f"{self.base_url}/{path}", params=params) as response:
                text = await response.text()
                status, headers = response.status, response.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.failures += 1
            log.warning("upstream GET /%s failed: %s %s", path, type(exc).__name__, str(exc)[:100])
            return Answer(503, DOWN_BODY, sent_ms)
        self.budget.observe(headers)
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        error = api_error(body)
        if status == 429 or (error is not None and error.rate_limited and status not in (404, 405)):
            return Refused(self.budget.rate_limited(headers, error.ban_expiry_ms() if error else None))
        if status >= 500:
            self.failures += 1
        log.debug("upstream GET /%s %s: %d in %.1f ms", path, params, status, (time.monotonic() - sent_local) * 1e3)
        return Answer(status, body, sent_ms)

    async def sync_time(self) -> bool:
        """``GET /time`` into the clock; False when it failed or was refused."""
        sent = time.monotonic()
        answer = await self.get("time")
        received = time.monotonic()
        if isinstance(answer, Refused) or answer.status != 200 or not isinstance(answer.body, dict):
            return False
        try:
            server_ms = int(answer.body["time"])
        except (KeyError, TypeError, ValueError):
            return False
        self.clock.record_sync(server_ms, sent, received)
        return True
