"""The results fingerprint: everything that decides a run's fills, marks and signals, kept with the ledger.

A state directory holds one run. Resuming it with another fee, slippage, interval, strategy parameter or input
file would splice two different runs into one history, so a restart whose fingerprint differs from the stored one
is refused with one line naming the settings that differ (``--reset-state`` archives the old run instead).
Settings that only change how the worker runs (ports, logging, batch sizes, ``MAX_CANDLES``, ``SPEED``) are not
part of it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from papertrader.config import Settings
from papertrader.market.candle_file import CandleFileError, require_regular_file

#: settings whose value changes fills, marks or signals (their upper-case names are what the user sets)
RESULT_SETTINGS = (
    "symbol", "source", "strategy", "candle_interval", "warmup_candles", "seed", "synthetic_start_ms",
    "sma_fast", "sma_slow", "model", "model_version", "min_confidence_threshold", "min_signal_strength",
    "initial_capital", "max_positions", "max_positions_per_symbol", "base_position_size", "min_position_size",
    "max_position_size", "take_profit_pct", "stop_loss_pct", "trailing_stop_pct", "min_profit_for_trailing",
    "emergency_stop_pct", "min_hold_time_minutes", "max_hold_hours", "position_cooldown_minutes",
    "max_daily_trades_per_symbol", "max_daily_loss_pct", "max_drawdown_pct", "fee_taker", "fee_maker", "fee_side",
    "slippage_pct", "tick_size", "quantity_decimals", "quote_decimals", "min_order_quote", "min_order_base",
    "exchange_market_rules", "quality_window", "quality_outlier_z", "quality_reject_z", "quality_max_gap_days",
    "enable_data_quality_checks", "portfolio_snapshot_every",
)
#: the fingerprint's entry for the input data (not a setting: the replay file's content or the live market)
INPUT_KEY = "INPUT"
_HASH_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The sha256 of a whole file, read in 1 MiB chunks (a 1M-candle file takes about 0.1 s)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def input_identity(settings: Settings) -> str:
    """What the candles come from: a replay file's full content hash, the synthetic generator's seed, or the live
    market (exchange, symbol, interval; not its URL, so a gateway in front of the exchange is the same input)."""
    if settings.source == "replay" and settings.replay_file is not None:
        path = Path(settings.replay_file)
        require_regular_file(path)
        try:
            return f"replay sha256:{file_sha256(path)}"
        except OSError as exc:
            raise CandleFileError(f"{path}: cannot read ({exc.strerror})") from None
    if settings.source == "synthetic":
        return f"synthetic seed={settings.seed} start={settings.synthetic_start_ms} interval={settings.candle_interval}"
    return f"{settings.source} {settings.symbol} {settings.candle_interval}"


def results_fingerprint(settings: Settings) -> dict[str, str]:
    """Setting name (upper case) -> value as text, plus the input's identity under :data:`INPUT_KEY`."""
    values: dict[str, str] = {name.upper(): _text(getattr(settings, name)) for name in RESULT_SETTINGS}
    values[INPUT_KEY] = input_identity(settings)
    return values


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def fingerprint_mismatch(stored: dict[str, str], current: dict[str, str]) -> str | None:
    """A description of what differs (``FEE_TAKER 0.0025 -> 0.001, ...``), or None when the run may resume.
    A name present on one side only (a setting added by a newer version) is not compared."""
    differences = []
    for name in sorted(set(stored) | set(current), key=lambda key: (key != INPUT_KEY, key)):
        if name in stored and name in current and stored[name] != current[name]:
            shown = (f"{stored[name]} -> {current[name]}" if name != INPUT_KEY
                     else f"{_short(stored[name])} -> {_short(current[name])}")
            differences.append(f"{'input data (REPLAY_FILE content or source)' if name == INPUT_KEY else name} "
                               f"{shown}")
    return ", ".join(differences) or None


def _short(identity: str) -> str:
    return identity[:len("replay sha256:") + 12] + "…" if identity.startswith("replay sha256:") else identity


def archive_state(state_dir: Path, keep: tuple[str, ...]) -> Path:
    """Move the state directory's contents (except ``keep`` and earlier archives) to ``archive/<UTC time>/`` and
    return that folder: ``--reset-state`` never deletes a run."""
    target = state_dir / "archive" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
    target.mkdir(parents=True)
    for entry in sorted(os.listdir(state_dir)):
        if entry in keep or entry == "archive":
            continue
        shutil.move(str(state_dir / entry), str(target / entry))
    return target
