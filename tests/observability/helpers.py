"""Shared helpers: an in-process worker with controllable sources, and small HTTP/WS clients."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from papertrader.cli import build_worker
from papertrader.config import load_settings
from papertrader.market.candle import Candle
from papertrader.market.sources.base import CandleSource
from papertrader.market.sources.synthetic import SyntheticSource
from papertrader.strategy.base import Strategy


def settings_for(state_dir: Path, **values: Any) -> Any:
    """Settings with free ports and given overrides (upper-case names, like the environment)."""
    flags = {"state_dir": state_dir, "http_port": 0, "ws_port": 0}
    config = state_dir.parent / f"{state_dir.name}.yaml"
    base = {"HTTP_HOST": "127.0.0.1", "HEALTH_PROBE_INTERVAL": 0.1, "PERFORMANCE_REPORT_INTERVAL": 3600}
    base.update(values)
    config.write_text("".join(f"{k}: {json.dumps(v) if isinstance(v, (dict, list, str)) else v}\n"
                              for k, v in base.items()), encoding="utf-8")
    return load_settings(flags, config_file=config)


class ScriptedSource(CandleSource):
    """Synthetic candles in controlled portions. ``release(n)`` lets n more through; ``next_batch`` waits (like a
    live source waiting for the next candle) until then; ``hang()`` makes it wait forever; ``end()`` finishes."""

    def __init__(self, live: bool = False, seed: int = 7, interval_ms: int = 60_000,
                 start_ms: int = 1_700_000_000_000, now_aligned: int = 0) -> None:
        self.live = live
        if now_aligned:  # candle number ``now_aligned`` closes about now, so live freshness checks pass
            start_ms = (int(time.time() * 1000) // interval_ms - now_aligned) * interval_ms
        self.interval_ms = interval_ms
        self.synthetic = SyntheticSource(seed, interval_ms, start_ms)
        self.allowed = 0
        self.delivered = 0
        self.ended = False
        self._changed = asyncio.Event()

    def release(self, count: int) -> None:
        self.allowed += count
        self._changed.set()

    def end(self) -> None:
        self.ended = True
        self._changed.set()

    async def next_batch(self, max_items: int) -> list[Any] | None:
        while self.delivered >= self.allowed:
            if self.ended:
                return None
            self._changed.clear()
            await self._changed.wait()
        count = min(max_items, self.allowed - self.delivered)
        batch = await self.synthetic.next_batch(count)
        self.delivered += len(batch)
        return batch

    def cursor(self) -> dict[str, Any]:
        return {"synthetic": self.synthetic.cursor(), "delivered": self.delivered}

    def restore(self, cursor: dict[str, Any]) -> None:
        self.synthetic.restore(cursor["synthetic"])
        self.delivered = cursor["delivered"]
        self.allowed = max(self.allowed, self.delivered)

    def status(self) -> dict[str, Any]:
        return {"source": "scripted", "live": self.live, "connected": True}


class Worker:
    """A WorkerRunner on the current event loop."""

    def __init__(self, settings: Any, source: CandleSource | None = None, tracing_exporter: Any = None,
                 strategy: Strategy | None = None) -> None:
        self.runner, self.obs = build_worker(settings, source=source, strategy=strategy, console_logs=False,
                                             tracing_exporter=tracing_exporter)
        self.task: asyncio.Task[dict[str, Any]] | None = None

    async def start(self) -> Worker:
        self.task = asyncio.create_task(self.runner.run())
        deadline = time.monotonic() + 10
        while not self.obs.started:
            if self.task.done():
                self.task.result()
            if time.monotonic() > deadline:
                raise TimeoutError("worker did not start")
            await asyncio.sleep(0.01)
        return self

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.obs.http.bound_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.obs.feed.bound_port}"

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.get(self.http + path, timeout=aiohttp.ClientTimeout(total=5)) as response:
                text = await response.text()
                try:
                    return response.status, json.loads(text)
                except ValueError:
                    return response.status, text

    async def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.post(self.http + path, json=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=5)) as response:
                return response.status, await response.json(content_type=None)

    async def stop(self) -> dict[str, Any] | None:
        if self.task is None:
            return None
        self.runner.request_stop()
        source = self.runner.source
        if isinstance(source, ScriptedSource):
            source.end()
        try:
            return await asyncio.wait_for(self.task, 15)
        except TimeoutError:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping: each task's end is only awaited
                pass
            return None


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


def candle_count(candles: list[Candle]) -> int:
    return len(candles)
