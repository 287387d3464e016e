"""The gateway against the fake exchange: its clock runs at the exchange's rate from the first answer, and a bar
that was forming when its pair was unsubscribed upstream is never served from a stale update."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from papertrader.market.fake_exchange import FakeBitvavo
from papertrader.market.gateway.server import Gateway
from papertrader.market.gateway.settings import GatewaySettings

from . import fleet

SUBSCRIBE = json.dumps({"action": "subscribe", "channels": [{"name": "candles", "interval": ["1m"],
                                                             "markets": ["S0-EUR"]}]})


async def exchange_time(session: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    async with session.get(f"{url}/time") as answer:
        assert answer.status == 200
        return time.monotonic(), (await answer.json())["time"]


async def test_the_gateway_clock_runs_at_the_exchange_rate_as_soon_as_it_is_ready() -> None:
    """A clock synchronised once runs at 1x until the next sync (5 s here): workers synchronising against it would
    measure the wrong rate against an accelerated exchange and wait 1500x too long for a resetat."""
    candles = fleet.feed_candles(0, "1m", 400)
    fake = await FakeBitvavo(candles, market="S0-EUR", interval="1m", start_index=fleet.HISTORY["1m"],
                             speed=1500.0).start()
    gateway = Gateway(GatewaySettings(bitvavo_rest_url=fake.rest_url, bitvavo_ws_url=fake.ws_url,
                                      gateway_host="127.0.0.1", gateway_port=0, gateway_clock_sync_seconds=5.0))
    await gateway.start()
    url = f"http://127.0.0.1:{gateway.port}/v2"
    try:
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(f"http://127.0.0.1:{gateway.port}/readyz") as answer:
                    if answer.status == 200:
                        break
                await asyncio.sleep(0.01)
            first = await exchange_time(session, url)
            await asyncio.sleep(0.4)
            second = await exchange_time(session, url)
        rate = (second[1] - first[1]) / ((second[0] - first[0]) * 1000)
        assert 1000 < rate < 2000, rate  # the fake's 1500x, not 1x
    finally:
        await gateway.stop()
        await fake.stop()


async def first_update(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
    """Subscribe and take the first update of the next bar to begin (the fake sends 3 a bar: not its final value)."""
    await ws.send_str(SUBSCRIBE)
    seen: int | None = None
    async for msg in ws:
        message = json.loads(msg.data)
        if message.get("event") == "candle":
            row = message["candle"][0]
            if seen is not None and row[0] > seen:
                return row
            seen = row[0]
    raise AssertionError("no candle frame")


async def test_a_bar_forming_when_its_pair_was_unsubscribed_is_never_served_as_final() -> None:
    """The last frame before an upstream unsubscribe is a forming bar's update; when the pair is subscribed again
    and newer bars stream, that bar must come from the exchange, not be cached from its stale update."""
    candles = fleet.feed_candles(0, "1m", 400)
    fake = await FakeBitvavo(candles, market="S0-EUR", interval="1m", start_index=fleet.HISTORY["1m"],
                             speed=120.0).start()  # a 1m bar every 0.5 s, 3 updates each
    gateway = Gateway(GatewaySettings(bitvavo_rest_url=fake.rest_url, bitvavo_ws_url=fake.ws_url,
                                      gateway_host="127.0.0.1", gateway_port=0, gateway_clock_sync_seconds=0.5,
                                      gateway_unsubscribe_linger_seconds=0.01))
    await gateway.start()
    pair = ("S0-EUR", "1m")
    try:
        await fleet.gateway_ready(gateway)
        ws_url = f"ws://127.0.0.1:{gateway.port}/v2/"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url) as ws:
                stale = await first_update(ws)
            while pair in gateway.stream.subscribed:  # the linger runs out at the next upstream frame
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.2)  # two bars later
            async with session.ws_connect(ws_url) as ws:
                newer = await first_update(ws)
                assert newer[0] >= stale[0] + 2 * 60_000
                while not gateway.caches[pair].covered_end(newer[0]):  # the stream has closed the newer bar
                    await asyncio.sleep(0.02)
                query = f"S0-EUR/candles?interval=1m&start={stale[0]}&end={stale[0] + 60_000}"
                async with session.get(f"http://127.0.0.1:{gateway.port}/v2/{query}") as answer:
                    via_gateway = await answer.json()
                async with session.get(f"{fake.rest_url}/{query}") as answer:
                    from_exchange = await answer.json()
        assert via_gateway == from_exchange and via_gateway[0] != stale  # the final values, not the stale update
    finally:
        await gateway.stop()
        await fake.stop()
