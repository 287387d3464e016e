"""Telegram against a fake Bot API server: aggregation, hourly limits, priorities, 429/5xx retries, commands,
no token, and the token never in the logs."""

from __future__ import annotations

import asyncio
import logging
import time

from papertrader.notify.telegram import Notifier

from .fakes import FakeTelegram
from .helpers import ScriptedSource, Worker, settings_for, wait_for

TOKEN = "123456:CANARY-secret-token-do-not-log"
CHAT = 777


def notifier_for(tmp_path, fake, **values):
    base = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": str(CHAT), "TELEGRAM_API_URL": fake.url,
            "TELEGRAM_POLL_COMMANDS": "false", "ERROR_AGGREGATION_SECONDS": 0.5}
    base.update(values)
    settings = settings_for(tmp_path / "n", **base)
    notifier = Notifier(settings, TOKEN)
    notifier.backoff_base = 0.05
    return notifier


async def test_burst_of_identical_errors_becomes_one_message(tmp_path):
    fake = await FakeTelegram(TOKEN).start()
    notifier = notifier_for(tmp_path, fake)
    await notifier.start()
    try:
        for _ in range(100):
            notifier.error("engine", "ledger write failed: disk full")
        notifier.error("engine", "something else")
        await wait_for(lambda: len(fake.messages) >= 2, timeout=5)
        await asyncio.sleep(0.7)
        texts = fake.texts()
        assert len(texts) == 2, texts
        burst = next(t for t in texts if "disk full" in t)
        assert "x100" in burst
        assert notifier.sent["error"] == 2 and notifier.aggregated == 99
        assert fake.messages[0]["chat_id"] == str(CHAT)
    finally:
        await notifier.stop()
        await fake.stop()


async def test_hourly_limits_per_category(tmp_path):
    fake = await FakeTelegram(TOKEN).start()
    notifier = notifier_for(tmp_path, fake, TRADE_NOTIFICATIONS_PER_HOUR=5, STATUS_NOTIFICATIONS_PER_HOUR=2)
    await notifier.start()
    try:
        accepted = [notifier.notify("trade", f"trade {i}") for i in range(20)]
        accepted += [notifier.notify("status", f"status {i}") for i in range(5)]
        assert accepted.count(True) == 7
        assert notifier.dropped == {"trade": 15, "status": 3, "error": 0, "system": 0}
        assert notifier.notify("status", "critical status", "critical")  # critical ignores the limit
        await wait_for(lambda: len(fake.messages) == 8, timeout=5)
        assert sum("trade" in t for t in fake.texts()) == 5
    finally:
        await notifier.stop()
        await fake.stop()


async def test_critical_overtakes_queued_low_priority_and_429_is_honoured(tmp_path):
    fake = await FakeTelegram(TOKEN).start()
    fake.rate_limit_next = 1
    fake.retry_after = 1
    notifier = notifier_for(tmp_path, fake)
    await notifier.start()
    try:
        notifier.notify("system", "first low", "low")  # will hit the 429 and wait retry_after
        await wait_for(lambda: any(m == "sendMessage" for m, _ in fake.calls), timeout=5)
        for i in range(5):
            notifier.notify("status", f"low {i}", "low")
        notifier.notify("system", "CRITICAL: data breaker open", "critical")
        await wait_for(lambda: len(fake.messages) == 7, timeout=10)
        texts = fake.texts()
        assert "first low" in texts[0]  # it was in flight
        assert "CRITICAL" in texts[1], texts  # overtook the five queued low-priority messages
        send_times = [t for m, t in fake.calls if m == "sendMessage"]
        assert send_times[1] - send_times[0] >= 0.9  # waited retry_after
    finally:
        await notifier.stop()
        await fake.stop()


async def test_queue_full_drops_and_counts_and_evicts_lower_priority(tmp_path):
    fake = await FakeTelegram(TOKEN).start()
    notifier = notifier_for(tmp_path, fake, NOTIFICATION_QUEUE_SIZE=3)  # not started: nothing is sent
    for i in range(3):
        assert notifier.notify("trade", f"t{i}", "low")
    assert not notifier.notify("trade", "t3", "low")
    assert notifier.notify("system", "important", "critical")  # evicts a low one
    assert notifier.queue_size() == 3
    assert notifier.dropped["trade"] == 2
    await fake.stop()


async def test_telegram_down_or_rate_limiting_never_stalls_trading(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake = await FakeTelegram(TOKEN).start()
    fake.rate_limit_next = 10_000
    fake.retry_after = 30
    settings = settings_for(tmp_path / "w", TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_ID=str(CHAT),
                            TELEGRAM_API_URL=fake.url, TRADE_NOTIFICATIONS_PER_HOUR=1000)
    source = ScriptedSource()
    source.release(20_000)
    started = time.monotonic()
    worker = await Worker(settings, source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 20_000, timeout=60)
        elapsed = time.monotonic() - started
        assert worker.runner.engine.portfolio.fills > 20
        assert elapsed < 30
        status, _ = await worker.get("/healthz")
        assert status == 200
    finally:
        await worker.stop()
        await fake.stop()
    # a dead endpoint: connection refused
    settings = settings_for(tmp_path / "w2", TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_ID=str(CHAT),
                            TELEGRAM_API_URL="http://127.0.0.1:9")
    source = ScriptedSource()
    source.release(5000)
    worker = await Worker(settings, source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 5000, timeout=30)
    finally:
        await worker.stop()
    assert TOKEN not in caplog.text
    for path in (tmp_path / "w" / "logs").iterdir():
        assert TOKEN not in path.read_text(errors="replace"), path


async def test_commands_from_authorised_chat_only(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    fake = await FakeTelegram(TOKEN).start()
    settings = settings_for(tmp_path / "w", TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_ID=str(CHAT),
                            TELEGRAM_API_URL=fake.url)
    source = ScriptedSource()
    source.release(3000)
    worker = await Worker(settings, source).start()
    worker.obs.notifier.poll_timeout = 1.0
    try:
        await wait_for(lambda: worker.runner.engine.items >= 3000)
        base = len(fake.messages)
        fake.push_command(99999, "/pause")  # a stranger
        for command in ("/status", "/positions", "/trades", "/pnl", "/health", "/help"):
            fake.push_command(CHAT, command)
        wanted = (lambda r: "equity" in r and "candles" in r, lambda r: "last trades" in r,
                  lambda r: "data_quality" in r, lambda r: "/pause" in r, lambda r: "realized" in r,
                  lambda r: "open positions" in r)
        await wait_for(lambda: all(any(w(r) for r in fake.texts()[base:]) for w in wanted), timeout=15)
        assert not worker.runner.engine.risk.state.halts
        log_text = (tmp_path / "w" / "logs" / "enhanced_paper_trader.log").read_text()
        assert "unauthorised chat 99999" in log_text
        fake.push_command(CHAT, "/pause going to lunch")
        await wait_for(lambda: "manual" in worker.runner.engine.risk.state.halts, timeout=10)
        fake.push_command(CHAT, "/resume")
        await wait_for(lambda: not worker.runner.engine.risk.state.halts, timeout=10)
    finally:
        await worker.stop()
        await fake.stop()


async def test_without_token_notifications_are_off_with_one_line(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    caplog.set_level(logging.INFO, logger="papertrader")
    logging.getLogger("papertrader").propagate = True
    source = ScriptedSource()
    source.release(100)
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    try:
        await wait_for(lambda: worker.runner.engine.items >= 100)
        assert not worker.obs.notifier.enabled
    finally:
        await worker.stop()
    log_text = (tmp_path / "w" / "logs" / "enhanced_paper_trader.log").read_text()
    assert log_text.count("telegram notifications off") == 1
    assert "ERROR" not in log_text


async def test_token_from_mounted_secret_file(tmp_path):
    fake = await FakeTelegram(TOKEN).start()
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    settings = settings_for(tmp_path / "w", TELEGRAM_BOT_TOKEN_FILE=str(secret), TELEGRAM_CHAT_ID=str(CHAT),
                            TELEGRAM_API_URL=fake.url, TELEGRAM_POLL_COMMANDS="false")
    source = ScriptedSource()
    source.release(10)
    worker = await Worker(settings, source).start()
    try:
        await wait_for(lambda: any("worker started" in t for t in fake.texts()), timeout=5)
    finally:
        await worker.stop()
        await fake.stop()
