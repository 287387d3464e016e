"""The resync loop: a pass over every PaperTrader each `interval` seconds, and at once when one is requested."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from papertrader_operator.cache import TraderKey

logger = logging.getLogger(__name__)


class ResyncScheduler:
    """Runs `run_pass(key)` for each key of `keys()` when it is due, at most `limit` passes at once and never two
    for the same key; `on_beat` and `on_pass_done` are called before and after each turn of the loop (the
    operator's liveness, the last-resync metric)."""

    def __init__(self, *, interval: float, limit: int, keys: Callable[[], Iterable[TraderKey]],
                 run_pass: Callable[[TraderKey], Awaitable[None]], on_beat: Callable[[], None],
                 on_pass_done: Callable[[], None]) -> None:
        self._interval = interval
        self._keys = keys
        self._run_pass = run_pass
        self._on_beat = on_beat
        self._on_pass_done = on_pass_done
        self._due: dict[TraderKey, float] = {}
        self._requested: set[TraderKey] = set()  # asked for now; kept when asked while a pass is running
        self._running: set[TraderKey] = set()
        self._wakeup = asyncio.Event()
        self._limit = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="papertrader-resync")

    async def stop(self) -> None:
        tasks = [task for task in [self._loop_task, *self._tasks] if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def request(self, key: TraderKey) -> None:
        """Schedule a pass over `key` now (again after a pass running at the moment)."""
        self._requested.add(key)
        self._wakeup.set()

    def passed(self, key: TraderKey) -> None:
        """`key` was just reconciled (by the loop or by a kopf handler): the next pass is one interval away."""
        self._due[key] = time.monotonic() + self._interval

    def forget(self, key: TraderKey) -> None:
        self._due.pop(key, None)
        self._requested.discard(key)

    async def _loop(self) -> None:
        while True:
            self._on_beat()
            self._wakeup.clear()
            now = time.monotonic()
            for key in list(self._keys()):
                due = key in self._requested or self._due.setdefault(key, now) <= now
                if key not in self._running and due:
                    self._running.add(key)
                    self._requested.discard(key)
                    task = asyncio.create_task(self._background(key))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            self._on_pass_done()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=min(1.0, self._interval))
            except TimeoutError:
                pass

    async def _background(self, key: TraderKey) -> None:
        try:
            async with self._limit:
                await self._run_pass(key)
        except Exception as exc:  # noqa: BLE001 - the loop must survive anything; the next pass retries
            logger.warning("reconcile of %s/%s failed: %s", *key, exc)
        finally:
            self._running.discard(key)
            self.passed(key)
            if key in self._requested:
                self._wakeup.set()
