"""The market gateway's fan-out: candles per second delivered to many clients, and the latency its hop adds.

    python benchmarks/gateway_fanout.py [--clients 50] [--pairs 10] [--speed 3000] [--candles 400]
    python benchmarks/gateway_fanout.py --json out.json   # also write the figures as JSON

Three processes on 127.0.0.1: the fake exchange (this process) streams ``--pairs`` 1-minute feeds (three updates a
bar) at ``--speed`` times real time; a real gateway (``papertrader market-gateway``) holds one upstream connection;
a client process opens ``--clients`` WebSocket clients on the gateway, each subscribed to one pair (round-robin,
the fleet's shape), and two probes subscribed to every pair: one on the gateway, one straight on the exchange.

- fan-out: candle frames received by all gateway clients per second of streaming, and the share of the frames
  the exchange sent for their pairs that each received (every client must get every frame: ``complete``);
- added latency: for each frame both probes saw, arrival through the gateway minus arrival straight from the
  exchange (``time.monotonic`` is one clock for every process), p50 / p99 / max. That hop is all the gateway
  adds to a worker's decision latency: the worker's own path from frame to persisted decision is the same code
  either way (tests/gateway/test_fleet.py shows the decisions are identical).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from papertrader.market.fake_exchange import FakeBitvavo  # noqa: E402  (after the path set-up above)
from tests.gateway.fleet import feed_candles, free_port, start_gateway  # noqa: E402


def subscribe_message(pairs: list[str]) -> str:
    return json.dumps({"action": "subscribe", "channels": [{"name": "candles", "interval": ["1m"],
                                                            "markets": pairs}]})


def frame_key(text: str) -> str | None:
    """A candle frame's identity (market + the update's values), None for other frames."""
    message = json.loads(text)
    if message.get("event") != "candle":
        return None
    return message["market"] + json.dumps(message["candle"])


async def client(session: aiohttp.ClientSession, url: str, pairs: list[str], stop_at: float,
                 arrivals: dict[str, float] | None) -> int:
    """Receive until ``stop_at`` (monotonic); count candle frames (and note each one's arrival time)."""
    received = 0
    async with session.ws_connect(url, heartbeat=None, max_msg_size=0) as ws:
        await ws.send_str(subscribe_message(pairs))
        while True:
            left = stop_at - time.monotonic()
            if left <= 0:
                return received
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                return received
            if msg.type != aiohttp.WSMsgType.TEXT:
                return received
            key = frame_key(msg.data)
            if key is None:
                continue
            received += 1
            if arrivals is not None:
                arrivals.setdefault(key, time.monotonic())


def clients_process(gateway_url: str, direct_url: str, markets: list[str], clients: int, seconds: float,
                    out: Any) -> None:
    async def main() -> dict[str, Any]:
        stop_at = time.monotonic() + seconds
        via: dict[str, float] = {}
        direct: dict[str, float] = {}
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            load = [client(session, gateway_url, [markets[i % len(markets)]], stop_at, None) for i in range(clients)]
            probes = [client(session, gateway_url, markets, stop_at, via),
                      client(session, direct_url, markets, stop_at, direct)]
            counts = await asyncio.gather(*load, *probes)
        added = [(via[k] - direct[k]) * 1000 for k in direct if k in via]
        return {"per_client": counts[:clients], "added_ms": added, "probe_frames": counts[-1]}

    out.put(asyncio.run(main()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    markets = [f"S{i}-EUR" for i in range(args.pairs)]
    history = 30
    feeds = {(m, "1m"): feed_candles(i, "1m", args.candles + history)[: history + args.candles]
             for i, m in enumerate(markets)}
    primary = feeds.pop((markets[0], "1m"))
    fake = FakeBitvavo(primary, market=markets[0], interval="1m", start_index=history, speed=args.speed,
                       extra_feeds=feeds, paused=True)
    await fake.start()
    tmp = Path(tempfile.mkdtemp(prefix="gateway-fanout-"))
    port = free_port()
    gateway = start_gateway(port, fake.rest_url, fake.ws_url, tmp / "gateway.log")
    try:
        for _ in range(200):  # upstream connected
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    pass
                async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        break
            except (OSError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.05)
        stream_s = args.candles * 60 / args.speed
        queue: Any = multiprocessing.get_context("spawn").Queue()
        proc = multiprocessing.get_context("spawn").Process(
            target=clients_process, args=(f"ws://127.0.0.1:{port}/v2/", fake.ws_url, markets, args.clients,
                                          stream_s + 6.0, queue))
        proc.start()
        await asyncio.sleep(4.0)  # every client connected and subscribed (checked below: complete)
        frames_before = fake.frames_sent
        started = time.monotonic()
        fake.resume()
        await asyncio.wait_for(fake.finished.wait(), stream_s + 30)
        streamed_s = time.monotonic() - started
        result = await asyncio.to_thread(queue.get, True, 120)
        proc.join(10)
        per_pair = args.candles * fake.updates_per_candle  # frames the exchange sent per pair
        upstream_frames = fake.frames_sent - frames_before
    finally:
        gateway.terminate()
        gateway.wait(10)
        await fake.stop()
    received = sum(result["per_client"])
    added = result["added_ms"]
    return {
        "clients": args.clients, "pairs": args.pairs, "speed": args.speed, "candles_per_pair": args.candles,
        "stream_seconds": round(streamed_s, 2),
        "exchange_frames_sent": upstream_frames,
        "frames_per_pair": per_pair,
        "gateway_frames_delivered": received,
        "fanout_frames_per_s": round(received / streamed_s, 1),
        "fanout_candles_per_s": round(received / fake.updates_per_candle / streamed_s, 1),
        "complete": all(count == per_pair for count in result["per_client"]),
        "min_share_received": round(min(result["per_client"]) / per_pair, 4),
        "added_latency_ms": {"frames": len(added), "p50": round(percentile(added, 0.5), 3),
                             "p99": round(percentile(added, 0.99), 3), "max": round(max(added), 3)},
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="gateway clients, one pair each (default 50)")
    parser.add_argument("--pairs", type=int, default=10, help="1m feeds streamed (default 10)")
    parser.add_argument("--speed", type=float, default=3000.0, help="exchange speed vs real time (default 3000)")
    parser.add_argument("--candles", type=int, default=400, help="candles per pair (default 400)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
