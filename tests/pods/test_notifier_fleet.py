"""One Telegram bot for the fleet: the real operator (against kmock) with --notifier-url, three PaperTraders with
Telegram configured (five symbols), the workers it specifies running as real processes (pod runner), the fleet
notifier as a real process and a fake Bot API that answers 409 to a second concurrent getUpdates consumer.

- exactly one getUpdates consumer; no worker's StatefulSet, environment or command line holds the token;
- /status is one message covering all five symbols; unknown traders get a clear reply;
- /pause gamma halts gamma's entries only (the PaperTrader's annotation, kept by the operator: `status.entries`),
  /resume gamma lets them start again;
- under a storm from all five workers (every fan-out process killed at once: an ERROR each; every performance rule
  firing) the chat gets at most the fleet's hourly limits (and gamma's own), the aggregated error names all five
  symbols, and the replaying workers' ledgers equal runs of the same replay without Telegram.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.notify.process import NotifierProcess
from tests.observability.fakes import FakeTelegram
from tests.operator.conftest import NAMESPACE, Cluster, OperatorFactory, eventually
from tests.pods.plan import claim_dir
from tests.pods.runner import PodRunner
from tests.pods.test_fleet import MARKET, STATE, uninterrupted_trades

pytestmark = pytest.mark.timeout(240)

TOKEN = "987654:FLEET-pod-canary-token"
CHAT = 4242
REPLAY = {"alpha": ["BTC-EUR", "ETH-EUR"], "beta": ["SOL-EUR", "ADA-EUR"]}  # deterministic: ledgers compared
LIVE = {"gamma": ["XRP-EUR"]}  # synthetic, paced: paused and resumed
SYMBOLS = [s for symbols in (*REPLAY.values(), *LIVE.values()) for s in symbols]
FLEET_LIMITS = {"error": 4, "system": 6, "status": 10, "trade": 30}
ALWAYS = [{"metric": "candles_per_minute", "op": ">=", "threshold": -i, "recommendation": f"storm rule {i}"}
          for i in range(4)]  # every worker fires all four at its first report
STORM_CONFIG = {"PERFORMANCE_REPORT_INTERVAL": "1", "PERFORMANCE_ALERT_RULES": json.dumps(ALWAYS)}


async def create_secret(cluster: Cluster) -> None:
    await cluster.mock.post(f"/api/v1/namespaces/{NAMESPACE}/secrets", json={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "telegram", "namespace": NAMESPACE},
        "stringData": {"token": TOKEN, "chatId": str(CHAT)}})


def replay_spec(symbols: list[str]) -> dict:
    return {"symbols": symbols, "source": "replay", "replayFile": f"{STATE}/market.csv", "speed": "1800",
            "candleInterval": "1m", "strategy": {"name": "sma-cross"}, "telegram": {"secretName": "telegram"},
            "extraConfig": STORM_CONFIG}


async def get_json(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
        return await response.json(content_type=None) if response.status == 200 else {}


async def buys(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as response:
        text = await response.text()
    found = re.search(r'papertrader_trades_total\{side="buy",symbol="[^"]+"\} (\S+)', text) or re.search(
        r'papertrader_trades_total\{symbol="[^"]+",side="buy"\} (\S+)', text)
    return int(float(found.group(1))) if found else 0


def fanouts(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "papertrader.feed.fanout"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


async def test_one_bot_for_the_fleet(cluster: Cluster, start_operator: OperatorFactory, pod_runner: PodRunner,
                                     tmp_path: Path) -> None:
    fake = await FakeTelegram(TOKEN).start()
    fake.chat_interval = 0.02  # 429 for back-to-back messages to a chat; the notifier paces at 0.1 s (the margin: this
    # fake answers on the test's busy event loop, which can bunch up requests sent 0.1 s apart)
    fake.long_poll_cap = 3.0
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": str(CHAT), "TELEGRAM_API_URL": fake.url,
           "ERROR_AGGREGATION_SECONDS": "4", "TELEGRAM_CHAT_INTERVAL_SECONDS": "0.1",
           **{f"{k.upper()}_NOTIFICATIONS_PER_HOUR": str(v) for k, v in FLEET_LIMITS.items()}}
    notifier = NotifierProcess(tmp_path / "notifier.log", env, "--worker-url-template", pod_runner.url_template,
                               "--poll-timeout", "2")
    assert TOKEN not in json.dumps(dict(os.environ))  # the workers inherit the test's environment
    try:
        await notifier.start()
        await start_operator("--worker-url-template", pod_runner.url_template, "--notifier-url", notifier.url,
                             "--health-timeout", "2")
        await create_secret(cluster)
        head = "".join(MARKET.read_text().splitlines(keepends=True)[:901])
        for trader, symbols in REPLAY.items():
            for symbol in symbols:
                market = claim_dir(pod_runner.root, NAMESPACE, f"state-{trader}-{symbol.lower()}-0") / "market.csv"
                market.parent.mkdir(parents=True)
                market.write_text(head)
            await cluster.apply(trader, replay_spec(symbols))
        await cluster.apply("gamma", {"symbols": LIVE["gamma"], "source": "synthetic", "speed": "600",
                                      "strategy": {"name": "sma-cross"}, "extraConfig": STORM_CONFIG,
                                      "telegram": {"secretName": "telegram", "notificationsPerHour": {"system": 2}}})
        keys = {(NAMESPACE, f"{t}-{s.lower()}-0") for t, ss in (*REPLAY.items(), *LIVE.items()) for s in ss}
        await eventually(lambda: set(pod_runner.pods) == keys and all(p.ready for p in pod_runner.pods.values()),
                         timeout=120, interval=0.2)

        # no worker holds the token: not in what the operator wrote, not in any process's environment or argv
        for name in cluster.names("StatefulSet"):
            sts = json.dumps(cluster.get("StatefulSet", name))
            assert "TELEGRAM_BOT_TOKEN" not in sts and TOKEN not in sts and "NOTIFIER_URL" in sts, name
        for pod in pod_runner.pods.values():
            assert "TELEGRAM_BOT_TOKEN" not in pod.plan.env and pod.plan.env["NOTIFIER_CHAT_ID"] == str(CHAT)
            pid = pod.container.proc.pid  # type: ignore[union-attr]  # the pod was started: its process exists
            for what in ("environ", "cmdline"):
                assert TOKEN.encode() not in Path(f"/proc/{pid}/{what}").read_bytes(), (pod.plan.name, what)

        # the error storm: every worker's fan-out process dies at once (one identical ERROR line each)
        for pod in pod_runner.pods.values():
            for child in fanouts(pod.container.proc.pid):  # type: ignore[union-attr]  # as above
                os.kill(child, signal.SIGKILL)

        async with aiohttp.ClientSession() as session:
            def url(trader: str, symbol: str) -> str:
                return pod_runner.url_template.format(namespace=NAMESPACE, name=f"{trader}-{symbol.lower()}")

            # /status: one message with all five symbols
            before = len(fake.messages)
            fake.push_command(CHAT, "/status")
            reply = await eventually(lambda: next((t for t in fake.texts()[before:] if t.startswith("⚠️ trader ")),
                                                  None), timeout=30, interval=0.1)
            rows = reply.splitlines()[1:]
            assert sorted(row.split()[1] for row in rows) == sorted(SYMBOLS), reply
            assert all("unreachable" not in row for row in rows), reply
            fake.push_command(CHAT, "/status nosuch")
            await eventually(lambda: any("unknown trader 'nosuch' (known: alpha, beta, gamma)" in t
                                         for t in fake.texts()), timeout=20)

            # /pause gamma: its worker halts entries (the operator acts on the annotation); alpha and beta do not
            fake.push_command(CHAT, "/pause gamma lunch")
            await eventually(lambda: any("new entries halted for gamma (lunch)" in t for t in fake.texts()), timeout=20)
            gamma = url("gamma", "XRP-EUR")
            health: dict = {}

            async def gamma_halted() -> bool:
                health.update(await get_json(session, f"{gamma}/health"))
                return (health.get("halts") or {}).get("trader") == "lunch"

            for _ in range(150):
                if await gamma_halted():
                    break
                await asyncio.sleep(0.2)
            assert (health.get("halts") or {}).get("trader") == "lunch", health
            assert cluster.get("PaperTrader", "gamma")["metadata"]["annotations"]["papertrader.io/halt-entries"] == \
                "lunch"
            await eventually(lambda: (cluster.get("PaperTrader", "gamma").get("status") or {}).get("entries")
                             == "halted", timeout=20)
            for trader, symbols in REPLAY.items():
                for symbol in symbols:
                    other = await get_json(session, f"{url(trader, symbol)}/health")
                    assert "trader" not in (other.get("halts") or {}), (trader, symbol, other.get("halts"))
            halted_buys = await buys(session, gamma)
            await asyncio.sleep(6)  # 60 candles at speed 600
            assert await buys(session, gamma) == halted_buys  # no entry while paused

            fake.push_command(CHAT, "/resume gamma")
            await eventually(lambda: any("entries resumed for gamma" in t for t in fake.texts()), timeout=20)
            for _ in range(300):
                if await buys(session, gamma) > halted_buys:
                    break
                await asyncio.sleep(0.2)
            assert await buys(session, gamma) > halted_buys  # entries again
            assert (cluster.get("PaperTrader", "gamma").get("status") or {}).get("entries") == "open"

            # exactly one consumer: a second concurrent getUpdates (ours) gets 409, the notifier never did
            await eventually(lambda: fake.polling == 1, timeout=10)
            async with session.post(f"{fake.url}/bot{TOKEN}/getUpdates", json={"timeout": 1}) as response:
                assert response.status == 409
            assert fake.conflicts == 1 and fake.max_polling == 1

        # the storm's messages: within the fleet's limits and gamma's own; the aggregated error names every symbol
        for trader, symbols in REPLAY.items():
            for symbol in symbols:
                summary = claim_dir(pod_runner.root, NAMESPACE, f"state-{trader}-{symbol.lower()}-0") / "summary.json"
                await eventually(lambda s=summary: s.exists() and json.loads(s.read_text()).get("finished"),
                                 timeout=90, interval=0.5)
        texts = fake.texts()
        errors = [t for t in texts if t.startswith(("⚠️ Error", "🚨 Error"))]
        fanout_errors = [t for t in errors if "fan-out process exited" in t]
        assert fanout_errors and len(errors) <= FLEET_LIMITS["error"], errors
        assert any(all(f"/{symbol} " in t.replace(",", " ").replace(":", " ") for symbol in SYMBOLS)
                   for t in fanout_errors), fanout_errors
        alerts = [t for t in texts if "Performance alert" in t]
        assert len(alerts) <= FLEET_LIMITS["system"], alerts
        assert sum("gamma/XRP-EUR" in t for t in alerts) <= 2, alerts
        worker_messages = [t for t in texts if not t.startswith(("⚠️ trader ", "⚠️ unknown", "⚠️ new entries",
                                                                 "⚠️ entries resumed", "⚠️ Error", "🚨 Error"))]
        assert all(re.search(r"\b(alpha|beta|gamma)/[A-Z]+-EUR: ", t) for t in worker_messages), worker_messages
        assert fake.chat_rate_limited == 0, fake.chat_rate_limited
        metrics = await notifier.metrics()
        assert re.search(r'papertrader_notifier_dropped_total\{reason="hourly_limit"\} [1-9]', metrics), metrics
        assert re.search(r'papertrader_notifier_commands_total\{command="pause",result="ok"\} 1\.0', metrics)

        # the replaying workers' ledgers equal the same replays without Telegram
        runs = []
        for trader, symbols in REPLAY.items():
            for symbol in symbols:
                pod = pod_runner.pods[(NAMESPACE, f"{trader}-{symbol.lower()}-0")]
                config = next(m.host for m in pod.plan.mounts if m.container == "/etc/papertrader") / "config.yaml"
                state = claim_dir(pod_runner.root, NAMESPACE, f"state-{trader}-{symbol.lower()}-0")
                (tmp_path / f"{trader}-{symbol}").mkdir()
                runs.append((state, asyncio.to_thread(uninterrupted_trades, tmp_path / f"{trader}-{symbol}",
                                                      state / "market.csv", config)))
        expected = await asyncio.gather(*(run for _, run in runs))
        for (state, _), trades in zip(runs, expected, strict=True):
            assert trades.count("\n") > 3
            assert (state / "logs" / "trades.csv").read_text() == trades, state
    finally:
        await notifier.stop()
        await fake.stop()
    assert TOKEN not in (tmp_path / "notifier.log").read_text()
