"""`papertrader notifier`: HTTP for the workers (POST /v1/notifications), probes and /metrics; the bot's sender and
its getUpdates loop (the fleet's only one).

Settings are flags with environment twins (see ``papertrader notifier --help``); the token comes only from
TELEGRAM_BOT_TOKEN or the file in TELEGRAM_BOT_TOKEN_FILE (a mounted Secret) and is never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from papertrader.notify.fleet.commands import COMMANDS, CommandHandler
from papertrader.notify.fleet.directory import Directory, kube_login
from papertrader.notify.fleet.router import BadNotification, ChatPacer, Router
from papertrader.notify.outbox import CATEGORIES
from papertrader.notify.telegram import TelegramBot, command_name, token_from

log = logging.getLogger("papertrader.notifier")

DEFAULT_PORT = 8767
DEFAULT_LIMITS = {"error": 30, "trade": 100, "status": 10, "system": 30}
CRITICAL_ACK_SECONDS = 30.0  # a critical POST waits this long for Telegram before the worker is told to retry
DROP_REASONS = ("hourly_limit", "queue_full", "evicted", "send_failed", "bad_request")


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="papertrader notifier",
        description="The fleet's one Telegram bot: workers hand it their notifications (NOTIFIER_URL); it applies "
                    "the hourly limits, aggregation and Telegram's rate for the whole fleet and answers commands.")
    parser.add_argument("--host", default=_env("NOTIFIER_HOST", "0.0.0.0"), help="bind address [NOTIFIER_HOST]")
    parser.add_argument("--port", type=int, default=int(_env("NOTIFIER_PORT", str(DEFAULT_PORT))),
                        help="port of /v1/notifications, /healthz, /readyz, /metrics; 0 = any [NOTIFIER_PORT] "
                             "(default: %(default)s)")
    parser.add_argument("--telegram-api-url", default=_env("TELEGRAM_API_URL", "https://api.telegram.org"),
                        help="Bot API root [TELEGRAM_API_URL]")
    parser.add_argument("--chat-id", default=os.environ.get("TELEGRAM_CHAT_ID", ""),
                        help="the default chat, also allowed to send commands [TELEGRAM_CHAT_ID]")
    parser.add_argument("--command-chat", action="append",
                        default=[c for c in _env("NOTIFIER_COMMAND_CHAT_IDS", "").split(",") if c],
                        help="another chat allowed to send commands (repeatable) [NOTIFIER_COMMAND_CHAT_IDS, "
                             "comma-separated]")
    parser.add_argument("-n", "--namespace", action="append",
                        default=[n for n in _env("PAPERTRADER_NAMESPACES", "").split(",") if n],
                        help="PaperTraders of this namespace (repeatable; default: all) [PAPERTRADER_NAMESPACES]")
    parser.add_argument("--worker-url-template",
                        default=_env("PAPERTRADER_WORKER_URL_TEMPLATE", "http://{name}.{namespace}.svc:8766"),
                        help="worker base URL as for the operator [PAPERTRADER_WORKER_URL_TEMPLATE]")
    for category, default in DEFAULT_LIMITS.items():
        name = f"{category.upper()}_NOTIFICATIONS_PER_HOUR"
        parser.add_argument(f"--{category}-per-hour", type=int, default=int(_env(name, str(default))),
                            help=f"fleet-wide {category} messages per hour (critical ones ignore it) [{name}]")
    parser.add_argument("--queue-size", type=int, default=int(_env("NOTIFICATION_QUEUE_SIZE", "500")),
                        help="messages queued per chat [NOTIFICATION_QUEUE_SIZE]")
    parser.add_argument("--aggregation-seconds", type=float, default=float(_env("ERROR_AGGREGATION_SECONDS", "60")),
                        help="identical errors from any worker within this window are one message "
                             "[ERROR_AGGREGATION_SECONDS]")
    parser.add_argument("--chat-interval", type=float, default=float(_env("TELEGRAM_CHAT_INTERVAL_SECONDS", "1")),
                        help="seconds between two messages to one chat (Telegram's rate) "
                             "[TELEGRAM_CHAT_INTERVAL_SECONDS]")
    parser.add_argument("--max-retries", type=int, default=int(_env("TELEGRAM_MAX_RETRIES", "5")),
                        help="retries of a failed send [TELEGRAM_MAX_RETRIES]")
    parser.add_argument("--poll-timeout", type=float, default=25.0, help="getUpdates long-poll seconds")
    return parser


class Notifier:
    """The service: router (sending), command handler (getUpdates), HTTP server."""

    def __init__(self, args: argparse.Namespace, token: str, directory: Directory) -> None:
        self.args = args
        self.bot = TelegramBot(token, args.telegram_api_url, args.max_retries)
        self.bot.poll_timeout = args.poll_timeout
        limits = {c: getattr(args, f"{c}_per_hour") for c in CATEGORIES}
        self.router = Router(self.bot, str(args.chat_id), limits, args.queue_size, args.aggregation_seconds,
                             ChatPacer(args.chat_interval))
        self.commands = CommandHandler(directory)
        self.directory = directory
        self.command_chats = {str(args.chat_id), *map(str, args.command_chat)}
        self.command_counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def handle_command(self, chat_id: str, text: str) -> None:
        if chat_id not in self.command_chats:
            log.warning("ignored telegram command /%s from unauthorised chat %s", command_name(text)[:32], chat_id)
            self.command_counts[(command_name(text)[:32] if command_name(text) in COMMANDS else "unknown",
                                 "unauthorised")] += 1
            return
        try:
            command, reply = await self.commands.reply(text)
            result = "ok"
        except Exception as exc:  # noqa: BLE001 - the Kubernetes API or a worker failing: say so in the chat
            command, reply, result = command_name(text)[:32], f"/{command_name(text)[:32]} failed: {exc}", "error"
            log.warning("command %s failed: %s", command, exc)
        self.command_counts[(command if command in COMMANDS else "unknown", result)] += 1
        await self.router.send_now(chat_id, reply)

    # --- HTTP --------------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/v1/notifications", self._notify)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _notify(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            accepted = self.router.accept(body)
        except (ValueError, BadNotification) as exc:
            self.router.refused += 1
            return web.json_response({"error": str(exc)[:200]}, status=400)
        if isinstance(accepted, asyncio.Future):  # critical: answered once Telegram has it (or gave up on it)
            try:
                delivered = await asyncio.wait_for(asyncio.shield(accepted), CRITICAL_ACK_SECONDS)
            except TimeoutError:
                return web.json_response({"error": "not delivered yet; retry"}, status=503)
            return web.json_response({"accepted": True, "delivered": delivered}, status=200 if delivered else 202)
        return web.json_response({"accepted": accepted}, status=202)

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "queued": self.router.queued()})

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain", charset="utf-8")

    # --- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.bot.start()
        await self.router.start()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.args.host, self.args.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the bound port (port 0 picks a free one)
        self._poller = asyncio.create_task(self.bot.poll(self.handle_command), name="notifier-commands")
        log.info("fleet notifier listening on %s:%d (chat %s, API %s)", self.args.host, self.port, self.args.chat_id,
                 self.args.telegram_api_url)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.router.stop()
        await self.bot.stop()
        await self.directory.close()


#: name -> (type, help, labels) of what the notifier exports on /metrics
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "papertrader_notifier_received": ("counter", "Notifications POSTed by workers", ("category",)),
    "papertrader_notifier_sent": ("counter", "Messages Telegram accepted", ("category",)),
    "papertrader_notifier_dropped": ("counter", "Notifications not sent, by reason", ("reason",)),
    "papertrader_notifier_rate_limited": ("counter", "Telegram 429 answers (waited retry_after)", ()),
    "papertrader_notifier_commands": ("counter", "Chat commands, by command and result", ("command", "result")),
    "papertrader_notifier_queued": ("gauge", "Messages waiting (queued or being aggregated)", ()),
}


def exported_metric_names() -> list[str]:
    """The series names on /metrics (counters with their ``_total``), for the chart's dashboard checks."""
    return [f"{name}_total" if kind == "counter" else name for name, (kind, _, _) in METRICS.items()]


def _family(name: str) -> Any:
    kind, text, labels = METRICS[name]
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return cls(name, text, labels=list(labels))


class _Collector:
    """papertrader_notifier_* from the router's and the bot's counters."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def collect(self) -> Iterator[Any]:
        router = self.notifier.router
        received, sent = _family("papertrader_notifier_received"), _family("papertrader_notifier_sent")
        sent_totals = router.totals("sent")
        for category in CATEGORIES:
            received.add_metric([category], router.received[category])
            sent.add_metric([category], sent_totals[category])
        dropped = _family("papertrader_notifier_dropped")
        reasons = router.totals("drop_reasons")
        reasons["bad_request"] = router.refused
        for reason in DROP_REASONS:
            dropped.add_metric([reason], reasons[reason])
        rate_limited = _family("papertrader_notifier_rate_limited")
        rate_limited.add_metric([], self.notifier.bot.rate_limited)
        commands = _family("papertrader_notifier_commands")
        for (command, result), count in sorted(self.notifier.command_counts.items()):
            commands.add_metric([command, result], count)
        queued = _family("papertrader_notifier_queued")
        queued.add_metric([], router.queued())
        yield from (received, sent, dropped, rate_limited, commands, queued)


async def serve(args: argparse.Namespace, token: str) -> int:
    from papertrader_operator.kube import KubeClient

    notifier = Notifier(args, token, Directory(KubeClient(kube_login()), tuple(args.namespace),
                                                args.worker_url_template))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await notifier.start()
    except OSError as exc:
        print(f"papertrader notifier: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})",
              file=sys.stderr)
        await notifier.stop()
        return 2
    await stop.wait()
    log.info("fleet notifier stopping")
    await notifier.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv or []))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    file = os.environ.get("TELEGRAM_BOT_TOKEN_FILE")
    token = token_from(os.environ.get("TELEGRAM_BOT_TOKEN"), Path(file) if file else None)
    if not token:
        print("papertrader notifier: no bot token: set TELEGRAM_BOT_TOKEN or TELEGRAM_BOT_TOKEN_FILE", file=sys.stderr)
        return 2
    if not args.chat_id:
        print("papertrader notifier: no chat: set TELEGRAM_CHAT_ID or --chat-id", file=sys.stderr)
        return 2
    return asyncio.run(serve(args, token))
