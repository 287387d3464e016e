"""A small LRU cache with a time-to-live and hit/miss counters (FEATURE_CACHE_SIZE, CACHE_TTL_SECONDS)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    """Least-recently-used cache; entries older than ``ttl_seconds`` count as missing. Size 0 disables it."""

    def __init__(self, max_size: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_size = max_size
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value for ``key``, computing and storing it on a miss."""
        now = self._clock()
        item = self._items.get(key)
        if item is not None and now - item[0] <= self.ttl_seconds:
            self._items.move_to_end(key)
            self.hits += 1
            return item[1]
        self.misses += 1
        value = compute()
        if self.max_size > 0:
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)
        return value

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __len__(self) -> int:
        return len(self._items)
