"""A gateway client that stops reading is closed; the others keep receiving every frame, in order, on time."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

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
        await fleet.gateway_ready(gateway)
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

