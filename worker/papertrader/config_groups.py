"""The worker's settings by concern: each component receives its own group, not the whole :class:`Settings`.

The groups are read-only views built from one :class:`~papertrader.config.Settings` (``settings.health``,
``settings.notify``...): the settings themselves, their environment names, ``.env`` and ``--config`` files and
``papertrader config show`` are unchanged. A field of a group has the name of the setting it comes from.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import SecretStr

G = TypeVar("G")


def settings_group(cls: type[G], settings: Any) -> G:
    """The ``cls`` group of ``settings``: every field of the dataclass read from the setting of that name."""
    return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The four circuit breakers (ENABLE_CIRCUIT_BREAKERS, *_FAILURE_THRESHOLD, *_RECOVERY_TIMEOUT)."""

    enable_circuit_breakers: bool
    breaker_success_threshold: int
    data_collection_failure_threshold: int
    data_collection_recovery_timeout: float
    prediction_failure_threshold: int
    prediction_recovery_timeout: float
    trading_failure_threshold: int
    trading_recovery_timeout: float
    notification_failure_threshold: int
    notification_recovery_timeout: float


@dataclasses.dataclass(frozen=True, slots=True)
class EngineSettings:
    """What the pipeline itself needs: the market it trades, the quality gate, warm-up and its files."""

    symbol: str
    source: Literal["synthetic", "replay", "bitvavo"]
    interval_ms: int  # the candle interval (CANDLE_INTERVAL)
    state_dir: Path
    warmup_candles: int | None
    portfolio_snapshot_every: int
    enable_data_quality_checks: bool
    quality_window: int
    quality_outlier_z: float
    quality_reject_z: float
    quality_max_gap_days: float


@dataclasses.dataclass(frozen=True, slots=True)
class RiskSettings:
    """Position sizing, exits and portfolio guards."""

    initial_capital: Decimal
    max_positions: int
    max_positions_per_symbol: int
    base_position_size: float
    min_position_size: float
    max_position_size: float
    take_profit_pct: float
    stop_loss_pct: float
    trailing_stop_pct: float
    min_profit_for_trailing: float
    emergency_stop_pct: float
    min_hold_time_minutes: float
    max_hold_hours: float
    position_cooldown_minutes: float
    max_daily_trades_per_symbol: int
    max_daily_loss_pct: float
    max_drawdown_pct: float


@dataclasses.dataclass(frozen=True, slots=True)
class ExchangeSettings:
    """Fees, slippage and market precision of the paper broker, and the live exchange's endpoints and limits."""

    fee_taker: Decimal
    fee_maker: Decimal
    fee_side: Literal["taker", "maker"]
    slippage_pct: Decimal
    tick_size: Decimal | None
    quantity_decimals: int
    quote_decimals: int
    min_order_quote: Decimal
    min_order_base: Decimal
    bitvavo_rest_url: str
    bitvavo_ws_url: str
    api_timeout_seconds: float
    ws_stale_seconds: float
    reconnect_initial_backoff_seconds: float
    reconnect_max_backoff_seconds: float
    clock_sync_interval_seconds: float
    candle_close_grace_seconds: float
    rate_limit_margin: int
    rate_limit_default_wait_seconds: float
    exchange_market_rules: bool

    @property
    def fee_rate(self) -> Decimal:
        """The fee per fill: taker or maker (FEE_SIDE)."""
        return self.fee_taker if self.fee_side == "taker" else self.fee_maker


@dataclasses.dataclass(frozen=True, slots=True)
class SmaSettings:
    """The sma-cross strategy's two windows."""

    sma_fast: int
    sma_slow: int


@dataclasses.dataclass(frozen=True, slots=True)
class MlSettings:
    """The ml strategy (docs/ml.md)."""

    model: Path | None
    model_version: str | None
    model_reload_check_candles: int
    min_confidence_threshold: float
    min_signal_strength: float
    torch_threads: int


@dataclasses.dataclass(frozen=True, slots=True)
class HealthSettings:
    """Health scoring, liveness and readiness (docs/worker-http.md)."""

    interval_ms: int  # the candle interval (CANDLE_INTERVAL)
    state_dir: Path  # whose disk is watched
    health_check_interval: float
    health_probe_interval: float
    pipeline_stuck_seconds: float
    event_loop_stall_seconds: float
    data_stale_seconds: float
    model_max_age_seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP server on HTTP_PORT: probes, metrics, report, control."""

    http_host: str
    http_port: int
    state_dir: Path  # what ``/report`` reports on
    control_token: SecretStr | None
    control_token_file: Path | None


@dataclasses.dataclass(frozen=True, slots=True)
class FeedSettings:
    """The WebSocket feed on WS_PORT and its fan-out process."""

    symbol: str
    http_host: str
    ws_port: int
    ws_client_queue_size: int
    ws_flush_interval: float
    ws_fanout_cpu_priority: Literal["idle", "low", "normal"]
    feature_cache_size: int
    cache_ttl_seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class NotifySettings:
    """Notifications: the worker's own Telegram bot or the fleet notifier (NOTIFIER_URL)."""

    symbol: str
    telegram_api_url: str
    telegram_bot_token: SecretStr | None
    telegram_bot_token_file: Path | None
    telegram_chat_id: str | None
    telegram_poll_commands: bool
    telegram_max_retries: int
    error_notifications_per_hour: int
    trade_notifications_per_hour: int
    status_notifications_per_hour: int
    system_notifications_per_hour: int
    notification_queue_size: int
    error_aggregation_seconds: float
    notifier_url: str | None
    notifier_trader: str
    notifier_chat_id: str | None
    notifier_limits: str | None
    notifier_retry_seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class PerformanceSettings:
    """The periodic performance report and its alert rules."""

    symbol: str
    enable_performance_monitoring: bool
    performance_report_interval: float
    performance_alert_rules: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry tracing (the OTEL_* variables are read by the SDK)."""

    trace_replay_sample_ratio: float
