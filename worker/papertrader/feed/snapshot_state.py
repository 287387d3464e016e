"""The fan-out process's copy of what a new WebSocket client's ``snapshot`` holds, kept current from the stream.

The worker sends one full snapshot (``ipc.SNAPSHOT``) when the fan-out asks; after that every message the fan-out
broadcasts (candle, trade, health) and the per-flush ``ipc.STATE`` frame (portfolio valued at the last candle,
features, summary) update this copy, so clients that connect later are served here without asking the engine's
process for anything. The copy is only trusted while the worker keeps sending, i.e. while the fan-out has clients:
``forget()`` when the last one leaves. Its health report is only trusted for HEALTH_MAX_AGE_SECONDS: a client
arriving later (a quiet or stalled market, when health matters most) gets a full snapshot from the worker again. The
serialised snapshot is built once per state version and shared by the clients that connect before the next change
(the seed's feature cache: FEATURE_CACHE_SIZE = 0 builds one per client, CACHE_TTL_SECONDS bounds the age of a
shared one); ``hits`` and ``misses`` count that.
"""

from __future__ import annotations

import json
import time
from typing import Any

RECENT_TRADES = 20
HEALTH_MAX_AGE_SECONDS = 5.0  # the worker publishes health only every HEALTH_CHECK_INTERVAL or on level changes
HEALTH_CHANGE_KEYS = ("change", "previous_level")  # in health messages, not in GET /health


class SnapshotState:
    """Snapshot data (``None`` until the worker sent a full one) and its shared serialised form."""

    def __init__(self, symbol: str, ttl_seconds: float, share: bool) -> None:
        self.symbol = symbol
        self.ttl_seconds = ttl_seconds
        self.share = share
        self.data: dict[str, Any] | None = None
        self.version = 0
        self.hits = 0
        self.misses = 0
        self._text: bytes | None = None
        self._text_version = -1
        self._text_at = 0.0
        self._health_at = 0.0

    @property
    def fresh(self) -> bool:
        """Synced, with a health report recent enough to hand to a new client."""
        return self.data is not None and time.monotonic() - self._health_at <= HEALTH_MAX_AGE_SECONDS

    def load(self, payload: bytes) -> None:
        """A full snapshot's ``data`` object from the worker."""
        self.data = json.loads(payload)
        self.version += 1
        self._health_at = time.monotonic()

    def forget(self) -> None:
        """The worker may stop sending (no clients left): the next client needs a full snapshot again."""
        self.data = None
        self._text = None

    def apply_message(self, payload: bytes) -> None:
        """Fold a broadcast message into the snapshot data."""
        if self.data is None:
            return
        message = json.loads(payload)
        kind, data = message.get("type"), message.get("data")
        if kind == "candle":
            if data.get("status") == "rejected":
                return  # the engine's last candle is the last one it accepted
            self.data["candle"] = {key: value for key, value in data.items() if key not in ("status", "reasons")}
        elif kind == "trade":
            trades = self.data.setdefault("recent_trades", [])
            trades.append(data)
            del trades[:-RECENT_TRADES]
        elif kind == "health":
            self.data["health"] = {key: value for key, value in data.items() if key not in HEALTH_CHANGE_KEYS}
            self._health_at = time.monotonic()
        else:
            return
        self.version += 1

    def apply_state(self, payload: bytes) -> None:
        """Portfolio, features and summary, sent with every flush that had engine events."""
        if self.data is None:
            return
        self.data.update(json.loads(payload))
        self.version += 1

    def text(self) -> bytes:
        """The serialised ``snapshot`` message for one client (needs ``data``)."""
        now = time.monotonic()
        if (self.share and self._text is not None and self._text_version == self.version
                and now - self._text_at <= self.ttl_seconds):
            self.hits += 1
            return self._text
        self.misses += 1
        message = {"type": "snapshot", "symbol": self.symbol, "time": time.time(), "data": self.data}
        self._text = json.dumps(message, separators=(",", ":")).encode()
        self._text_version, self._text_at = self.version, now
        return self._text
