"""Fleet through the market gateway vs the same fleet straight to the exchange (real processes, 127.0.0.1).

CI size: 10 workers, 4 symbols x 2 intervals. Full size (50 workers, 10 symbols, 3 intervals):

    PYTHONPATH=worker:operator python -m pytest -q -m slow tests/gateway/test_fleet.py -s
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from papertrader.market.fake_exchange import FakeBitvavo

from . import fleet

SPEED = 1500.0  # a 1m bar every 40 ms
MAX = {"1m": 200, "5m": 60, "15m": 20}


def plan(symbols: int, intervals: list[str], workers: int) -> list[tuple[str, str]]:
    pairs = [(f"S{i}-EUR", iv) for i in range(symbols) for iv in intervals]
    return [pairs[i % len(pairs)] for i in range(workers)]


def make_fake(pairs: set[tuple[str, str]]) -> FakeBitvavo:
    feeds = {(m, iv): fleet.feed_candles(int(m[1:].split("-")[0]), iv, MAX[iv] * 2) for m, iv in sorted(pairs)}
    (market, interval), *rest = sorted(feeds)
    primary = feeds.pop((market, interval))
    return FakeBitvavo(primary, market=market, interval=interval, start_index=fleet.HISTORY[interval], speed=SPEED,
                       extra_feeds=feeds, paused=True)


async def run_fleet(tmp: Path, workers: list[tuple[str, str]], via_gateway: bool) -> dict[str, Any]:
    fake = await make_fake(set(workers)).start()
    gateway = None
    name = "gw" if via_gateway else "direct"
    try:
        url = ""
        extra: dict[str, Any] = {}
        if via_gateway:
            port = fleet.free_port()
            gateway = fleet.start_gateway(port, fake.rest_url, fake.ws_url, tmp / "gateway.log")
            url = f"http://127.0.0.1:{port}"
        else:
            extra = {"BITVAVO_REST_URL": fake.rest_url, "BITVAVO_WS_URL": fake.ws_url}
        procs = []
        dirs = []
        for i, (market, interval) in enumerate(workers):
            state = tmp / f"{name}-{i}"
            dirs.append(state)
            cmd = fleet.worker_command(f"t{i}", market, interval, state, {**extra, "MAX_CANDLES": MAX[interval]}, url)
            if via_gateway:
                assert cmd[1]["BITVAVO_REST_URL"] == f"{url}/v2"  # the operator's env, not a hand-written one
            procs.append(fleet.start_worker(cmd, tmp / f"{name}-{i}.out"))
        for state in dirs:
            await asyncio.to_thread(fleet.wait_logged, state, "stream connected to", 1, 90.0)
        warmup_weight = fake.weight_spent
        fake.resume()
        deadline = time.monotonic() + 120
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        for p in procs:
            if p.poll() is None:
                p.kill()
        assert [p.wait() for p in procs] == [0] * len(procs), [
            (tmp / f"{name}-{i}.out").read_text()[-1500:] for i, p in enumerate(procs) if p.returncode]
        return {"trades": [(d / "logs" / "trades.csv").read_bytes() for d in dirs],
                "ws_connections": fake.ws_connections, "weight": fake.weight_spent, "warmup_weight": warmup_weight,
                "requests": len(fake.requests)}
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(10)
        await fake.stop()


async def check_fleet(tmp: Path, symbols: int, intervals: list[str], workers: int) -> None:
    plan_ = plan(symbols, intervals, workers)
    direct, via = await asyncio.gather(run_fleet(tmp, plan_, False), run_fleet(tmp, plan_, True))
    print(f"\nfleet {workers} workers: fake WS connections direct={direct['ws_connections']} "
          f"gateway={via['ws_connections']}; REST weight direct={direct['weight']} gateway={via['weight']} "
          f"(warm-up: {direct['warmup_weight']} vs {via['warmup_weight']})")
    assert via["ws_connections"] == 1
    assert direct["ws_connections"] >= workers
    assert via["weight"] * 3 < direct["weight"]
    trading = sum(1 for t in direct["trades"] if t.count(b"\n") > 1)
    assert trading >= workers // 2, "the comparison needs trades"
    for i, (a, b) in enumerate(zip(direct["trades"], via["trades"])):
        assert a == b, f"worker {i} {plan_[i]}: trades differ through the gateway"


async def test_fleet_ci_size(tmp_path: Path) -> None:
    await check_fleet(tmp_path, 4, ["1m", "5m"], 10)


@pytest.mark.slow
async def test_fleet_full_size(tmp_path: Path) -> None:
    await check_fleet(tmp_path, 10, ["1m", "5m", "15m"], 50)


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
