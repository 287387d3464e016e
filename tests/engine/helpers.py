"""Run a worker in-process and read what it wrote."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

from papertrader.cli import build_worker
from papertrader.config import load_settings

#: Every exit rule, cooldown, cap and guard switched off: what is left is the strategy plus the fill model.
PLAIN = {
    "TAKE_PROFIT_PCT": 0, "STOP_LOSS_PCT": 0, "TRAILING_STOP_PCT": 0, "EMERGENCY_STOP_PCT": 0.99,
    "MIN_HOLD_TIME_MINUTES": 0, "MAX_HOLD_HOURS": 0, "POSITION_COOLDOWN_MINUTES": 0,
    "MAX_DAILY_TRADES_PER_SYMBOL": 0, "MAX_DAILY_LOSS_PCT": 0, "MAX_DRAWDOWN_PCT": 0,
}


def run_replay(state_dir: Path, replay_file: Path, monkeypatch: Any = None, **settings: Any) -> dict[str, Any]:
    """Replay ``replay_file`` into ``state_dir``; settings are given by their upper-case names. Returns the summary."""
    flags = {"source": "replay", "replay_file": replay_file, "state_dir": state_dir, "http_host": "127.0.0.1",
             "http_port": 0, "ws_port": 0}
    config = state_dir.parent / f"{state_dir.name}.yaml"
    config.write_text("".join(f"{key}: {value}\n" for key, value in settings.items()), encoding="utf-8")
    runner, _ = build_worker(load_settings(flags, config_file=config), console_logs=False)
    return asyncio.run(runner.run())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
