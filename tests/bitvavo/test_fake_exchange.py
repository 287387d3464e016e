"""The fake exchange speaks the documented wire format (REST newest first, limits, boundaries, WS events)."""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp

from papertrader.market.bitvavo.parse import parse_rest_candles
from papertrader.market.fake_exchange import FakeBitvavo

from .helpers import synthetic_candles


async def test_rest_candles_format_paging_and_validation() -> None:
    candles = synthetic_candles(3100)
    async with FakeBitvavo(candles, start_index=3000, speed=1.0) as fake, aiohttp.ClientSession() as http:
        url = f"{fake.rest_url}/BTC-EUR/candles"
        async with http.get(url, params={"interval": "1m", "limit": "1440"}) as response:
            body = await response.json()
            assert int(response.headers["bitvavo-ratelimit-remaining"]) < 1000
            assert int(response.headers["bitvavo-ratelimit-resetat"]) > fake.now_ms()
        assert len(body) == 1440 and body[0][0] > body[-1][0]  # newest first
        assert all(isinstance(v, str) for v in body[0][1:])
        assert parse_rest_candles(body)[-1] == candles[2999]
        start, end = candles[100].ts, candles[200].ts
        async with http.get(url, params={"interval": "1m", "start": start, "end": end}) as response:
            assert parse_rest_candles(await response.json()) == candles[100:200]
        for params in ({"interval": "1m", "limit": "1441"}, {"interval": "1m", "start": start + 1},
                       {"interval": "5m"}):
            async with http.get(url, params=params) as response:
                assert response.status == 400 and (await response.json())["errorCode"] == 205
        async with http.get(f"{fake.rest_url}/markets", params={"market": "BTC-EUR"}) as response:
            assert (await response.json())["minOrderInQuoteAsset"] == "5"


async def test_ws_stream_updates_end_with_the_candle() -> None:
    candles = synthetic_candles(40)
    async with FakeBitvavo(candles, start_index=10, speed=6000.0, updates_per_candle=4) as fake, \
            aiohttp.ClientSession() as http, http.ws_connect(fake.ws_url) as ws:
        await ws.send_str(json.dumps({"action": "subscribe", "channels": [
            {"name": "candles", "interval": ["1m"], "markets": ["BTC-EUR"]}]}))
        first = json.loads((await ws.receive()).data)
        assert first == {"event": "subscribed", "subscriptions": {"candles": {"1m": ["BTC-EUR"]}}}
        last_by_ts: dict[int, list] = {}
        updates: dict[int, int] = {}
        while len(last_by_ts) < 15:
            msg = json.loads((await asyncio.wait_for(ws.receive(), 2)).data)
            assert msg["event"] == "candle" and msg["interval"] == "1m"
            row = msg["candle"][0]
            last_by_ts[row[0]] = row
            updates[row[0]] = updates.get(row[0], 0) + 1
    by_ts = {c.ts: c for c in candles}
    complete = [ts for ts, n in updates.items() if n == 4]
    assert len(complete) >= 10
    for ts in complete:
        assert [float(v) for v in last_by_ts[ts][1:]] == list(by_ts[ts][1:])


async def test_cli_serves_and_exits() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "papertrader.cli", "fake-exchange", "--synthetic", "300", "--history", "250",
        "--speed", "60000", "--exit-when-done", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode()
    assert process.returncode == 0, text
    assert "BITVAVO_REST_URL=http://127.0.0.1:" in text and "BITVAVO_WS_URL=ws://127.0.0.1:" in text


async def test_several_feeds_one_socket_and_a_paused_clock() -> None:
    from papertrader.market.sources.synthetic import SyntheticSource

    one_minute = synthetic_candles(400)
    origin = one_minute[300].ts
    five = SyntheticSource(3, 300_000, origin - 60 * 300_000)
    five_minute = [five._next_candle() for _ in range(120)]
    feeds = {("ETH-EUR", "5m"): five_minute}
    async with FakeBitvavo(one_minute, start_index=300, speed=30_000.0, extra_feeds=feeds, paused=True) as fake, \
            aiohttp.ClientSession() as http:
        first = fake.now_ms()
        await asyncio.sleep(0.05)
        assert fake.now_ms() == first == origin  # paused: the clock stands still
        async with http.get(f"{fake.rest_url}/ETH-EUR/candles", params={"interval": "5m"}) as response:
            assert parse_rest_candles(await response.json()) == five_minute[:60]
        async with http.get(f"{fake.rest_url}/ETH-EUR/candles", params={"interval": "1m"}) as response:
            assert response.status == 400
        async with http.get(f"{fake.rest_url}/markets") as response:
            assert {m["market"] for m in await response.json()} == {"BTC-EUR", "ETH-EUR"}
        seen: dict[tuple[str, str], int] = {}
        async with http.ws_connect(fake.ws_url) as ws:
            await ws.send_str(json.dumps({"action": "subscribe", "channels": [
                {"name": "candles", "interval": ["1m", "5m"], "markets": ["BTC-EUR", "ETH-EUR"]}]}))
            reply = json.loads((await ws.receive()).data)
            assert reply == {"event": "subscribed", "subscriptions": {"candles": {"1m": ["BTC-EUR"],
                                                                                 "5m": ["ETH-EUR"]}}}
            fake.resume()
            while len(seen) < 2 or min(seen.values()) < 3:
                event = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
                key = (event["market"], event["interval"])
                seen[key] = seen.get(key, 0) + 1
                if key == ("ETH-EUR", "5m") and seen[key] == 1:
                    assert event["candle"][0][0] == five_minute[60].ts  # streams from the shared origin
            await ws.send_str(json.dumps({"action": "unsubscribe", "channels": [
                {"name": "candles", "interval": ["1m"], "markets": ["BTC-EUR"]}]}))
            while (event := json.loads((await asyncio.wait_for(ws.receive(), 5)).data)).get("event") == "candle":
                pass
            assert event == {"event": "unsubscribed", "subscriptions": {"candles": {"5m": ["ETH-EUR"]}}}
            for _ in range(10):
                event = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
                assert (event["market"], event["interval"]) == ("ETH-EUR", "5m")
        assert fake.now_ms() > origin and fake.ws_connections == 1 and fake.weight_spent == 3
