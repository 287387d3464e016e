"""Settings precedence (flags > env > --env-file > --config > defaults), config show, and log rotation."""

from __future__ import annotations

import subprocess
import sys

import yaml

from papertrader.config import load_settings
from tests.conftest import synthetic_candles, write_candle_file
from tests.engine.helpers import run_replay


def test_precedence_flags_env_envfile_yaml_defaults(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("take_profit_pct: 0.02\nSTOP_LOSS_PCT: 0.01\nMAX_POSITIONS: 3\nSMA_FAST: 7\n")
    env_file = tmp_path / ".env"
    env_file.write_text("STOP_LOSS_PCT=0.02\nMAX_POSITIONS=4\nBITVAVO_API_KEY=ignored\n")
    monkeypatch.setenv("MAX_POSITIONS", "6")
    monkeypatch.setenv("SMA_SLOW", "40")
    settings = load_settings({"sma_slow": 50}, config_file=config, env_file=env_file)
    assert settings.take_profit_pct == 0.02  # yaml over default
    assert settings.stop_loss_pct == 0.02  # env file over yaml
    assert settings.max_positions == 6  # environment over env file
    assert settings.sma_slow == 50  # flag over environment
    assert settings.sma_fast == 7 and settings.trailing_stop_pct == 0.006  # yaml / default


def test_unknown_yaml_key_and_symbols_rules(tmp_path):
    import pytest

    from papertrader.config import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("TAKE_PROFIT: 0.02\n")
    with pytest.raises(ConfigError, match="unknown setting TAKE_PROFIT"):
        load_settings({}, config_file=bad)
    assert load_settings({"symbols": "eth-eur"}).symbol == "ETH-EUR"
    with pytest.raises(ConfigError, match="SYMBOLS: a worker trades one symbol"):
        load_settings({"symbols": "BTC-EUR,ETH-EUR", "symbol": "ADA-EUR"})


def test_config_show_masks_secrets(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "papertrader.cli", "config", "show", "--symbol", "eth-eur"],
        env={"PATH": "/usr/bin:/bin", "TELEGRAM_BOT_TOKEN": "123456:CANARY-SECRET", "MAX_POSITIONS": "2"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["SYMBOL"] == "ETH-EUR" and shown["MAX_POSITIONS"] == 2
    assert shown["TELEGRAM_BOT_TOKEN"] == "********"
    assert "CANARY-SECRET" not in result.stdout + result.stderr
    assert shown["INITIAL_CAPITAL"] == "10000" and shown["FEE_TAKER"] == "0.0025"


def test_logs_rotate(tmp_path):
    data = write_candle_file(tmp_path / "ROT-EUR_1m.csv", synthetic_candles(3000, seed=2))
    run_replay(tmp_path / "s", data, LOG_MAX_BYTES=10_000, LOG_BACKUP_COUNT=2, LOG_LEVEL="DEBUG",
               PROGRESS_INTERVAL_SECONDS=0.001, COMMIT_EVERY_CANDLES=10)
    logs = tmp_path / "s" / "logs"
    assert (logs / "performance.log.1").exists()
    assert not (logs / "performance.log.3").exists()
    assert (logs / "performance.log").stat().st_size <= 10_000
