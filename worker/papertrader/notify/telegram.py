"""Telegram notifications and commands (python-telegram-bot), never on the engine's path.

- The policy (priority queue NOTIFICATION_QUEUE_SIZE, hourly limits ERROR_/TRADE_/STATUS_/SYSTEM_NOTIFICATIONS_PER_HOUR,
  identical errors within ERROR_AGGREGATION_SECONDS as one message with a count) is :class:`~.outbox.Outbox`.
- :class:`TelegramBot` is the transport: one sender task; network errors and 5xx are retried with exponential
  backoff (TELEGRAM_MAX_RETRIES), 429 waits ``retry_after``; the ``notifications`` circuit breaker pauses sending
  while Telegram keeps failing; long polling ``getUpdates`` for commands.
- :class:`Notifier` is a single worker's own bot (``papertrader run`` with a token): commands from TELEGRAM_CHAT_ID
  only: /status /positions /trades /pnl /health /pause /resume /help; other chats are ignored and logged. In a
  cluster the workers hand their notifications to the fleet notifier instead (notify/forward.py, notify/fleet/).
- The token (TELEGRAM_BOT_TOKEN or the file in TELEGRAM_BOT_TOKEN_FILE) is never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from papertrader.events import BaseListener, Fill, Side
from papertrader.notify.outbox import ICONS, HourlyLimits, Notification, Outbox, OutboxFront, stop_tasks

if TYPE_CHECKING:
    from papertrader.config_groups import NotifySettings
    from papertrader.resilience import CircuitBreaker

log = logging.getLogger("papertrader.notify")

COMMANDS = ("status", "positions", "trades", "pnl", "health", "pause", "resume", "help")


class CommandAnswers(Protocol):
    """Answers a worker's chat commands (``status``, ``positions``, ``trades``, ``pnl``, ``health``, ``pause``,
    ``resume``); ``text`` is the whole message (``/pause reason``)."""

    def reply(self, command: str, text: str) -> str: ...


def read_token(settings: NotifySettings) -> str | None:
    """TELEGRAM_BOT_TOKEN, else the content of TELEGRAM_BOT_TOKEN_FILE (a mounted Secret), else None."""
    value = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token is not None else None
    return token_from(value, settings.telegram_bot_token_file)


def token_from(value: str | None, path: Path | None) -> str | None:
    """A token given directly, else read from a file; None (and one error line for an unreadable file)."""
    if value is not None and value.strip():
        return value.strip()
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            log.error("TELEGRAM_BOT_TOKEN_FILE %s: cannot read (%s); notifications are off", path, exc.strerror)
            return None
        return token or None
    return None


class TelegramBot:
    """The Bot API transport: sends a message with retries (backoff on network errors and 5xx, ``retry_after`` on
    429, the ``notifications`` breaker) and long-polls ``getUpdates`` for commands. Holds the token; never logs it."""

    def __init__(self, token: str, api_url: str, max_retries: int, breaker: CircuitBreaker | None = None) -> None:
        self._token = token
        self.api_url = api_url
        self.max_retries = max_retries
        self.breaker = breaker
        self.poll_timeout = 25.0
        self.backoff_base = 1.0
        self.backoff_max = 60.0
        self.rate_limited = 0  # 429 answers seen
        self.bot: Any = None
        self._update_offset: int | None = None

    async def start(self) -> None:
        from telegram import Bot
        from telegram.request import HTTPXRequest

        logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines contain the URL with the token
        logging.getLogger("httpcore").setLevel(logging.WARNING)
        logging.getLogger("telegram").setLevel(logging.INFO)  # its DEBUG lines contain the API URL with the token
        base = self.api_url.rstrip("/") + "/bot"
        self.bot = Bot(self._token, base_url=base,
                       request=HTTPXRequest(connection_pool_size=4, connect_timeout=5, read_timeout=10,
                                            write_timeout=10),
                       get_updates_request=HTTPXRequest(connect_timeout=5, read_timeout=self.poll_timeout + 10))

    async def stop(self) -> None:
        if self.bot is not None:
            try:
                await self.bot.shutdown()
            except Exception:  # noqa: BLE001 - shutting down: a failing bot close changes nothing
                pass

    def redact(self, text: str) -> str:
        return text.replace(self._token, "<token>") if self._token else text

    async def send(self, chat_id: str, text: str, priority: int = 2) -> bool:
        """Send one message with retries; True when Telegram accepted it."""
        from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError

        body = f"{ICONS.get(priority, '')} {text}".strip()
        attempt = 0
        while True:
            try:
                await self.bot.send_message(chat_id=chat_id, text=body)
                if self.breaker is not None:
                    self.breaker.record_success()
                return True
            except RetryAfter as exc:
                wait = _seconds(exc)
                self.rate_limited += 1
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

    async def poll(self, handle: Callable[[str, str], Awaitable[None]]) -> None:
        """Forever: long-poll ``getUpdates`` and hand each command (chat id, text) to ``handle``."""
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
                message = getattr(update, "message", None)
                if message is None or not message.text or not message.text.startswith("/"):
                    continue
                try:
                    await handle(str(message.chat.id), message.text)
                except Exception as exc:  # noqa: BLE001 - one bad update must not stop polling
                    log.warning("telegram command failed: %s", self.redact(str(exc)))


def command_name(text: str) -> str:
    """``/status@mybot demo`` -> ``status``."""
    return text.split()[0][1:].split("@")[0].lower()


class Notifier(OutboxFront):
    """A worker's own Telegram notifier (``papertrader run`` with a token): the policy of :class:`Outbox`, sent
    through :class:`TelegramBot`; answers commands about this worker."""

    def __init__(self, settings: NotifySettings, token: str | None, breaker: CircuitBreaker | None = None,
                 commands: CommandAnswers | None = None) -> None:
        self.api_url = settings.telegram_api_url
        self.commands = commands
        self.enabled = bool(token and settings.telegram_chat_id)
        self.chat_id = str(settings.telegram_chat_id or "")
        self.limits = {"error": settings.error_notifications_per_hour,
                       "trade": settings.trade_notifications_per_hour,
                       "status": settings.status_notifications_per_hour,
                       "system": settings.system_notifications_per_hour}
        self.outbox = Outbox(settings.notification_queue_size, settings.error_aggregation_seconds,
                             HourlyLimits(self.limits))
        self.transport = TelegramBot(token or "", settings.telegram_api_url, settings.telegram_max_retries, breaker)
        self.breaker = breaker
        self.poll_commands = settings.telegram_poll_commands
        self._tasks: list[asyncio.Task[None]] = []

    def answer_with(self, commands: CommandAnswers) -> None:
        """Answer chat commands with ``commands`` (built after the notifier: a pause is announced through it)."""
        self.commands = commands

    # --- what the transport and the outbox count ----------------------------------------------------------------
    @property
    def aggregated(self) -> int:
        return self.outbox.aggregated

    @property
    def poll_timeout(self) -> float:
        return self.transport.poll_timeout

    @poll_timeout.setter
    def poll_timeout(self, seconds: float) -> None:
        self.transport.poll_timeout = seconds

    @property
    def backoff_base(self) -> float:
        return self.transport.backoff_base

    @backoff_base.setter
    def backoff_base(self, seconds: float) -> None:
        self.transport.backoff_base = seconds

    # --- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.enabled:
            return
        await self.transport.start()
        gate = self.breaker.allow if self.breaker is not None else None
        self._tasks.append(asyncio.create_task(self.outbox.drain(self._send, gate), name="telegram-sender"))
        self._tasks.append(asyncio.create_task(self.outbox.aggregate(), name="telegram-aggregator"))
        if self.poll_commands:
            self._tasks.append(asyncio.create_task(self.transport.poll(self.handle_command),
                                                   name="telegram-commands"))
        log.info("telegram notifications on (chat %s, API %s)", self.chat_id, self.api_url)

    async def stop(self, drain_seconds: float = 2.0) -> None:
        if not self.enabled:
            return
        self.outbox.flush_errors(force=True)
        await stop_tasks(self._tasks, lambda: self.outbox.queue_size() > 0, drain_seconds)
        await self.transport.stop()

    async def _send(self, item: Notification) -> bool:
        return await self.transport.send(self.chat_id, item.text, item.priority)

    # --- commands ----------------------------------------------------------------------------------------------
    async def handle_command(self, chat_id: str, text: str) -> None:
        command = command_name(text)
        if chat_id != self.chat_id:
            log.warning("ignored telegram command /%s from unauthorised chat %s", command[:32], chat_id)
            return
        reply = self.command_reply(command, text)
        if await self.transport.send(self.chat_id, reply, 1):
            self.sent["status"] += 1

    def command_reply(self, command: str, text: str = "") -> str:
        if self.commands is None:
            return "not available"
        if command == "help" or command not in COMMANDS:
            prefix = "" if command == "help" else f"unknown command /{command[:32]}\n"
            return prefix + ("/status - run status\n/positions - open positions\n/trades - last trades\n"
                             "/pnl - profit and loss\n/health - health breakdown\n/pause - stop new entries\n"
                             "/resume - allow new entries\n/help - this list")
        return self.commands.reply(command, text)


def _seconds(exc: Any) -> float:
    value = getattr(exc, "_retry_after", None)
    if value is None:
        value = exc.retry_after
    if isinstance(value, dt.timedelta):
        return max(0.0, value.total_seconds())
    return max(0.0, float(value))


class NotifyListener(BaseListener):
    """Turns engine events into notifications (trades)."""

    def __init__(self, notifier: OutboxFront, symbol: str) -> None:
        self.notifier = notifier
        self.symbol = symbol

    def on_fill(self, fill: Fill) -> None:
        notifier = self.notifier
        if not notifier.enabled:
            return
        pnl = f", P&L {fill.realized_pnl}" if fill.side == Side.SELL else ""
        notifier.notify("trade", f"{fill.side.upper()} {fill.quantity} {self.symbol} @ {fill.price} "
                                 f"(fee {fill.fee}{pnl}) - {fill.reason}", "normal")
