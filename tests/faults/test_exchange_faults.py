"""Exchange fault matrix: a live worker (``--source bitvavo``) against the fake Bitvavo, one fault per row.

Every row asserts the same outcome, the one that matters: the worker did not crash (the run ends normally after
``max_candles``), and it lost and invented no candle -- its ``--record`` file is exactly one contiguous slice of the
exchange's candles (each closed bar once, in order, with its final values), and ``--source replay`` of that slice
gives a byte-identical trades.csv (``live_then_replay`` from tests/bitvavo/test_live.py). Each row also checks
*what the worker did* (its source counters / log lines), and the matrix is printed as a table (docs/proof.md).

CI runs every row once (seeded, a few seconds each); ``python -m pytest -m slow tests/faults`` repeats the matrix
with more seeds.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from papertrader.config import Settings
from papertrader.market.bitvavo import clock as clock_module
from papertrader.market.fake_exchange import FakeBitvavo, FakeScript
from tests.bitvavo.helpers import synthetic_candles, worker_log
from tests.bitvavo.test_live import FAST, live_then_replay

START = 300
MAX_CANDLES = 450
RESULTS: list[dict[str, Any]] = []
DEFAULT_STALE = Settings.model_fields["ws_stale_seconds"].default  # WS_STALE_SECONDS as shipped (90 s)


class HugeFrameExchange(FakeBitvavo):
    """Sends a 1 MiB frame (under the client's 4 MiB limit: parsed and ignored) and a 5 MiB frame (over it: the
    client closes the connection with 1009 and reconnects)."""

    huge_at: dict[int, int] = {}

    async def _after_first_update(self, index: int) -> None:
        await super()._after_first_update(index)
        size = self.huge_at.get(index)
        if size:
            await self._broadcast(json.dumps({"event": "ticker", "market": self.market, "junk": "x" * size}))


class FlakyPagesExchange(FakeBitvavo):
    """Every other REST ``/candles`` page answers HTTP 500 or 503 (warm-up, gap-fill and closer pages alike)."""

    calls = 0

    async def _candles(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls % 2 == 1:
            status = 500 if self.calls % 4 == 1 else 503
            self.requests.append((self.now_ms(), request.path, status))
            return self._error(status, 101, "Unknown error. Operation may or may not have succeeded.", self.now_ms())
        return await super()._candles(request)


class BlackholeProxy:
    """A TCP proxy in front of the fake's WebSocket: ``blackhole()`` makes every open connection half-open (the
    socket stays open, nothing is delivered in either direction, no FIN, no RST); new connections work."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.generation = 0
        self.connections = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self.generation
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.generation != generation:
                        await asyncio.sleep(3600)  # half-open: swallow everything, never close
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    def blackhole(self) -> None:
        self.generation += 1

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def _record(row: str, live: dict[str, Any], did: str) -> None:
    status = live["source_status"]
    RESULTS.append({"fault": row, "did": did, "candles": live["candles"], "trades": live["trades"],
                    "disconnects": status["disconnects"], "gap_filled": status["gap_filled_candles"],
                    "rejected": live.get("rejected_candles", 0), "rest_failures": status["rest_failures"]})
    print(f"\nFAULT-ROW {json.dumps(RESULTS[-1])}")


def _candles(count: int = 1500) -> list[Any]:
    return synthetic_candles(count)


async def test_disconnect_storm(tmp_path: Path) -> None:
    drops = {START + 40 + 12 * k for k in range(25)}  # 25 drops, one every 12 bars
    async with FakeBitvavo(_candles(), start_index=START, speed=FAST / 2, script=FakeScript(drop_at=drops)) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES)
    status = live["source_status"]
    assert status["disconnects"] >= 10 and status["gap_filled_candles"] >= 1
    _record("disconnect storm (25 drops, 1 per 12 bars)", live,
            f"reconnected {status['disconnects']}x, gap-filled {status['gap_filled_candles']} bars from REST")


async def test_half_open_connection(tmp_path: Path) -> None:
    async with FakeBitvavo(_candles(), start_index=START, speed=FAST / 4) as fake:
        proxy = BlackholeProxy(fake.port)
        port = await proxy.start()

        async def blackhole_later() -> None:
            for _ in range(2):  # each time once the stream runs on a fresh connection
                seen = proxy.connections
                while proxy.connections <= seen if proxy.generation else proxy.connections < 1:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.6)
                proxy.blackhole()

        task = asyncio.get_running_loop().create_task(blackhole_later())
        try:
            live = await live_then_replay(fake, tmp_path, MAX_CANDLES, bitvavo_ws_url=f"ws://127.0.0.1:{port}/v2/",
                                          ws_stale_seconds=0.5)
        finally:
            task.cancel()
            await proxy.stop()
    status = live["source_status"]
    assert status["stale_reconnects"] >= 2 and proxy.connections >= 3
    assert "stream stale: no message for 0.5 s" in worker_log(tmp_path / "live")
    _record("half-open connection (2x, proxy swallows all bytes)", live,
            f"stale watchdog reconnected {status['stale_reconnects']}x, gap-filled {status['gap_filled_candles']}")


async def test_stall(tmp_path: Path) -> None:
    script = FakeScript(stall_at={START + 60: 1.5, START + 200: 1.0})
    async with FakeBitvavo(_candles(), start_index=START, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES, ws_stale_seconds=0.5)
    status = live["source_status"]
    assert status["stale_reconnects"] >= 2
    _record("stream stalls (1.5 s, 1.0 s; stale after 0.5 s)", live,
            f"stale reconnects {status['stale_reconnects']}, gap-filled {status['gap_filled_candles']}")


async def test_malformed_and_truncated_frames(tmp_path: Path) -> None:
    script = FakeScript(malformed_at={START + 50 + 10 * k for k in range(10)})
    async with FakeBitvavo(_candles(), start_index=START, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES)
    status = live["source_status"]
    assert status["malformed_frames"] >= 10 and status["malformed_rows"] >= 10
    _record("malformed + truncated frames (10 each)", live,
            f"skipped {status['malformed_frames']} frames, {status['malformed_rows']} rows; connection kept")


async def test_huge_frames(tmp_path: Path) -> None:
    HugeFrameExchange.huge_at = {START + 60: 1 << 20, START + 150: 5 << 20}
    async with HugeFrameExchange(_candles(), start_index=START, speed=FAST / 4) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES)
    status = live["source_status"]
    # only the 5 MiB frame closed the connection (1009, message too big; reconnected); the 1 MiB one was read
    assert status["disconnects"] - status["stale_reconnects"] == 1, status
    _record("huge frames (1 MiB ignored, 5 MiB > 4 MiB limit)", live,
            f"1 MiB frame ignored; 5 MiB frame closed the connection (1009), reconnects {status['disconnects']}")


async def test_nan_negative_zero_prices(tmp_path: Path) -> None:
    candles = _candles()
    for i in (START + 70, START + 71):
        candles[i] = candles[i]._replace(open=0.0, close=0.0, low=0.0)
    candles[START + 90] = candles[START + 90]._replace(volume=0.0, high=0.0, low=0.0, open=0.0, close=0.0)
    script = FakeScript(nan_at={START + 50, START + 110}, negative_at={START + 60, START + 130})
    async with FakeBitvavo(candles, start_index=START, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES)
    assert live["rejected_candles"] >= 7
    _record("NaN, negative, zero prices (7 bars)", live,
            f"passed on, judged by the quality gate: {live['rejected_candles']} rejected, none traded on")


async def test_duplicate_and_out_of_order_candles(tmp_path: Path) -> None:
    script = FakeScript(duplicate_at={START + 40 + 9 * k for k in range(10)},
                        out_of_order_at={START + 45 + 9 * k for k in range(10)})
    async with FakeBitvavo(_candles(), start_index=START, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES)
    status = live["source_status"]
    assert status["late_updates"] >= 20
    _record("duplicate + out-of-order candles (10 each)", live,
            f"dropped {status['late_updates']} late updates of closed bars")


async def test_one_hour_gap(tmp_path: Path) -> None:
    script = FakeScript(gap_at={START + 80: 60})
    async with FakeBitvavo(_candles(), start_index=START, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES)
    assert live["gaps"] >= 1
    _record("1 h gap (60 bars without trades)", live, f"gap kept as a gap ({live['gaps']} seen by the gate)")


async def test_local_clock_skew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local wall clock is 3 h ahead and steps back by 2 h mid-run (and the exchange's own clock is on
    2024-01-01 running 6000x real time): decisions use the exchange clock only."""
    import time

    real = time.time
    started = real()
    readings = {"ahead_3h": 0, "ahead_1h": 0}

    def skewed() -> float:
        early = real() - started < 1.0
        readings["ahead_3h" if early else "ahead_1h"] += 1
        return real() + (3 * 3600 if early else 3600)

    monkeypatch.setattr(clock_module.ExchangeClock.__init__, "__defaults__", (time.monotonic, skewed))
    async with FakeBitvavo(_candles(), start_index=START, speed=FAST / 2) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES)
    status = live["source_status"]
    assert readings["ahead_3h"] >= 1 and readings["ahead_1h"] >= 1, readings  # the clock read both skews ...
    assert status["clock_rate"] > 1000  # ... and the exchange's own (fast) clock was measured and used
    _record("local clock skew (+3 h, then a 2 h step back)", live,
            f"exchange clock used; offset {status['clock_offset_ms'] / 3.6e6:.1f} h")


async def test_429_storm(tmp_path: Path) -> None:
    storm_ms = int(1.5 * FAST / 2 * 1000)
    script = FakeScript(storm_at={START + 100: storm_ms, START + 250: storm_ms // 2},
                        drop_at={START + 100, START + 250})
    async with FakeBitvavo(_candles(), start_index=START, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES)
        refused = sum(1 for r in fake.requests if r[2] == 429)
    status = live["source_status"]
    assert 2 <= refused <= 8 and status["rate_limited_responses"] == refused
    _record("429 storms (2, during reconnects)", live,
            f"{refused} requests refused, then waited for resetat (no hammering)")


async def test_5xx_on_rest_pages(tmp_path: Path) -> None:
    script = FakeScript(drop_at={START + 80, START + 160, START + 240})
    async with FlakyPagesExchange(_candles(), start_index=START, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES, data_collection_failure_threshold=50)
        errors = sum(1 for r in fake.requests if r[2] >= 500)
    status = live["source_status"]
    assert errors >= 4 and status["rest_failures"] >= errors
    assert status["gap_filled_candles"] >= 1
    _record("5xx on every other REST page (500/503)", live,
            f"{errors} pages failed and were retried with backoff; gap-fills completed")


async def test_fault_storm_on_the_default_stale_timeout(tmp_path: Path) -> None:
    """Bad frames, drops, a stall and a 429 window in one run, with WS_STALE_SECONDS at its default: the stall
    never trips the watchdog, the quiet-market timer fetches the bars it hid, and the ledger equals the replay's."""
    storm_ms = int(1.0 * FAST / 2 * 1000)
    script = FakeScript(malformed_at={START + 50, START + 150}, drop_at={START + 100, START + 250},
                        stall_at={START + 200: 1.5}, storm_at={START + 250: storm_ms})
    async with FakeBitvavo(_candles(), start_index=START, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, MAX_CANDLES, ws_stale_seconds=DEFAULT_STALE)
    status = live["source_status"]
    assert status["stale_reconnects"] == 0 and status["disconnects"] >= 2
    assert status["rest_closed_candles"] >= 1 and status["malformed_frames"] >= 2
    _record("storm on default WS_STALE_SECONDS (frames, drops, 1.5 s stall, 429)", live,
            f"stall bridged from REST ({status['rest_closed_candles']} bars), no stale reconnect")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 6))
async def test_combined_faults_with_seeds(tmp_path: Path, seed: int) -> None:
    """All fault kinds at seeded random positions in one run (the full matrix repeats this)."""
    import random

    rng = random.Random(seed)
    positions = rng.sample(range(START + 40, START + 600), 60)
    take = iter(positions)
    script = FakeScript(drop_at={next(take) for _ in range(6)}, stall_at={next(take): 0.8},
                        malformed_at={next(take) for _ in range(6)}, duplicate_at={next(take) for _ in range(6)},
                        out_of_order_at={next(take) for _ in range(6)}, nan_at={next(take) for _ in range(3)},
                        negative_at={next(take) for _ in range(3)}, gap_at={next(take): rng.choice([3, 60])},
                        storm_at={next(take): 20_000})
    async with FakeBitvavo(_candles(2500), start_index=START, speed=FAST / 2, script=script) as fake:
        live = await live_then_replay(fake, tmp_path, 800, ws_stale_seconds=DEFAULT_STALE)
    _record(f"combined, seed {seed}", live, f"disconnects {live['source_status']['disconnects']}")
