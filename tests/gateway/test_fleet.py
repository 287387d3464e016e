"""Fleets through the market gateway vs the same fleet straight to the exchange (real processes, 127.0.0.1).

Every fleet trades the same candles; the direct fleet (one connection per worker, nothing disturbed) is the
reference, run once per module. Each gateway fleet must leave every worker's trades.csv byte-identical to it:
undisturbed, with all workers killed and restarted at once, with the gateway killed and restarted mid-stream, and
with the exchange answering 429 while the gateway's budget is low.

CI size: 10 workers, 4 symbols x 2 intervals. Full size (50 workers, 10 symbols, 3 intervals):

    PYTHONPATH=worker:operator python -m pytest -q -m slow tests/gateway/test_fleet.py -s
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from . import fleet
from .fleet import FleetRun, Plan

CI_PLAN = fleet.plan(symbols=4, intervals=["1m", "5m"], workers=10)
FULL_PLAN = fleet.plan(symbols=10, intervals=["1m", "5m", "15m"], workers=50)
#: What a restart of every worker at once may cost the exchange: the gateway serves every backfill from its cache
#: and the stream, so only a bar the stream skipped (no trades, or a frame lost upstream) needs the exchange.
A_FEW_REQUESTS = 3


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference: the CI fleet, each worker straight to the fake exchange."""
    return asyncio.run(fleet.run_fleet(tmp_path_factory.mktemp("direct"), CI_PLAN, via_gateway=False))


def assert_same_candles(plan: Plan, direct: dict[str, Any], via: dict[str, Any]) -> None:
    """No candle lost, invented or changed: every worker accepted the same candles in the same order."""
    for i, (a, b) in enumerate(zip(direct["candles"], via["candles"], strict=True)):
        assert a[0] and a == b, f"worker {i} {plan[i]}: accepted candles differ through the gateway"


def assert_same_trades(plan: Plan, direct: dict[str, Any], via: dict[str, Any]) -> None:
    assert_same_candles(plan, direct, via)
    trading = sum(1 for t in direct["trades"] if t.count(b"\n") > 1)
    assert trading >= len(plan) // 2, f"the comparison needs trades: {trading} of {len(plan)} workers traded"
    for i, (a, b) in enumerate(zip(direct["trades"], via["trades"], strict=True)):
        assert a == b, f"worker {i} {plan[i]}: trades differ through the gateway"


async def test_fleet_through_the_gateway(tmp_path: Path, direct: dict[str, Any]) -> None:
    via = await fleet.run_fleet(tmp_path, CI_PLAN, via_gateway=True)
    print(f"\nfleet {len(CI_PLAN)} workers: fake WS connections direct={direct['ws_connections']} "
          f"gateway={via['ws_connections']}; REST weight direct={direct['weight']} gateway={via['weight']} "
          f"(warm-up: {direct['warmup_weight']} vs {via['warmup_weight']})")
    assert via["ws_connections"] == 1
    assert direct["ws_connections"] >= len(CI_PLAN)
    assert via["weight"] * 3 < direct["weight"]
    assert_same_trades(CI_PLAN, direct, via)
    metrics = via["gateway_metrics"]
    assert metrics["papertrader_gateway_upstream_connects_total"] == 1
    assert metrics["papertrader_gateway_subscriptions"] == len(set(CI_PLAN))
    assert metrics["papertrader_gateway_rest_weight_used_total"] == via["weight"]  # every point the fake counted
    assert metrics["papertrader_gateway_rest_refused_total"] == 0


async def restart_all_workers(run: FleetRun) -> dict[str, Any]:
    """Kill every worker at once (SIGKILL) mid-stream and start them all again; count what the exchange sees."""
    await asyncio.sleep(2.0)
    before = len(run.fake.requests)
    run.kill_workers()
    run.start_workers()
    await run.wait_logged_all("restart backfill:", timeout=60.0)
    asked = run.fake.requests[before:]
    return {"restart_requests": sum(1 for _, path, _ in asked if not path.endswith("/time")),
            "restart_time_requests": sum(1 for _, path, _ in asked if path.endswith("/time"))}


async def test_restarting_every_worker_at_once_is_served_by_the_gateway(tmp_path: Path,
                                                                       direct: dict[str, Any]) -> None:
    via = await fleet.run_fleet(tmp_path, CI_PLAN, via_gateway=True, disturb=restart_all_workers)
    print(f"\nall {len(CI_PLAN)} workers restarted at once: {via['restart_requests']} REST requests reached the "
          f"exchange besides the gateway's own {via['restart_time_requests']} clock syncs")
    assert via["restart_requests"] <= A_FEW_REQUESTS, via["restart_requests"]
    assert via["ws_connections"] == 1  # the upstream stream outlived its clients
    assert_same_trades(CI_PLAN, direct, via)


async def restart_gateway(run: FleetRun) -> dict[str, Any]:
    """Kill the gateway (SIGKILL) mid-stream and start a new one on the same port: an empty cache."""
    await asyncio.sleep(2.0)
    subscribed = run.count_logged("subscribed:")
    started = time.monotonic()
    run.restart_gateway()
    await run.wait_logged_all("subscribed:", counts=[n + 1 for n in subscribed], timeout=60.0)
    return {"gateway_restart_s": round(time.monotonic() - started, 2)}


#: At 1500x a 1.5 s restart is 37 minutes of market and the reconnect back-off is scaled down 20x, so a worker
#: counts far more failed attempts than it would in real time; at the default DATA_COLLECTION_FAILURE_THRESHOLD (5)
#: its data breaker opens and halts entries for 60 s (25 hours here), the rule for an exchange outage. The
#: candles must be the same either way (test below); with the breaker kept closed the trades must be too.
RESTART_TOLERANT = {"DATA_COLLECTION_FAILURE_THRESHOLD": 1000}


async def test_a_gateway_restart_mid_stream_loses_no_candle(tmp_path: Path, direct: dict[str, Any]) -> None:
    via = await fleet.run_fleet(tmp_path, CI_PLAN, via_gateway=True, disturb=restart_gateway,
                                worker_config=RESTART_TOLERANT)
    print(f"\ngateway killed and restarted: every worker streaming again after {via['gateway_restart_s']} s")
    assert via["ws_connections"] == 2  # one per gateway process
    assert_same_trades(CI_PLAN, direct, via)


#: 10 exchange minutes of 429s (0.4 s here): a Bitvavo-like ban, shorter than the 16 minutes beyond which a
#: resetat counts as implausible
STORM_VIRTUAL_MS = 600_000
#: 6 weight points per 2 s of real time, 2 of them for the gateway's own clock syncs (one a second)
LOW_BUDGET = {"gateway_rest_budget": 6, "gateway_budget_window_seconds": 2.0 * fleet.SPEED,
              "gateway_clock_sync_seconds": 1.0}


async def storm_after_a_gateway_restart(run: FleetRun) -> dict[str, Any]:
    """A new gateway with a low budget and an empty cache takes over mid-stream; as it comes up the exchange
    answers 429 (with a resetat), right when every worker reconnects and asks for what it missed."""
    await asyncio.sleep(2.0)
    subscribed = run.count_logged("subscribed:")
    run.gateway_settings.update(LOW_BUDGET)
    run.restart_gateway()
    await run.wait_gateway_ready()
    # the storm begins at the gateway's next request (its clock sync at the latest): a storm started on a
    # timer can fall between two requests when the low budget keeps the gateway quiet for a while
    run.fake.arm_storm(STORM_VIRTUAL_MS)
    await asyncio.wait_for(run.fake.storm_started.wait(), timeout=30.0)
    reset_at = run.fake.storm_until
    await run.wait_logged_all("subscribed:", counts=[n + 1 for n in subscribed], timeout=60.0)
    refused = [ts for ts, _, status in run.fake.requests if ts < reset_at and status == 429]
    return {"storm_429s": len(refused), "storm_429_spread_s": (refused[-1] - refused[0]) / fleet.SPEED / 1000
            if refused else 0.0}


async def test_low_budget_and_exchange_429_no_worker_crashes_or_hammers(tmp_path: Path,
                                                                       direct: dict[str, Any]) -> None:
    via = await fleet.run_fleet(tmp_path, CI_PLAN, via_gateway=True, disturb=storm_after_a_gateway_restart,
                                worker_config=RESTART_TOLERANT)
    metrics = via["gateway_metrics"]  # the second gateway's
    print(f"\n429 storm + budget 6 per 2 s: the exchange answered {via['storm_429s']} request(s) with 429 (all "
          f"within {via['storm_429_spread_s'] * 1000:.0f} ms, then none until the reset); the "
          f"gateway refused {metrics['papertrader_gateway_rest_refused_total']:.0f} worker requests and was "
          f"rate limited {metrics['papertrader_gateway_upstream_rate_limited_total']:.0f} time(s)")
    assert metrics["papertrader_gateway_upstream_rate_limited_total"] >= 1  # the storm was met
    assert metrics["papertrader_gateway_rest_refused_total"] >= 1  # and workers were told to wait
    # only the requests already in flight when the first 429 came back met it; nothing was sent after it
    assert 1 <= via["storm_429s"] <= len(set(CI_PLAN)) + 1, via["storm_429s"]
    assert via["storm_429_spread_s"] < 0.1, "the gateway kept asking the exchange after its 429 (a ban on Bitvavo)"
    assert_same_trades(CI_PLAN, direct, via)  # every worker exited 0 and caught up after the reset


FULL_MAX = {"1m": 300, "5m": 150, "15m": 80}  # long enough for most 5m and 15m workers to trade


@pytest.mark.slow
async def test_fleet_full_size(tmp_path: Path) -> None:
    """50 workers: straight vs through the gateway (at once), then through the gateway with all 50 restarted."""
    direct_run, via = await asyncio.gather(
        fleet.run_fleet(tmp_path / "a", FULL_PLAN, via_gateway=False, max_candles=FULL_MAX, timeout=600),
        fleet.run_fleet(tmp_path / "b", FULL_PLAN, via_gateway=True, max_candles=FULL_MAX, timeout=600))
    print(f"\nfleet {len(FULL_PLAN)} workers: fake WS connections direct={direct_run['ws_connections']} "
          f"gateway={via['ws_connections']}; REST weight direct={direct_run['weight']} gateway={via['weight']} "
          f"(warm-up: {direct_run['warmup_weight']} vs {via['warmup_weight']})")
    assert via["ws_connections"] == 1
    assert via["weight"] * 3 < direct_run["weight"]
    assert_same_trades(FULL_PLAN, direct_run, via)
    restarted = await fleet.run_fleet(tmp_path / "c", FULL_PLAN, via_gateway=True, max_candles=FULL_MAX,
                                      disturb=restart_all_workers, timeout=600)
    print(f"all {len(FULL_PLAN)} workers restarted at once: {restarted['restart_requests']} REST requests reached "
          f"the exchange besides the gateway's own {restarted['restart_time_requests']} clock syncs")
    assert restarted["restart_requests"] <= A_FEW_REQUESTS, restarted["restart_requests"]
    assert_same_trades(FULL_PLAN, direct_run, restarted)


def test_operator_gateway_env_respects_extra_config() -> None:
    from papertrader_operator.children import gateway_env
    from papertrader_operator.crd import default_spec

    spec = default_spec({"symbols": ["BTC-EUR"], "source": "bitvavo"})
    assert gateway_env(spec, "http://gw.papertrader.svc:8080") == [
        {"name": "BITVAVO_REST_URL", "value": "http://gw.papertrader.svc:8080/v2"},
        {"name": "BITVAVO_WS_URL", "value": "ws://gw.papertrader.svc:8080/v2/"}]
    assert gateway_env(spec, "") == []
    own = default_spec({"symbols": ["BTC-EUR"], "source": "bitvavo",
                        "extraConfig": {"BITVAVO_WS_URL": "wss://elsewhere/v2/"}})
    assert gateway_env(own, "http://gw:8080") == []
    assert gateway_env(default_spec({"symbols": ["BTC-EUR"], "source": "synthetic"}), "http://gw:8080") == []
