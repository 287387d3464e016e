"""Routes the workers' notifications to their chats: one :class:`Outbox` per chat, the fleet's hourly limits shared
by all of them, a trader's own limits on top, and Telegram's per-chat rate (one message a second to a chat, 20 a
minute to a group) before each send; 429 answers wait ``retry_after`` (in :class:`TelegramBot`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from papertrader.errors import PapertraderError
from papertrader.notify.outbox import CATEGORIES, PRIORITIES, HourlyLimits, Notification, Outbox, error_text, stop_tasks
from papertrader.notify.telegram import TelegramBot


class BadNotification(PapertraderError, ValueError):
    """A POSTed notification that does not follow the wire format (the message says what is wrong)."""


def parse(body: Any) -> dict[str, Any]:
    """Validate one POSTed notification (docs/operator.md, "Fleet notifier")."""
    if not isinstance(body, dict):
        raise BadNotification("body must be a JSON object")
    out: dict[str, Any] = {}
    for key in ("trader", "symbol", "text"):
        value = body.get(key, "")
        if not isinstance(value, str):
            raise BadNotification(f"{key} must be a string")
        out[key] = value
    category, priority = body.get("category", "system"), body.get("priority", "normal")
    if category not in CATEGORIES:
        raise BadNotification(f"category must be one of {', '.join(CATEGORIES)}")
    if priority not in PRIORITIES:
        raise BadNotification(f"priority must be one of {', '.join(PRIORITIES)}")
    out.update(category=category, priority=priority, chat_id=str(body.get("chat_id") or ""))
    limits = body.get("limits")
    if limits is not None:
        if not isinstance(limits, dict) or not all(isinstance(v, int) and v >= 0 for v in limits.values()):
            raise BadNotification("limits must map categories to whole numbers")
        out["limits"] = {str(k): int(v) for k, v in limits.items()}
    error = body.get("error")
    if error is not None:
        if not isinstance(error, dict) or not isinstance(error.get("kind"), str) \
                or not isinstance(error.get("message"), str) or not isinstance(error.get("count", 1), int):
            raise BadNotification("error must be {kind: str, message: str, count: int}")
        out["error"] = (error["kind"], error["message"], max(1, int(error.get("count", 1))))
    elif not out["text"]:
        raise BadNotification("text must not be empty")
    return out


class ChatPacer:
    """Telegram's per-chat rate: ``interval`` seconds between messages to one chat, ``group_per_minute`` to a group
    (a negative chat id). A chat's messages take turns (one send in flight per chat, retries included) and the
    interval counts from the end of the previous send, so a slow or retried send never lets the next one follow it
    closer than ``interval`` at Telegram."""

    def __init__(self, interval: float = 1.0, group_per_minute: int = 20) -> None:
        self.interval = interval
        self.group_per_minute = group_per_minute
        self._last: dict[str, float] = {}
        self._minute: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    @contextlib.asynccontextmanager
    async def turn(self, chat_id: str) -> AsyncIterator[None]:
        """Wait for the chat's turn and rate, send inside the block."""
        async with self._locks[chat_id]:
            await self._wait(chat_id)
            try:
                yield
            finally:
                self._last[chat_id] = time.monotonic()

    async def _wait(self, chat_id: str) -> None:
        while True:
            now = time.monotonic()
            delay = self._last.get(chat_id, -1e9) + self.interval - now
            window = self._minute[chat_id]
            while window and now - window[0] >= 60.0:
                window.popleft()
            if chat_id.startswith("-") and len(window) >= self.group_per_minute:
                delay = max(delay, window[0] + 60.0 - now)
            if delay <= 0:
                window.append(now)
                return
            await asyncio.sleep(delay)


class Router:
    """Accepts notifications, keeps one outbox per chat, sends them through the bot."""

    def __init__(self, bot: TelegramBot, default_chat: str, limits: Mapping[str, int], max_queue: int,
                 aggregation_window: float, pacer: ChatPacer | None = None) -> None:
        self.bot = bot
        self.default_chat = default_chat
        self.fleet_limits = HourlyLimits(limits)
        self.max_queue = max_queue
        self.aggregation_window = aggregation_window
        self.pacer = pacer or ChatPacer()
        self.outboxes: dict[str, Outbox] = {}
        self.trader_limits: dict[str, HourlyLimits] = {}
        self._declared: dict[str, dict[str, int]] = {}  # the limits each trader's workers declared
        self.received: collections.Counter[str] = collections.Counter()  # by category
        self.refused = 0  # bad requests
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    # --- accepting ---------------------------------------------------------------------------------------------
    def accept(self, body: Any) -> bool | asyncio.Future[bool]:
        """Take one POSTed notification: False when the policy dropped it, True when queued; for a critical one a
        future resolved once Telegram took it (the worker retries until then). Raises :class:`BadNotification`."""
        note = parse(body)
        self.received[note["category"]] += 1
        trader, symbol = note["trader"], note["symbol"]
        if "limits" in note and trader and self._declared.get(trader) != note["limits"]:
            self._declared[trader] = note["limits"]  # a category the trader does not limit: the fleet's limit
            self.trader_limits[trader] = HourlyLimits({**self.fleet_limits.limits, **note["limits"]})
        outbox = self.outbox(note["chat_id"] or self.default_chat)
        source = "/".join(part for part in (trader, symbol) if part)
        critical = note["priority"] == "critical"
        if "error" in note:
            kind, message, count = note["error"]
            if not critical:  # a critical error is not held back for aggregation
                outbox.error(kind, message, note["priority"], source=source, count=count)
                return True
            text = error_text(kind, message, count, outbox.aggregation_window, [source] if source else [])
        else:
            text = f"{source}: {note['text']}" if source else note["text"]
        ack: asyncio.Future[bool] | None = asyncio.get_running_loop().create_future() if critical else None
        queued = outbox.notify(note["category"], text, note["priority"], extra_limits=self._limits_of([source]),
                               error=note.get("error"), ack=ack)
        return ack if ack is not None else queued

    def _limits_of(self, sources: Iterable[str]) -> list[HourlyLimits]:
        traders = {source.split("/", 1)[0] for source in sources}
        return [self.trader_limits[t] for t in sorted(traders) if t in self.trader_limits]

    def outbox(self, chat_id: str) -> Outbox:
        outbox = self.outboxes.get(chat_id)
        if outbox is None:
            outbox = self.outboxes[chat_id] = Outbox(self.max_queue, self.aggregation_window, self.fleet_limits)
            if self._started:
                self._run(chat_id, outbox)
        return outbox

    # --- sending -----------------------------------------------------------------------------------------------
    async def send_now(self, chat_id: str, text: str, priority: int = 1) -> bool:
        """A command's reply: paced like every message to the chat, not limited."""
        async with self.pacer.turn(chat_id):
            return await self.bot.send(chat_id, text, priority)

    def _run(self, chat_id: str, outbox: Outbox) -> None:
        async def send(item: Notification) -> bool:
            async with self.pacer.turn(chat_id):
                return await self.bot.send(chat_id, item.text, item.priority)

        self._tasks.append(asyncio.create_task(outbox.drain(send), name=f"notifier-send-{chat_id}"))
        self._tasks.append(asyncio.create_task(outbox.aggregate(self._limits_of), name=f"notifier-agg-{chat_id}"))

    async def start(self) -> None:
        self._started = True
        self.outbox(self.default_chat)
        for chat_id, outbox in self.outboxes.items():
            if not any(task.get_name() == f"notifier-send-{chat_id}" for task in self._tasks):
                self._run(chat_id, outbox)

    async def stop(self, drain_seconds: float = 5.0) -> None:
        for outbox in self.outboxes.values():
            outbox.flush_errors(force=True, extra_limits=self._limits_of)
        await stop_tasks(self._tasks, lambda: any(o.queue_size() for o in self.outboxes.values()), drain_seconds)

    # --- counts for /metrics -----------------------------------------------------------------------------------
    def totals(self, what: str) -> collections.Counter[str]:
        """Summed over chats: ``sent`` / ``dropped`` by category, ``drop_reasons`` by reason."""
        total: collections.Counter[str] = collections.Counter()
        for outbox in self.outboxes.values():
            total.update(getattr(outbox, what))
        return total

    def queued(self) -> int:
        return sum(o.queue_size() + o.pending_errors() for o in self.outboxes.values())
