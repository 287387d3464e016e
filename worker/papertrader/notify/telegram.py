"""Telegram notifications and commands (python-telegram-bot), never on the engine's path.

- Categories ``trade``, ``error``, ``status``, ``system``; priorities ``critical`` < ``high`` < ``normal`` <
  ``low`` (critical is sent first). One bounded priority queue (NOTIFICATION_QUEUE_SIZE): when it is full a new
  message evicts the lowest-priority queued one if it outranks it, otherwise it is dropped; drops are counted.
- Hourly limits per category (ERROR_/TRADE_/STATUS_/SYSTEM_NOTIFICATIONS_PER_HOUR, sliding hour, counted
  when a message is accepted); over the limit the message is dropped and counted. Critical messages ignore
  the limit.
- Identical errors within ERROR_AGGREGATION_SECONDS become one message with a count.
- One sender task: network errors and 5xx are retried with exponential backoff (TELEGRAM_MAX_RETRIES), 429
  waits ``retry_after``; the ``notifications`` circuit breaker pauses sending while Telegram keeps failing.
- Commands from TELEGRAM_CHAT_ID only (long polling ``getUpdates``): /status /positions /trades /pnl /health
  /pause /resume /help; other chats are ignored and logged.
- The token (TELEGRAM_BOT_TOKEN or the file in TELEGRAM_BOT_TOKEN_FILE) is never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from papertrader.events import BaseListener, Fill

if TYPE_CHECKING:
    from papertrader.config import Settings
    from papertrader.observability.wiring import Observability
    from papertrader.resilience import CircuitBreaker

log = logging.getLogger("papertrader.notify")

CATEGORIES = ("trade", "error", "status", "system")
PRIORITIES = {"critical": 0, "high": 1, "normal": 2, "low": 3}
ICONS = {0: "🚨", 1: "⚠️", 2: "ℹ️", 3: "💭"}
MAX_TEXT = 4000  # Telegram's limit is 4096 characters
COMMANDS = ("status", "positions", "trades", "pnl", "health", "pause", "resume", "help")


def read_token(settings: Settings) -> str | None:
    """TELEGRAM_BOT_TOKEN, else the content of TELEGRAM_BOT_TOKEN_FILE (a mounted Secret), else None."""
    if settings.telegram_bot_token is not None and settings.telegram_bot_token.get_secret_value().strip():
        return settings.telegram_bot_token.get_secret_value().strip()
    path = settings.telegram_bot_token_file
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            log.error("TELEGRAM_BOT_TOKEN_FILE %s: cannot read (%s); notifications are off", path, exc.strerror)
            return None
        return token or None
    return None


@dataclass(order=True)
class Notification:
    priority: int
    seq: int
    category: str = field(compare=False)
    text: str = field(compare=False)
    created: float = field(compare=False, default_factory=time.monotonic)


class Notifier:
    """Queues, limits, aggregates and sends notifications; answers commands."""

    def __init__(self, settings: Settings, token: str | None, breaker: CircuitBreaker | None = None,
                 obs: Observability | None = None) -> None:
        self.settings = settings
        self.obs = obs
        self.enabled = bool(token and settings.telegram_chat_id)
        self._token = token or ""
        self.chat_id = str(settings.telegram_chat_id or "")
        self.breaker = breaker
        self.limits = {"error": settings.error_notifications_per_hour,
                       "trade": settings.trade_notifications_per_hour,
                       "status": settings.status_notifications_per_hour,
                       "system": settings.system_notifications_per_hour}
        self.max_queue = settings.notification_queue_size
        self.aggregation_window = settings.error_aggregation_seconds
        self.max_retries = settings.telegram_max_retries
        self.poll_commands = settings.telegram_poll_commands
        self.poll_timeout = 25.0
        self.backoff_base = 1.0
        self.backoff_max = 60.0
        self.sent: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.dropped: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.aggregated = 0
        self._heap: list[Notification] = []
        self._seq = itertools.count()
        self._window: dict[str, deque[float]] = {category: deque() for category in CATEGORIES}
        self._errors: dict[tuple[str, str], list[Any]] = {}  # key -> [count, first_seen, priority, text]
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.bot: Any = None
        self._update_offset: int | None = None

    # --- public API (sync, cheap, safe from anywhere on the loop's thread) ---------------------------------------
    def queue_size(self) -> int:
        return len(self._heap)

    def notify(self, category: str, text: str, priority: str = "normal") -> bool:
        """Queue a message; False when it was dropped (disabled, over the hourly limit, queue full)."""
        if category not in self.sent:
            category = "system"
        if not self.enabled:
            return False
        level = PRIORITIES.get(priority, 2)
        if level > 0 and not self._within_limit(category):
            self.dropped[category] += 1
            return False
        item = Notification(level, next(self._seq), category, text[:MAX_TEXT])
        if len(self._heap) >= self.max_queue:
            worst = max(self._heap)
            if worst.priority <= level:  # nothing of lower importance to evict
                self.dropped[category] += 1
                return False
            self._heap.remove(worst)
            heapq.heapify(self._heap)
            self.dropped[worst.category] += 1
        heapq.heappush(self._heap, item)
        self._wake.set()
        return True

    def error(self, kind: str, message: str, priority: str = "high") -> None:
        """An error to report; identical ones within the aggregation window become one message."""
        if not self.enabled:
            return
        if self.aggregation_window <= 0:
            self.notify("error", f"Error ({kind}): {message}", priority)
            return
        key = (kind, message[:300])
        entry = self._errors.get(key)
        if entry is None:
            self._errors[key] = [1, time.monotonic(), priority, message]
        else:
            entry[0] += 1
            self.aggregated += 1
            if PRIORITIES.get(priority, 2) < PRIORITIES.get(entry[2], 2):
                entry[2] = priority

    def send_performance_alert(self, alert_type: str, metric_name: str, current_value: float, threshold: float,
                               recommendation: str) -> bool:
        """The seed's custom performance alert."""
        text = (f"Performance alert ({alert_type})\n{metric_name}: {current_value:.4g} (threshold {threshold:.4g})"
                f"\nRecommendation: {recommendation}")
        return self.notify("system", text, "high")

    def _within_limit(self, category: str) -> bool:
        limit = self.limits.get(category, 0)
        window = self._window[category]
        now = time.monotonic()
        while window and now - window[0] >= 3600.0:
            window.popleft()
        if limit and len(window) >= limit:
            return False
        if not limit:
            return False
        window.append(now)
        return True

    def _flush_errors(self, force: bool = False) -> None:
        now = time.monotonic()
        for key, (count, first, priority, message) in list(self._errors.items()):
            if force or now - first >= self.aggregation_window:
                del self._errors[key]
                suffix = f" (x{count} in {self.aggregation_window:.0f} s)" if count > 1 else ""
                self.notify("error", f"Error ({key[0]}){suffix}: {message}", priority)

    # --- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.enabled:
            return
        from telegram import Bot
        from telegram.request import HTTPXRequest

        logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines contain the URL with the token
        logging.getLogger("httpcore").setLevel(logging.WARNING)
        logging.getLogger("telegram").setLevel(logging.INFO)  # its DEBUG lines contain the API URL with the token
        base = self.settings.telegram_api_url.rstrip("/") + "/bot"
        self.bot = Bot(self._token, base_url=base,
                       request=HTTPXRequest(connection_pool_size=4, connect_timeout=5, read_timeout=10,
                                            write_timeout=10),
                       get_updates_request=HTTPXRequest(connect_timeout=5, read_timeout=self.poll_timeout + 10))
        self._tasks.append(asyncio.create_task(self._send_loop(), name="telegram-sender"))
        self._tasks.append(asyncio.create_task(self._aggregate_loop(), name="telegram-aggregator"))
        if self.poll_commands:
            self._tasks.append(asyncio.create_task(self._poll_loop(), name="telegram-commands"))
        log.info("telegram notifications on (chat %s, API %s)", self.chat_id, self.settings.telegram_api_url)

    async def stop(self, drain_seconds: float = 2.0) -> None:
        if not self.enabled:
            return
        self._flush_errors(force=True)
        deadline = time.monotonic() + drain_seconds
        while self._heap and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks.clear()
        if self.bot is not None:
            try:
                await self.bot.shutdown()
            except Exception:  # noqa: BLE001
                pass

    def redact(self, text: str) -> str:
        return text.replace(self._token, "<token>") if self._token else text

    # --- sending -----------------------------------------------------------------------------------------------
    async def _aggregate_loop(self) -> None:
        tick = min(1.0, max(0.05, self.aggregation_window / 4)) if self.aggregation_window > 0 else 1.0
        while True:
            await asyncio.sleep(tick)
            if self._errors:
                self._flush_errors()

    async def _send_loop(self) -> None:
        while True:
            while not self._heap:
                self._wake.clear()
                await self._wake.wait()
            if self.breaker is not None and not self.breaker.allow():
                await asyncio.sleep(1.0)
                continue
            item = heapq.heappop(self._heap)
            if await self.deliver(item.text, item.priority):
                self.sent[item.category] += 1
            else:
                self.dropped[item.category] += 1

    async def deliver(self, text: str, priority: int = 2) -> bool:
        """Send one message with retries; True when Telegram accepted it."""
        from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError

        body = f"{ICONS.get(priority, '')} {text}".strip()
        attempt = 0
        while True:
            try:
                await self.bot.send_message(chat_id=self.chat_id, text=body)
                if self.breaker is not None:
                    self.breaker.record_success()
                return True
            except RetryAfter as exc:
                wait = _seconds(exc)
                log.warning("telegram rate limit (429): retrying in %.1f s", wait)
                attempt += 1
                if attempt > self.max_retries + 3:
                    return False
                await asyncio.sleep(wait)
            except (BadRequest, Forbidden, InvalidToken) as exc:
                log.error("telegram refused a message: %s", self.redact(str(exc)), extra={"papertrader_notified": True})
                if self.breaker is not None and isinstance(exc, (Forbidden, InvalidToken)):
                    self.breaker.record_failure(type(exc).__name__)
                return False
            except (NetworkError, TelegramError, OSError) as exc:
                if self.breaker is not None:
                    self.breaker.record_failure(type(exc).__name__)
                if attempt >= self.max_retries:
                    log.warning("telegram unreachable after %d attempts, message dropped: %s", attempt + 1,
                                self.redact(str(exc)))
                    return False
                delay = min(self.backoff_max, self.backoff_base * 2 ** attempt)
                attempt += 1
                log.info("telegram send failed (%s), retry %d in %.1f s", self.redact(str(exc)), attempt, delay)
                await asyncio.sleep(delay)

    # --- commands ----------------------------------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        from telegram.error import RetryAfter, TelegramError

        failures = 0
        while True:
            try:
                updates = await self.bot.get_updates(offset=self._update_offset, timeout=self.poll_timeout,
                                                     allowed_updates=["message"])
                failures = 0
            except RetryAfter as exc:
                await asyncio.sleep(_seconds(exc))
                continue
            except (TelegramError, OSError) as exc:
                failures += 1
                delay = min(self.backoff_max, self.backoff_base * 2 ** min(failures, 6))
                if failures <= 3 or failures % 20 == 0:
                    log.info("telegram getUpdates failed (%s), retrying in %.0f s", self.redact(str(exc)), delay)
                await asyncio.sleep(delay)
                continue
            for update in updates:
                self._update_offset = update.update_id + 1
                try:
                    await self.handle_update(update)
                except Exception as exc:  # noqa: BLE001 - one bad update must not stop polling
                    log.warning("telegram command failed: %s", self.redact(str(exc)))

    async def handle_update(self, update: Any) -> None:
        message = getattr(update, "message", None)
        if message is None or not message.text or not message.text.startswith("/"):
            return
        chat_id = str(message.chat.id)
        command = message.text.split()[0][1:].split("@")[0].lower()
        if chat_id != self.chat_id:
            log.warning("ignored telegram command /%s from unauthorised chat %s", command[:32], chat_id)
            return
        reply = self.command_reply(command, message.text)
        if await self.deliver(reply, 1):
            self.sent["status"] += 1

    def command_reply(self, command: str, text: str = "") -> str:
        obs = self.obs
        if obs is None:
            return "not available"
        if command == "help" or command not in COMMANDS:
            prefix = "" if command == "help" else f"unknown command /{command[:32]}\n"
            return prefix + ("/status - run status\n/positions - open positions\n/trades - last trades\n"
                             "/pnl - profit and loss\n/health - health breakdown\n/pause - stop new entries\n"
                             "/resume - allow new entries\n/help - this list")
        if command == "pause":
            reason = text.partition(" ")[2].strip() or "paused via Telegram"
            obs.halt(reason[:200], source="telegram")
            return f"{obs.symbol}: new entries halted ({reason[:200]}); open positions are still managed"
        if command == "resume":
            obs.resume(source="telegram")
            halts = obs.runner.engine.risk.state.halts
            return f"{obs.symbol}: entries resumed" + (f" (still halted: {', '.join(halts)})" if halts else "")
        return obs.describe(command)


def _seconds(exc: Any) -> float:
    value = getattr(exc, "_retry_after", None)
    if value is None:
        value = exc.retry_after
    if isinstance(value, dt.timedelta):
        return max(0.0, value.total_seconds())
    return max(0.0, float(value))


class NotifyListener(BaseListener):
    """Turns engine events into notifications (trades)."""

    def __init__(self, notifier: Notifier, symbol: str) -> None:
        self.notifier = notifier
        self.symbol = symbol

    def on_fill(self, fill: Fill) -> None:
        notifier = self.notifier
        if not notifier.enabled:
            return
        pnl = f", P&L {fill.realized_pnl}" if fill.side == "sell" else ""
        notifier.notify("trade", f"{fill.side.upper()} {fill.quantity} {self.symbol} @ {fill.price} "
                                 f"(fee {fill.fee}{pnl}) - {fill.reason}", "normal")
