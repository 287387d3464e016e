"""One typed settings object for the worker.

Precedence, highest first: command-line flags > environment variables > ``--env-file`` > ``--config`` YAML >
defaults. Setting names are the seed's upper-case environment names (``TAKE_PROFIT_PCT``, ``MAX_POSITIONS``...);
the YAML file uses the same names (any case). An invalid value raises :class:`ConfigError` whose message is one
line naming the setting and what is allowed.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from papertrader.config_groups import (
    BreakerSettings,
    EngineSettings,
    ExchangeSettings,
    FeedSettings,
    HealthSettings,
    HttpSettings,
    MlSettings,
    NotifySettings,
    PerformanceSettings,
    RiskSettings,
    SmaSettings,
    TracingSettings,
    settings_group,
)
from papertrader.errors import PapertraderError
from papertrader.market.candle import INTERVAL_MS

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]+-[A-Z0-9]+$")


class ConfigError(PapertraderError, ValueError):
    """A configuration problem, phrased as one line for the user."""

    exit_code = 2


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the ``--config`` YAML file; keys are setting names in any case. Unknown keys are an error."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is None:
            return
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"--config {path}: cannot read file ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {path}: expected a mapping of SETTING: value at the top level")
        known = set(settings_cls.model_fields)
        for key, value in loaded.items():
            name = str(key).lower()
            if name not in known:
                raise ConfigError(f"--config {path}: unknown setting {str(key).upper()}")
            self._data[name] = value

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """Effective worker configuration. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", validate_default=True)
    #: the ``--config`` YAML file; set on a per-call subclass by :func:`load_settings`
    config_file: ClassVar[Path | None] = None

    # --- what to run -------------------------------------------------------------------------------------
    symbol: str = Field("BTC-EUR", description="market traded by this worker, BASE-QUOTE")
    # NoDecode: SYMBOLS=BTC-EUR,ETH-EUR from the environment is split by the validator, not parsed as JSON
    symbols: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                                   description="seed name; a worker takes exactly one")
    source: Literal["synthetic", "replay", "bitvavo"] = "synthetic"
    replay_file: Path | None = None
    speed: str = Field("max", description="max | realtime | <factor> (e.g. 60 = 60x real time)")
    max_candles: int | None = Field(None, ge=1)
    state_dir: Path = Path("./paper_trader")
    reset_state: bool = Field(False, description="when the state directory holds a run made with other "
                              "result-deciding settings or input, archive it to STATE_DIR/archive/<UTC time>/ and "
                              "start afresh instead of refusing to start")
    strategy: str = "sma-cross"
    model: Path | None = Field(None, description="model directory for the ml strategy")
    seed: int = 42
    record: Path | None = None
    candle_interval: str = "1m"
    warmup_candles: int | None = Field(None, ge=0, description="default: what strategy and features need")
    synthetic_start_ms: int = Field(1_704_067_200_000, description="open time of the first synthetic candle")

    # --- strategy parameters -----------------------------------------------------------------------------
    sma_fast: int = Field(10, ge=1)
    sma_slow: int = Field(30, ge=2)

    # --- ML strategy (docs/ml.md) ----------------------------------------------------------------------------
    min_confidence_threshold: float = Field(
        0.6, gt=0.5, lt=1, description="ml: buy when P(up) >= this, sell (close) when P(down) >= this")
    min_signal_strength: float = Field(
        0.0, ge=0, le=1, description="ml: minimum strength (confidence beyond the threshold, 0..1) to act on")
    model_version: str | None = Field(
        None, description="ml: pin this version subdirectory of MODEL (disables hot swap)")
    model_reload_check_candles: int = Field(
        1, ge=0, description="ml: check MODEL/current for a new version every N candles; 0 disables hot swap")
    torch_threads: int = Field(1, ge=1, le=64, description="ml: torch intra-op threads in the worker")

    # --- capital and position sizing ---------------------------------------------------------------------
    initial_capital: Decimal = Field(Decimal("10000"), gt=0)
    max_positions: int = Field(5, ge=1)
    max_positions_per_symbol: int = Field(1, ge=1)
    base_position_size: float = Field(0.08, gt=0, le=1)
    min_position_size: float = Field(0.02, gt=0, le=1)
    max_position_size: float = Field(0.15, gt=0, le=1)

    # --- exits -------------------------------------------------------------------------------------------
    take_profit_pct: float = Field(0.015, ge=0, le=10, description="0 disables")
    stop_loss_pct: float = Field(0.008, ge=0, lt=1, description="0 disables")
    trailing_stop_pct: float = Field(0.006, ge=0, lt=1, description="0 disables")
    min_profit_for_trailing: float = Field(0.005, ge=0)
    emergency_stop_pct: float = Field(0.05, gt=0, lt=1)
    min_hold_time_minutes: float = Field(5, ge=0)
    max_hold_hours: float = Field(24, ge=0, description="0 disables the time exit")
    position_cooldown_minutes: float = Field(15, ge=0)
    max_daily_trades_per_symbol: int = Field(10, ge=0, description="entries per UTC day; 0 = no limit")

    # --- portfolio guards --------------------------------------------------------------------------------
    max_daily_loss_pct: float = Field(0.05, ge=0, le=1, description="0 disables")
    max_drawdown_pct: float = Field(0.10, ge=0, le=1, description="0 disables")

    # --- fees, slippage and market precision -------------------------------------------------------------
    fee_taker: Decimal = Field(Decimal("0.0025"), ge=0, lt=1)
    fee_maker: Decimal = Field(Decimal("0.0015"), ge=0, lt=1)
    fee_side: Literal["taker", "maker"] = "taker"
    slippage_pct: Decimal = Field(Decimal("0.0005"), ge=0, lt=1)
    tick_size: Decimal | None = Field(None, gt=0, description="price tick; default: 6 significant digits")
    quantity_decimals: int = Field(8, ge=0, le=12)
    quote_decimals: int = Field(2, ge=0, le=8)
    min_order_quote: Decimal = Field(Decimal("5"), ge=0)
    min_order_base: Decimal = Field(Decimal("0"), ge=0)

    # --- data quality --------------------------------------------------------------------------------------
    quality_window: int = Field(100, ge=10)
    quality_outlier_z: float = Field(8.0, gt=0, description="robust z above which a candle is suspect")
    quality_reject_z: float = Field(200.0, gt=0, description="robust z above which a candle is rejected")
    quality_max_gap_days: float = Field(30, gt=0, description="a candle this many days after the last accepted one "
                                        "is rejected as a timestamp typo unless the next candle confirms the jump")
    enable_data_quality_checks: bool = True

    # --- features and caching ----------------------------------------------------------------------------
    feature_cache_size: int = Field(500, ge=0)
    cache_ttl_seconds: float = Field(600, ge=0)

    # --- persistence ---------------------------------------------------------------------------------------
    commit_every_candles: int = Field(2000, ge=1, description="batch size for replay/synthetic at max speed")
    commit_interval_seconds: float = Field(1.0, gt=0)
    storage_retry_seconds: float = Field(1.0, gt=0, description="first retry delay after a failed commit")
    portfolio_snapshot_every: int = Field(60, ge=1, description="candles between portfolio.csv rows")
    log_max_bytes: int = Field(10_000_000, ge=10_000)
    log_backup_count: int = Field(5, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    progress_interval_seconds: float = Field(5.0, gt=0)

    # --- circuit breakers ----------------------------------------------------------------------------------
    enable_circuit_breakers: bool = True
    data_collection_failure_threshold: int = Field(5, ge=1)
    data_collection_recovery_timeout: float = Field(60, gt=0)
    prediction_failure_threshold: int = Field(3, ge=1)
    prediction_recovery_timeout: float = Field(180, gt=0)
    trading_failure_threshold: int = Field(3, ge=1)
    trading_recovery_timeout: float = Field(300, gt=0)
    notification_failure_threshold: int = Field(5, ge=1)
    notification_recovery_timeout: float = Field(120, gt=0)
    breaker_success_threshold: int = Field(2, ge=1)

    # --- network surface -----------------------------------------------------------------------------------
    http_host: str = "0.0.0.0"
    http_port: int = Field(8766, ge=0, le=65535)
    ws_port: int = Field(8765, ge=0, le=65535)
    bitvavo_rest_url: str = "https://api.bitvavo.com/v2"
    bitvavo_ws_url: str = "wss://ws.bitvavo.com/v2/"
    telegram_api_url: str = "https://api.telegram.org"
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None

    # --- live market data (Bitvavo) -----------------------------------------------------------------------
    api_timeout_seconds: float = Field(10.0, gt=0, description="timeout of every REST request and WS handshake")
    ws_stale_seconds: float = Field(90.0, gt=0, description="no WebSocket message for this long -> reconnect")
    reconnect_initial_backoff_seconds: float = Field(0.1, gt=0)
    reconnect_max_backoff_seconds: float = Field(30.0, gt=0)
    clock_sync_interval_seconds: float = Field(60.0, gt=0, description="how often /time is re-synchronised")
    candle_close_grace_seconds: float = Field(2.0, ge=0, description="exchange seconds after a candle's end "
                                              "before REST may confirm it closed when no newer candle arrived")
    rate_limit_margin: int = Field(50, ge=0, description="weight points kept in reserve before resetat")
    rate_limit_default_wait_seconds: float = Field(60.0, gt=0, description="wait after a 429 without resetat")
    exchange_market_rules: bool = Field(
        False,
        description="round fills to /markets tick size and minimums (off: same fills as a replay of the candles)")

    # --- observability -------------------------------------------------------------------------------------
    health_check_interval: float = Field(300, gt=0, description="seconds between full health reports (log, "
                                         "WebSocket, Telegram on level change); probes compute health on demand")
    health_probe_interval: float = Field(1.0, gt=0, description="seconds between cheap liveness ticks")
    pipeline_stuck_seconds: float = Field(0, ge=0, description="working this long on what the pipeline has "
                                          "without consuming an item (waiting for market data does not count) "
                                          "fails /healthz; 0 = auto: 60 s, whatever the candle interval")
    event_loop_stall_seconds: float = Field(10, gt=0, description="event-loop lag that fails /healthz")
    data_stale_seconds: float = Field(0, ge=0, description="live data older than this fails /readyz; "
                                      "0 = auto: 2 x candle interval + 30 s")
    model_max_age_seconds: float = Field(7 * 86400, gt=0, description="older models lower the health score")
    error_notifications_per_hour: int = Field(30, ge=0)
    trade_notifications_per_hour: int = Field(100, ge=0)
    status_notifications_per_hour: int = Field(10, ge=0)
    system_notifications_per_hour: int = Field(30, ge=0)
    notification_queue_size: int = Field(200, ge=1)
    error_aggregation_seconds: float = Field(60, ge=0, description="identical errors within this window "
                                             "become one message with a count")
    telegram_bot_token_file: Path | None = Field(None, description="file holding the token (mounted Secret)")
    control_token: SecretStr | None = Field(None, description="bearer token that POST /control/* must present; "
                                            "unset (and no CONTROL_TOKEN_FILE): control is open")
    control_token_file: Path | None = Field(None, description="file holding the control token (the operator "
                                            "mounts the trader's <trader>-control Secret); wins over CONTROL_TOKEN")
    telegram_poll_commands: bool = True
    notifier_url: str | None = Field(None, description="http://host:port of the fleet notifier (`papertrader "
                                     "notifier`); set: notifications go there instead of to Telegram (the operator "
                                     "sets it in a cluster)")
    notifier_trader: str = Field("", description="the PaperTrader this worker belongs to, named in its notifications")
    notifier_chat_id: str | None = Field(None, description="the trader's own Telegram chat (default: the notifier's)")
    notifier_limits: str | None = Field(None, description='per-trader hourly limits as JSON, e.g. {"error": 10} '
                                        "(the PaperTrader's spec.telegram.notificationsPerHour)")
    notifier_retry_seconds: float = Field(300, ge=0, description="how long a critical notification is retried "
                                          "while the notifier is unreachable (others: 3 attempts)")
    telegram_max_retries: int = Field(5, ge=0)
    ws_client_queue_size: int = Field(256, ge=1, description="messages queued per WebSocket client before it "
                                      "counts as slow and is disconnected")
    ws_flush_interval: float = Field(0.05, gt=0, description="seconds between WebSocket fan-out flushes")
    ws_fanout_cpu_priority: Literal["idle", "low", "normal"] = Field(
        "idle", description="CPU priority of the WebSocket fan-out process: idle (Linux SCHED_IDLE: it runs only on "
        "CPU time the engine does not want), low (nice 10) or normal")
    enable_performance_monitoring: bool = True
    performance_report_interval: float = Field(300, gt=0)
    performance_alert_rules: str | None = Field(None, description="JSON/YAML list of {metric, op, threshold, "
                                                "recommendation}; default: the seed's targets")
    trace_replay_sample_ratio: float = Field(0.001, ge=0, le=1, description="share of candles traced in "
                                             "max-speed replays when OTEL_TRACES_SAMPLER is unset")

    @field_validator("symbol", mode="before")
    @classmethod
    def _upper_symbol(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("symbol")
    @classmethod
    def _check_symbol(cls, value: str) -> str:
        if not SYMBOL_PATTERN.match(value):
            raise ValueError("expected BASE-QUOTE such as BTC-EUR")
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip().upper() for part in value.split(",") if part.strip()]
        return value

    @field_validator("speed")
    @classmethod
    def _check_speed(cls, value: str) -> str:
        value = str(value).strip().lower()
        if value in ("max", "realtime"):
            return value
        try:
            factor = float(value)
        except ValueError:
            raise ValueError("expected max, realtime or a positive number") from None
        if not factor > 0:
            raise ValueError("expected max, realtime or a positive number")
        return value

    @field_validator("candle_interval")
    @classmethod
    def _check_interval(cls, value: str) -> str:
        if value not in INTERVAL_MS:
            raise ValueError(f"expected one of {', '.join(INTERVAL_MS)}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.symbols:
            if len(self.symbols) > 1 and self.symbol not in self.symbols:
                raise ValueError("SYMBOLS: a worker trades one symbol; run one worker per symbol (the operator does)")
            if len(self.symbols) == 1 and "symbol" not in self.model_fields_set:
                object.__setattr__(self, "symbol", self.symbols[0])
        if self.sma_fast >= self.sma_slow:
            raise ValueError("SMA_FAST: must be smaller than SMA_SLOW")
        if not self.min_position_size <= self.base_position_size <= self.max_position_size:
            raise ValueError("BASE_POSITION_SIZE: must lie between MIN_POSITION_SIZE and MAX_POSITION_SIZE")
        if self.quality_reject_z < self.quality_outlier_z:
            raise ValueError("QUALITY_REJECT_Z: must be >= QUALITY_OUTLIER_Z")
        if self.source == "replay" and self.replay_file is None:
            raise ValueError("REPLAY_FILE: --source replay needs --replay-file FILE.csv")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, _YamlSource(settings_cls, cls.config_file))

    # --- derived values ------------------------------------------------------------------------------------
    @property
    def interval_ms(self) -> int:
        return INTERVAL_MS[self.candle_interval]

    @property
    def fee_rate(self) -> Decimal:
        return self.exchange.fee_rate

    @property
    def speed_factor(self) -> float | None:
        """None for ``max``; otherwise how many times faster than real time."""
        if self.speed == "max":
            return None
        return 1.0 if self.speed == "realtime" else float(self.speed)

    # --- groups (papertrader.config_groups): what each component receives ------------------------------------
    @property
    def breakers(self) -> BreakerSettings:
        return settings_group(BreakerSettings, self)

    @property
    def engine(self) -> EngineSettings:
        return settings_group(EngineSettings, self)

    @property
    def risk(self) -> RiskSettings:
        return settings_group(RiskSettings, self)

    @property
    def exchange(self) -> ExchangeSettings:
        return settings_group(ExchangeSettings, self)

    @property
    def sma(self) -> SmaSettings:
        return settings_group(SmaSettings, self)

    @property
    def ml(self) -> MlSettings:
        return settings_group(MlSettings, self)

    @property
    def health(self) -> HealthSettings:
        return settings_group(HealthSettings, self)

    @property
    def http(self) -> HttpSettings:
        return settings_group(HttpSettings, self)

    @property
    def feed(self) -> FeedSettings:
        return settings_group(FeedSettings, self)

    @property
    def notify(self) -> NotifySettings:
        return settings_group(NotifySettings, self)

    @property
    def performance(self) -> PerformanceSettings:
        return settings_group(PerformanceSettings, self)

    @property
    def tracing(self) -> TracingSettings:
        return settings_group(TracingSettings, self)

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain values, secrets masked, for ``papertrader config show``."""
        out: dict[str, Any] = {}
        for name in self.model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif isinstance(value, (Path, Decimal)):
                value = str(value)
            out[name.upper()] = value
        return out


def load_settings(
    flags: dict[str, Any] | None = None,
    config_file: Path | str | None = None,
    env_file: Path | str | None = None,
) -> Settings:
    """Build settings from flags, environment, ``.env`` file and YAML file; raise :class:`ConfigError`."""
    flags = {key: value for key, value in (flags or {}).items() if value is not None}
    if env_file is not None and not Path(env_file).is_file():
        raise ConfigError(f"--env-file {env_file}: file not found")
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError(f"--config {config_file}: file not found")
    cls: type[Settings] = type("Settings", (Settings,), {"config_file": Path(config_file) if config_file else None})
    try:
        return cls(_env_file=env_file, **flags)  # type: ignore[call-arg]  # _env_file is pydantic-settings' init-only option, unknown to the model type
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    except SettingsError as exc:  # a value pydantic-settings cannot even decode (e.g. malformed JSON for a list)
        raise ConfigError(f"invalid configuration: {str(exc).splitlines()[0][:200]}") from None


class _ValuesOnly(Settings):
    """Settings from keyword arguments alone (no environment, ``.env`` or ``--config``)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def check_settings(values: dict[str, Any]) -> None:
    """Check a mapping of worker settings (names in any case) as a ``--config`` file would give them, ignoring this
    process's environment; raise :class:`ConfigError` (one line) for an unknown name or a value the worker refuses.
    The operator uses it so that it never accepts a spec whose workers would refuse their configuration."""
    known = set(Settings.model_fields)
    for key in values:
        if str(key).lower() not in known:
            raise ConfigError(f"unknown setting {str(key).upper()}")
    try:
        _ValuesOnly(**{str(key).lower(): value for key, value in values.items()})
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    """Turn the first pydantic error into ``invalid setting NAME=value: what is allowed``."""
    error = exc.errors()[0]
    location = [str(part) for part in error.get("loc", ()) if not str(part).isdigit()]
    message = error.get("msg", "invalid value").removeprefix("Value error, ")
    if not location:  # model-level check: the message starts with the setting's name
        return f"invalid configuration: {message}"
    name = location[0].upper()
    value = error.get("input")
    shown = "" if isinstance(value, dict) or value is None else f"={value!s:.60}"
    if error.get("type") == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        message = f"allowed values are {allowed}"
    return f"invalid setting {name}{shown}: {message}"
