"""The notification policy, apart from any transport: one bounded priority queue, hourly limits, error aggregation.

Used by the worker's own Telegram notifier (notify/telegram.py), by the worker's forwarder to the fleet notifier
(notify/forward.py) and by the fleet notifier itself (notify/fleet/), so the three apply the same rules:

- Priorities ``critical`` < ``high`` < ``normal`` < ``low`` (critical is sent first). When the queue is full a new
  message evicts the lowest-priority queued one if it outranks it, otherwise it is dropped; drops are counted.
- Hourly limits per category (sliding hour, counted when a message is accepted); over a limit the message is
  dropped and counted. Critical messages ignore the limits. Several :class:`HourlyLimits` may apply at once
  (the fleet's and one trader's): a message must fit all of them.
- Identical errors within the aggregation window become one message with a count and the sources that sent them.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

CATEGORIES = ("trade", "error", "status", "system")
PRIORITIES = {"critical": 0, "high": 1, "normal": 2, "low": 3}
PRIORITY_NAMES = {level: name for name, level in PRIORITIES.items()}
ICONS = {0: "🚨", 1: "⚠️", 2: "ℹ️", 3: "💭"}
MAX_TEXT = 4000  # Telegram's limit is 4096 characters
HOUR = 3600.0


@dataclass(order=True)
class Notification:
    priority: int
    seq: int
    category: str = field(compare=False)
    text: str = field(compare=False)
    #: for an (aggregated) error: its kind, message and how many times it occurred
    error: tuple[str, str, int] | None = field(compare=False, default=None)
    #: resolved with whether the transport delivered it (the fleet notifier acknowledges criticals only then)
    ack: asyncio.Future[bool] | None = field(compare=False, default=None)

    def settle(self, delivered: bool) -> None:
        if self.ack is not None and not self.ack.done():
            self.ack.set_result(delivered)


class HourlyLimits:
    """Sliding-hour counters per category; a category without a limit (or limit 0) accepts nothing."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self.limits = dict(limits)
        self._window: dict[str, deque[float]] = {category: deque() for category in CATEGORIES}

    def allows(self, category: str) -> bool:
        limit = self.limits.get(category, 0)
        window = self._window.setdefault(category, deque())
        now = time.monotonic()
        while window and now - window[0] >= HOUR:
            window.popleft()
        return bool(limit) and len(window) < limit

    def record(self, category: str) -> None:
        self._window.setdefault(category, deque()).append(time.monotonic())


@dataclass
class _PendingError:
    count: int
    first: float
    priority: str
    message: str
    sources: dict[str, None] = field(default_factory=dict)  # ordered set


class Outbox:
    """Queues, limits and aggregates notifications; a transport drains it with :meth:`drain`."""

    def __init__(self, max_queue: int, aggregation_window: float, limits: HourlyLimits | None = None) -> None:
        self.max_queue = max_queue
        self.aggregation_window = aggregation_window
        self.limits = limits  # None: no hourly limit (the fleet notifier applies them)
        self.sent: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.dropped: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.aggregated = 0
        #: drops by reason: hourly_limit, queue_full, evicted (by a more important message), send_failed
        self.drop_reasons: collections.Counter[str] = collections.Counter()
        self._heap: list[Notification] = []
        self._seq = itertools.count()
        self._errors: dict[tuple[str, str], _PendingError] = {}
        self._wake = asyncio.Event()

    def queue_size(self) -> int:
        return len(self._heap)

    def pending_errors(self) -> int:
        return len(self._errors)

    def notify(self, category: str, text: str, priority: str = "normal", *,
               extra_limits: Iterable[HourlyLimits] = (), error: tuple[str, str, int] | None = None,
               ack: asyncio.Future[bool] | None = None) -> bool:
        """Queue a message; False when it was dropped (over an hourly limit, queue full). ``ack`` is resolved when
        the message was sent (True) or given up (False)."""
        if category not in self.sent:
            category = "system"
        level = PRIORITIES.get(priority, 2)
        if level > 0:
            limits = [lim for lim in (self.limits, *extra_limits) if lim is not None]
            if not all(lim.allows(category) for lim in limits):
                self._drop(category, "hourly_limit")
                if ack is not None and not ack.done():
                    ack.set_result(False)
                return False
            for lim in limits:
                lim.record(category)
        item = Notification(level, next(self._seq), category, text[:MAX_TEXT], error=error, ack=ack)
        if len(self._heap) >= self.max_queue:
            worst = max(self._heap)
            if worst.priority <= level:  # nothing of lower importance to evict
                self._drop(category, "queue_full")
                item.settle(False)
                return False
            self._heap.remove(worst)
            heapq.heapify(self._heap)
            self._drop(worst.category, "evicted")
            worst.settle(False)
        heapq.heappush(self._heap, item)
        self._wake.set()
        return True

    def _drop(self, category: str, reason: str) -> None:
        self.dropped[category] += 1
        self.drop_reasons[reason] += 1

    def error(self, kind: str, message: str, priority: str = "high", *, source: str = "", count: int = 1) -> None:
        """An error to report; identical ones within the aggregation window become one message."""
        if self.aggregation_window <= 0:
            self.notify("error", error_text(kind, message, count, 0.0, [source] if source else []), priority,
                        error=(kind, message, count))
            return
        key = (kind, message[:300])
        entry = self._errors.get(key)
        if entry is None:
            entry = self._errors[key] = _PendingError(count, time.monotonic(), priority, message)
        else:
            entry.count += count
            self.aggregated += count
            if PRIORITIES.get(priority, 2) < PRIORITIES.get(entry.priority, 2):
                entry.priority = priority
        if source:
            entry.sources[source] = None

    def flush_errors(self, force: bool = False,
                     extra_limits: Callable[[list[str]], Iterable[HourlyLimits]] | None = None) -> None:
        """Queue the aggregated errors whose window has passed (all of them with ``force``); ``extra_limits`` gives
        the limits that apply besides the outbox's own, from the error's sources."""
        now = time.monotonic()
        for key, entry in list(self._errors.items()):
            if force or now - entry.first >= self.aggregation_window:
                del self._errors[key]
                sources = list(entry.sources)
                text = error_text(key[0], entry.message, entry.count, self.aggregation_window, sources)
                self.notify("error", text, entry.priority, error=(key[0], entry.message, entry.count),
                            extra_limits=extra_limits(sources) if extra_limits is not None else ())

    async def next(self) -> Notification:
        """The most important queued message (waits for one)."""
        while not self._heap:
            self._wake.clear()
            await self._wake.wait()
        return heapq.heappop(self._heap)

    async def drain(self, send: Callable[[Notification], Awaitable[bool]],
                    gate: Callable[[], bool] | None = None) -> None:
        """Forever: hand the queued messages to ``send`` one at a time, counting sent and dropped ones; while
        ``gate`` says no (a circuit breaker), wait."""
        while True:
            while not self._heap:
                self._wake.clear()
                await self._wake.wait()
            if gate is not None and not gate():
                await asyncio.sleep(1.0)
                continue
            item = heapq.heappop(self._heap)
            delivered = await send(item)
            if delivered:
                self.sent[item.category] += 1
            else:
                self._drop(item.category, "send_failed")
            item.settle(delivered)

    async def aggregate(self, extra_limits: Callable[[list[str]], Iterable[HourlyLimits]] | None = None) -> None:
        """Forever: flush the aggregated errors as their windows pass."""
        tick = min(1.0, max(0.05, self.aggregation_window / 4)) if self.aggregation_window > 0 else 1.0
        while True:
            await asyncio.sleep(tick)
            if self._errors:
                self.flush_errors(extra_limits=extra_limits)


def error_text(kind: str, message: str, count: int, window: float, sources: list[str]) -> str:
    """``Error (kind) (x5 in 60 s) from a, b: message``; a single local error is ``Error (kind): message``."""
    suffix = f" (x{count} in {window:.0f} s)" if count > 1 else ""
    origin = f" from {', '.join(sources)}" if sources else ""
    return f"Error ({kind}){suffix}{origin}: {message}"


async def stop_tasks(tasks: list[asyncio.Task[None]], busy: Callable[[], bool], drain_seconds: float) -> None:
    """Give ``busy`` up to ``drain_seconds`` to turn false, then cancel and await the tasks."""
    deadline = time.monotonic() + drain_seconds
    while busy() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping: each task's end is only awaited
            pass
    tasks.clear()


def performance_alert_text(alert_type: str, metric_name: str, current_value: float, threshold: float,
                           recommendation: str) -> str:
    """The seed's custom performance alert."""
    return (f"Performance alert ({alert_type})\n{metric_name}: {current_value:.4g} (threshold {threshold:.4g})"
            f"\nRecommendation: {recommendation}")


class OutboxFront:
    """What the worker's services call to notify, for every notifier that queues into an :class:`Outbox`
    (``self.outbox``): the Telegram ``Notifier`` of a single worker and the ``FleetForwarder`` of a fleet worker.
    Cheap and synchronous; nothing is queued while ``enabled`` is false."""

    outbox: Outbox
    enabled: bool

    @property
    def sent(self) -> dict[str, int]:
        return self.outbox.sent

    @property
    def dropped(self) -> dict[str, int]:
        return self.outbox.dropped

    def queue_size(self) -> int:
        return self.outbox.queue_size()

    def notify(self, category: str, text: str, priority: str = "normal") -> bool:
        """Queue a message; False when it was dropped (disabled, over the hourly limit, queue full)."""
        return self.enabled and self.outbox.notify(category, text, priority)

    def error(self, kind: str, message: str, priority: str = "high") -> None:
        """An error to report; identical ones within the aggregation window become one message."""
        if self.enabled:
            self.outbox.error(kind, message, priority)

    def send_performance_alert(self, alert_type: str, metric_name: str, current_value: float, threshold: float,
                               recommendation: str) -> bool:
        """The seed's custom performance alert."""
        return self.notify("system", performance_alert_text(alert_type, metric_name, current_value, threshold,
                                                            recommendation), "high")
