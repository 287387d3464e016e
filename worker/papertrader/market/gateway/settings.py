"""The gateway's settings: each has an environment variable (upper-case name) and a flag."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from papertrader.errors import PapertraderError


class GatewayConfigError(PapertraderError, ValueError):
    """A bad setting (one line naming it)."""


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    bitvavo_rest_url: str = "https://api.bitvavo.com/v2"
    bitvavo_ws_url: str = "wss://ws.bitvavo.com/v2/"
    gateway_host: str = "0.0.0.0"
    gateway_port: int = 8080
    gateway_rest_budget: int = 600  # upstream weight per window, shared by all clients (Bitvavo: 1000/min/IP)
    gateway_budget_window_seconds: float = 60.0  # exchange seconds
    gateway_cache_candles: int = 2880  # closed candles kept per (market, interval)
    gateway_clock_sync_seconds: float = 5.0
    gateway_unsubscribe_linger_seconds: float = 60.0
    gateway_markets_ttl_seconds: float = 300.0
    gateway_client_queue_frames: int = 10_000  # frames queued for a client that is not reading, then it is closed
    gateway_close_wait_seconds: float = 2.0  # wait for the stream to close a bar a client asks for, then upstream
    api_timeout_seconds: float = 10.0
    ws_stale_seconds: float = 90.0
    reconnect_max_backoff_seconds: float = 30.0
    log_level: str = "INFO"

    # short names used by the gateway's modules
    host = property(lambda self: self.gateway_host)
    port = property(lambda self: self.gateway_port)
    rest_budget = property(lambda self: self.gateway_rest_budget)
    budget_window_seconds = property(lambda self: self.gateway_budget_window_seconds)
    cache_candles = property(lambda self: self.gateway_cache_candles)
    clock_sync_seconds = property(lambda self: self.gateway_clock_sync_seconds)
    unsubscribe_linger_seconds = property(lambda self: self.gateway_unsubscribe_linger_seconds)
    markets_ttl_seconds = property(lambda self: self.gateway_markets_ttl_seconds)
    client_queue_frames = property(lambda self: self.gateway_client_queue_frames)
    close_wait_seconds = property(lambda self: self.gateway_close_wait_seconds)

    @classmethod
    def load(cls, values: Mapping[str, str | None], environ: Mapping[str, str] = os.environ) -> GatewaySettings:
        """Flags (``values``, by field name; None = not given) over the environment over the defaults."""
        out: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = values.get(field.name)
            if raw is None:
                raw = environ.get(field.name.upper())
            if raw in (None, ""):
                continue
            kind: type[Any] = type(field.default)  # every field has a plain default (str, int, float)
            try:
                value = kind(raw)
            except ValueError:
                raise GatewayConfigError(f"{field.name.upper()}={raw!r}: expected a {kind.__name__}") from None
            if kind in (int, float) and (value < 0 or (value == 0 and field.name != "gateway_port")):
                raise GatewayConfigError(f"{field.name.upper()}={raw!r}: must be positive")
            out[field.name] = value
        return cls(**out)  # type: ignore[arg-type]  # each value has its field's type
