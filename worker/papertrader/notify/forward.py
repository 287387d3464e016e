"""A worker's notifications handed to the fleet notifier (NOTIFIER_URL) instead of Telegram.

The engine only queues (:class:`~.outbox.Outbox`, bounded, NOTIFICATION_QUEUE_SIZE); one background task POSTs each
message to ``{NOTIFIER_URL}/v1/notifications`` (wire format: docs/operator.md, "Fleet notifier"). The notifier
applies the hourly limits and the aggregation for the fleet; the worker only coalesces identical errors for a
moment (up to 2 s) so a storm is not one request per log line.

Bounded retry: a critical message is retried with backoff (up to 5 s apart) for NOTIFIER_RETRY_SECONDS (default
300 s: a notifier restart); the notifier answers a critical POST only once Telegram has it, so a notifier killed in
between means a retry (at least once, possibly twice). Other messages get 3 attempts. What is given up is counted in
``papertrader_notifications_dropped_total{category}`` and logged; so is what a full queue evicts (the lowest
priority first, a critical only when the queue holds nothing but criticals).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from papertrader.notify.outbox import PRIORITY_NAMES, Notification, Outbox, OutboxFront, stop_tasks

if TYPE_CHECKING:
    from papertrader.config_groups import NotifySettings

log = logging.getLogger("papertrader.notify")

LOCAL_AGGREGATION_MAX = 2.0  # seconds the worker coalesces identical errors before handing them on
OTHER_ATTEMPTS = 3
REFUSED = "refused"


def parse_limits(raw: str | None) -> dict[str, int] | None:
    """NOTIFIER_LIMITS (JSON object of category -> messages per hour), None when unset or invalid (logged)."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
        limits = {str(k): int(v) for k, v in value.items()}
    except (ValueError, TypeError, AttributeError):
        log.error("NOTIFIER_LIMITS %r is not a JSON object of category -> number; the fleet's limits apply", raw[:80])
        return None
    return limits


class FleetForwarder(OutboxFront):
    """The worker side of the fleet notifier: same interface as the worker's own Telegram ``Notifier``."""

    def __init__(self, settings: NotifySettings) -> None:
        self.url = str(settings.notifier_url).rstrip("/")
        self.enabled = True
        self.route: dict[str, Any] = {"trader": settings.notifier_trader, "symbol": settings.symbol}
        if settings.notifier_chat_id:
            self.route["chat_id"] = str(settings.notifier_chat_id)
        limits = parse_limits(settings.notifier_limits)
        if limits:
            self.route["limits"] = limits
        self.outbox = Outbox(settings.notification_queue_size,
                             min(settings.error_aggregation_seconds, LOCAL_AGGREGATION_MAX))
        self.retry_seconds = settings.notifier_retry_seconds
        self.backoff_base = 0.2
        self.backoff_max = 5.0
        self.timeout = aiohttp.ClientTimeout(total=5)
        self.critical_timeout = aiohttp.ClientTimeout(total=40)  # the notifier holds a critical up to 30 s
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unreachable_since: float | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self.timeout)
        self._tasks.append(asyncio.create_task(self.outbox.drain(self._send), name="notifier-forwarder"))
        self._tasks.append(asyncio.create_task(self.outbox.aggregate(), name="notifier-aggregator"))
        log.info("notifications go to the fleet notifier at %s (trader %s)", self.url, self.route["trader"] or "-")

    async def stop(self, drain_seconds: float = 2.0) -> None:
        self.outbox.flush_errors(force=True)
        await stop_tasks(self._tasks, lambda: self.outbox.queue_size() > 0, drain_seconds)
        if self.outbox.queue_size():
            log.warning("%d notification(s) not handed to the notifier before stopping", self.outbox.queue_size())
        if self._session is not None:
            await self._session.close()
            self._session = None

    def body(self, item: Notification) -> dict[str, Any]:
        """The JSON the notifier accepts for one message."""
        body = {**self.route, "category": item.category, "priority": PRIORITY_NAMES.get(item.priority, "normal"),
                "text": item.text}
        if item.error is not None:
            kind, message, count = item.error
            body["error"] = {"kind": kind, "message": message, "count": count}
        return body

    async def _send(self, item: Notification) -> bool:
        critical = item.priority == 0
        body = self.body(item)
        started = time.monotonic()
        attempt = 0
        while True:
            problem = await self._post(body, critical)
            if problem == REFUSED:
                return False
            if problem is None:
                if self._unreachable_since is not None:
                    log.info("fleet notifier reachable again after %.1f s", time.monotonic() - self._unreachable_since)
                    self._unreachable_since = None
                return True
            attempt += 1
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
                log.warning("fleet notifier %s unreachable (%s); critical messages are retried for %.0f s",
                            self.url, problem, self.retry_seconds)
            gave_up = (time.monotonic() - started >= self.retry_seconds) if critical else attempt >= OTHER_ATTEMPTS
            if gave_up:
                log.warning("notification dropped (%s, %s) after %d attempts: %s", item.category,
                            PRIORITY_NAMES.get(item.priority), attempt, problem)
                return False
            await asyncio.sleep(min(self.backoff_max, self.backoff_base * 2 ** min(attempt - 1, 6)))

    async def _post(self, body: dict[str, Any], critical: bool) -> str | None:
        """None when the notifier took the message, REFUSED when it never will, else what went wrong. The notifier
        answers a critical one only once Telegram has it, so a notifier killed before that means a retry."""
        assert self._session is not None
        timeout = self.critical_timeout if critical else self.timeout
        try:
            async with self._session.post(f"{self.url}/v1/notifications", json=body, timeout=timeout) as response:
                if response.status < 300:
                    return None
                if 400 <= response.status < 500 and response.status != 429:
                    text = (await response.text())[:200]
                    log.error("fleet notifier refused a notification (%d): %s", response.status, text,
                              extra={"papertrader_notified": True})
                    return REFUSED  # a bad message is not retried
                return f"HTTP {response.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:200]
