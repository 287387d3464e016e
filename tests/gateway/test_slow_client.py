"""A gateway client that stops reading is closed; the others keep receiving every frame, in order, on time."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from typing import Any

import aiohttp
from papertrader.market.fake_exchange import FakeBitvavo
from papertrader.market.gateway.server import Gateway
from papertrader.market.gateway.settings import GatewaySettings

from . import fleet

CANDLES = 6000
SUBSCRIBE = json.dumps({"action": "subscribe", "channels": [{"name": "candles", "interval": ["1m"],
                                                             "markets": ["S0-EUR"]}]})


def masked_text_frame(text: str) -> bytes:
    """One client-to-server WebSocket text frame (RFC 6455: clients mask their frames)."""
    payload = text.encode()
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frozen_client(port: int) -> socket.socket:
    """Upgrade, subscribe, then never read again (a tiny receive buffer, like a frozen pod's full socket)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    sock.sendall(masked_text_frame(SUBSCRIBE))
    return sock


async def read_all(url: str, expected: int) -> list[int]:
    """Every candle frame's open time, as a worker would read them."""
    seen: list[int] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str(SUBSCRIBE)
        async for msg in ws:
            message = json.loads(msg.data)
            if message.get("event") == "candle":
                seen.extend(row[0] for row in message["candle"])
                if len(seen) >= expected:
                    return seen
    return seen


async def test_a_frozen_client_is_closed_and_never_holds_up_the_others() -> None:
    candles = fleet.feed_candles(0, "1m", CANDLES)
    fake = await FakeBitvavo(candles, market="S0-EUR", interval="1m", start_index=fleet.HISTORY["1m"],
                             speed=120_000.0, paused=True).start()
    gateway = Gateway(GatewaySettings(bitvavo_rest_url=fake.rest_url, bitvavo_ws_url=fake.ws_url,
                                      gateway_host="127.0.0.1", gateway_port=0, gateway_client_queue_frames=50,
                                      gateway_clock_sync_seconds=0.5))
    await gateway.start()
    frozen = None
    try:
        await asyncio.wait_for(gateway.stream.connected.wait(), 10)
        frozen = await asyncio.to_thread(frozen_client, gateway.port)
        expected = (len(candles) - fleet.HISTORY["1m"]) * fake.updates_per_candle
        reader = asyncio.create_task(read_all(f"ws://127.0.0.1:{gateway.port}/v2/", expected))
        while len(gateway.clients) < 2 or not all(link.pairs for link in gateway.clients.values()):
            await asyncio.sleep(0.01)
        fake.resume()
        seen = await asyncio.wait_for(reader, 60)
        assert len(seen) == expected and seen == sorted(seen)  # every update, in order
        assert gateway.slow_clients_closed + sum(link.overflowed for link in gateway.clients.values()) == 1
    finally:
        if frozen is not None:
            frozen.close()
        await gateway.stop()
        await fake.stop()


async def first_update(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
    """Subscribe and take the first candle update (mid-bar: not the bar's final value)."""
    await ws.send_str(SUBSCRIBE)
    async for msg in ws:
        message = json.loads(msg.data)
        if message.get("event") == "candle":
            return message["candle"][0]
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
        await asyncio.wait_for(gateway.stream.connected.wait(), 10)
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
