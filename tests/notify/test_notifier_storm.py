"""The fleet notifier as a real process between a worker and a fake Bot API: an error storm keeps to the fleet's
hourly limits, and killing the notifier in the middle of it loses no critical message and does not slow the
worker's decisions (the engine's per-candle time, p99, with the notifier up and down in the same run)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest

from papertrader.events import BaseListener
from tests.notify.process import NotifierProcess
from tests.observability.fakes import FakeTelegram
from tests.observability.helpers import ScriptedSource, Worker, settings_for, wait_for

pytestmark = pytest.mark.timeout(180)

TOKEN = "123456:FLEET-canary-token-do-not-leak"
CHAT = 555
ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "bench_out" / "notifier_decision_latency.json"


class TickTimes(BaseListener):
    """The engine's time per candle (``on_ticks_done``, once per batch), by phase of the test."""

    def __init__(self) -> None:
        self.phase = "up"
        self.samples: dict[str, list[float]] = {"up": [], "down": []}

    def on_ticks_done(self, items, durations_s) -> None:
        self.samples.setdefault(self.phase, []).extend(durations_s)

    def p99(self, phase: str) -> float:
        values = sorted(self.samples[phase])
        return values[min(len(values) - 1, int(len(values) * 0.99))]


def notifier_env(fake: FakeTelegram, **limits: int) -> dict[str, str]:
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": str(CHAT), "TELEGRAM_API_URL": fake.url,
           "ERROR_AGGREGATION_SECONDS": "1", "TELEGRAM_CHAT_INTERVAL_SECONDS": "0.12"}
    env.update({f"{k.upper()}_NOTIFICATIONS_PER_HOUR": str(v) for k, v in limits.items()})
    return env


async def feed(source: ScriptedSource, stop: asyncio.Event) -> None:
    while not stop.is_set():
        source.release(50)
        await asyncio.sleep(0.02)


async def storm(stop: asyncio.Event, criticals: list[str]) -> None:
    """Identical errors every 5 ms and a distinct critical one every 300 ms, through the worker's log handler."""
    engine_log = logging.getLogger("papertrader.engine")
    tick = 0
    while not stop.is_set():
        engine_log.error("ledger write failed: disk full")
        if tick % 60 == 0:
            text = f"critical #{len(criticals)}"
            criticals.append(text)
            engine_log.critical(text)
        tick += 1
        await asyncio.sleep(0.005)


async def test_killing_the_notifier_during_a_storm_loses_no_critical_and_never_slows_decisions(tmp_path):
    fake = await FakeTelegram(TOKEN).start()
    fake.chat_interval = 0.05  # the notifier paces at 0.12 s: any 429 from this would be its fault
    notifier = NotifierProcess(tmp_path / "notifier.log", notifier_env(fake, error=3, system=5))
    await notifier.start()
    settings = settings_for(tmp_path / "w", NOTIFIER_URL=notifier.url, NOTIFIER_TRADER="demo",
                            NOTIFIER_RETRY_SECONDS=60)
    source = ScriptedSource()
    worker = await Worker(settings, source).start()
    times = TickTimes()
    worker.runner.listeners.append(times)
    stop_feed, stop_storm = asyncio.Event(), asyncio.Event()
    criticals: list[str] = []
    tasks = [asyncio.create_task(feed(source, stop_feed)), asyncio.create_task(storm(stop_storm, criticals))]
    try:
        await wait_for(lambda: any("disk full" in t for t in fake.texts()), timeout=20, interval=0.1)
        await notifier.kill()  # mid-storm, with messages queued and in flight
        times.phase = "down"
        killed_at = len(criticals)
        await asyncio.sleep(4)
        times.phase = "up"
        await notifier.start()
        await asyncio.sleep(2)
        stop_storm.set()
        assert len(criticals) > killed_at + 10  # criticals were raised while it was down

        def arrived() -> set[str]:
            return {c for c in criticals if any(re.search(rf"{re.escape(c)}$", t) for t in fake.texts())}

        await wait_for(lambda: len(arrived()) == len(criticals), timeout=60, interval=0.2)
        await asyncio.sleep(3.5)  # the last aggregation windows (worker 2 s, notifier 1 s)
        stop_feed.set()
        errors = [t for t in fake.texts() if "disk full" in t]
        assert 1 <= len(errors) <= 3, errors  # the fleet's ERROR_NOTIFICATIONS_PER_HOUR
        assert all("from demo/BTC-EUR" in t for t in errors), errors  # names its trader and symbol
        assert any(re.search(r"\(x\d+ in 1 s\)", t) for t in errors), errors  # aggregated with a count
        assert fake.chat_rate_limited == 0 and fake.conflicts == 0 and fake.max_polling == 1
        metrics = await notifier.metrics()
        limited = re.search(r'papertrader_notifier_dropped_total\{reason="hourly_limit"\} (\S+)', metrics)
        assert limited and float(limited.group(1)) > 0, metrics

        up, down = times.p99("up"), times.p99("down")
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(json.dumps({"p99_up_ms": round(up * 1000, 3), "p99_down_ms": round(down * 1000, 3),
                                      "candles_up": len(times.samples["up"]),
                                      "candles_down": len(times.samples["down"]),
                                      "criticals": len(criticals), "criticals_while_down": len(criticals) - killed_at,
                                      "worker_dropped": dict(worker.obs.notifier.dropped)}, indent=2) + "\n")
        print(f"decision latency p99: notifier up {up * 1000:.3f} ms, down {down * 1000:.3f} ms "
              f"({len(times.samples['down'])} candles while down)")
        assert len(times.samples["down"]) > 1000
        assert down <= up * 3 + 0.005  # a blocked engine (a network wait on the decision path) would be seconds
    finally:
        stop_feed.set()
        stop_storm.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await worker.stop()
        await notifier.stop()
        await fake.stop()
    assert TOKEN not in (tmp_path / "w" / "logs" / "enhanced_paper_trader.log").read_text()
