"""The fleet notifier's routing and policy with the real Telegram transport against the fake Bot API: the wire
format's checks, per-trader limits on top of the fleet's, errors from several workers as one message naming each
source, chats of their own, and the commands' clear replies for unknown names."""

from __future__ import annotations

import asyncio
import time

import pytest

from papertrader.notify.fleet.commands import CommandHandler
from papertrader.notify.fleet.directory import Trader, Worker
from papertrader.notify.fleet.router import BadNotification, ChatPacer, Router, parse
from papertrader.notify.telegram import TelegramBot
from tests.observability.fakes import FakeTelegram
from tests.observability.helpers import wait_for

TOKEN = "42:router-token"
LIMITS = {"error": 10, "trade": 10, "status": 10, "system": 3}


async def started(fake: FakeTelegram, window: float = 0.3) -> Router:
    bot = TelegramBot(TOKEN, fake.url, 2)
    await bot.start()
    router = Router(bot, "100", LIMITS, 50, window, ChatPacer(0.0))
    await router.start()
    return router


def test_wire_format_errors_are_one_clear_line() -> None:
    with pytest.raises(BadNotification, match="category must be one of"):
        parse({"category": "spam", "text": "x"})
    with pytest.raises(BadNotification, match="priority must be one of"):
        parse({"priority": "urgent", "text": "x"})
    with pytest.raises(BadNotification, match="text must not be empty"):
        parse({"trader": "a"})
    with pytest.raises(BadNotification, match="limits must map"):
        parse({"text": "x", "limits": {"error": -1}})
    assert parse({"text": "x", "error": {"kind": "k", "message": "m", "count": 3}})["error"] == ("k", "m", 3)


async def test_errors_from_several_workers_become_one_message_naming_each() -> None:
    fake = await FakeTelegram(TOKEN).start()
    router = await started(fake)
    try:
        for trader, symbol in (("a", "BTC-EUR"), ("a", "ETH-EUR"), ("b", "SOL-EUR")):
            router.accept({"trader": trader, "symbol": symbol, "category": "error", "priority": "high",
                           "error": {"kind": "feed", "message": "socket closed", "count": 2}})
        await wait_for(lambda: fake.messages, timeout=5)
        await asyncio.sleep(0.5)
        (text,) = fake.texts()
        assert "(x6 in 0 s) from a/BTC-EUR, a/ETH-EUR, b/SOL-EUR: socket closed" in text
    finally:
        await router.stop()
        await fake.stop()


async def test_trader_limits_apply_on_top_of_the_fleets_and_criticals_ignore_both() -> None:
    fake = await FakeTelegram(TOKEN).start()
    router = await started(fake)
    try:
        quiet = {"trader": "quiet", "symbol": "X-EUR", "category": "system", "limits": {"system": 1}}
        loud = {"trader": "loud", "symbol": "Y-EUR", "category": "system"}
        results = [router.accept({**quiet, "text": f"q{i}"}) for i in range(3)]
        results += [router.accept({**loud, "text": f"l{i}"}) for i in range(3)]
        assert results == [True, False, False, True, True, False]  # quiet: its own 1; fleet: 3 in all
        critical = router.accept({**quiet, "text": "down!", "priority": "critical"})
        assert await asyncio.wait_for(critical, 5) is True  # acknowledged once Telegram took it
        await wait_for(lambda: len(fake.messages) == 4, timeout=5)
        assert "🚨 quiet/X-EUR: down!" in fake.texts()
        assert router.totals("drop_reasons")["hourly_limit"] == 3
    finally:
        await router.stop()
        await fake.stop()


async def test_a_traders_own_chat_gets_its_messages() -> None:
    fake = await FakeTelegram(TOKEN).start()
    router = await started(fake)
    try:
        router.accept({"trader": "own", "symbol": "Z-EUR", "category": "trade", "text": "BUY", "chat_id": "-200"})
        router.accept({"trader": "shared", "symbol": "Z-EUR", "category": "trade", "text": "SELL"})
        await wait_for(lambda: len(fake.messages) == 2, timeout=5)
        chats = {m["text"].split(" ", 1)[1]: m["chat_id"] for m in fake.messages}
        assert chats == {"own/Z-EUR: BUY": "-200", "shared/Z-EUR: SELL": "100"}
    finally:
        await router.stop()
        await fake.stop()


class FixedDirectory:
    """The Directory's interface over fixed traders and worker documents."""

    def __init__(self) -> None:
        self.halts: dict[str, str | None] = {}

    async def traders(self) -> list[Trader]:
        return [Trader("ns", "alpha", ["BTC-EUR", "ETH-EUR"], False, None),
                Trader("ns", "beta", ["SOL-EUR"], True, None)]

    def workers_of(self, traders: list[Trader]) -> list[Worker]:
        return [Worker(t.namespace, t.name, s, f"http://{t.name}-{s}") for t in traders for s in t.symbols]

    async def read_health(self, workers: list[Worker]) -> list[Worker]:
        for w in workers:
            w.health = {"ready": True, "portfolio": {"equity": "1010.5", "return_pct": 1.05, "open_positions": 1,
                                                     "initial_capital": "1000", "drawdown_pct": 0.5},
                        "last_candle_ms": None}
        return workers

    async def trades(self, worker: Worker) -> list[dict]:
        return []

    async def set_halt(self, trader: Trader, reason: str | None) -> None:
        self.halts[trader.name] = reason


async def test_commands_answer_for_the_fleet_and_name_what_is_unknown() -> None:
    directory = FixedDirectory()
    handler = CommandHandler(directory)  # type: ignore[arg-type]  # a stand-in directory with the methods the handler calls
    _, status = await handler.reply("/status")
    assert status.splitlines()[1:3] == ["alpha BTC-EUR 1010.50 +1.05 1 yes -", "alpha ETH-EUR 1010.50 +1.05 1 yes -"]
    assert "paused (scaled to zero): beta" in status
    assert (await handler.reply("/status gamma"))[1] == "unknown trader 'gamma' (known: alpha, beta)"
    assert (await handler.reply("/status alpha XRP-EUR"))[1] == \
        "trader 'alpha' has no symbol 'XRP-EUR' (it has: BTC-EUR, ETH-EUR)"
    assert (await handler.reply("/frobnicate"))[0] == "unknown"
    assert "alpha: equity 2021.00" in (await handler.reply("/pnl"))[1]
    assert (await handler.reply("/pause all maintenance"))[1].startswith("new entries halted for alpha, beta")
    assert directory.halts == {"alpha": "maintenance", "beta": "maintenance"}
    await handler.reply("/resume alpha")
    assert directory.halts["alpha"] is None


async def test_the_chat_pacer_counts_from_the_end_of_a_slow_send_and_keeps_one_send_per_chat() -> None:
    pacer = ChatPacer(0.1)
    spans: list[tuple[str, float, float]] = []

    async def send(chat: str, seconds: float) -> None:
        async with pacer.turn(chat):
            start = time.monotonic()
            await asyncio.sleep(seconds)  # a slow request, or one retried after a 429
            spans.append((chat, start, time.monotonic()))

    await asyncio.gather(send("1", 0.15), send("1", 0.0), send("1", 0.0), send("2", 0.0))
    ones = sorted(s for s in spans if s[0] == "1")
    for (_, _, end), (_, start, _) in zip(ones, ones[1:]):
        assert start - end >= 0.099  # never closer than the interval to the previous send's end
    other = next(s for s in spans if s[0] == "2")
    assert other[1] - ones[0][1] < 0.05  # another chat does not wait for this one
