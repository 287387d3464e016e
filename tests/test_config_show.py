"""``papertrader config show`` prints exactly what it printed before the settings were grouped (files recorded
from the previous commit's output), for the defaults and for environment + ``.env`` values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from papertrader.config import load_settings
from papertrader.config_groups import NotifySettings, RiskSettings

DATA = Path(__file__).parent / "data" / "config_show"


def config_show(env: dict[str, str], *args: str) -> bytes:
    clean = {key: os.environ[key] for key in ("PATH", "PYTHONPATH", "HOME") if key in os.environ}
    result = subprocess.run([sys.executable, "-m", "papertrader.cli", "config", "show", *args],
                            env={**clean, **env}, capture_output=True, check=True, timeout=60)
    return result.stdout


@pytest.mark.parametrize("name, env, dotenv", [
    ("defaults", {}, None),
    ("env_and_dotenv", {"SOURCE": "replay", "REPLAY_FILE": "/data/x.csv", "TAKE_PROFIT_PCT": "0.02",
                        "CONTROL_TOKEN": "abc", "NOTIFIER_URL": "http://n:8080", "HTTP_PORT": "9000"},
     "SYMBOL=eth-eur\nTELEGRAM_BOT_TOKEN=secret123\nMAX_POSITIONS=3\n"),
])
def test_config_show_output_is_unchanged(tmp_path, name, env, dotenv):
    args: list[str] = []
    if dotenv is not None:
        (tmp_path / "cs.env").write_text(dotenv, encoding="utf-8")
        args = ["--env-file", str(tmp_path / "cs.env")]
    assert config_show(env, *args) == (DATA / f"{name}.yaml").read_bytes()


def test_groups_read_the_settings_they_name(tmp_path):
    env_file = tmp_path / "x.env"
    env_file.write_text("MAX_DRAWDOWN_PCT=0.2\nTELEGRAM_CHAT_ID=42\nSYMBOL=eth-eur\n", encoding="utf-8")
    settings = load_settings({"max_positions": 3}, env_file=env_file)
    risk, notify = settings.risk, settings.notify
    assert isinstance(risk, RiskSettings) and isinstance(notify, NotifySettings)
    assert (risk.max_drawdown_pct, risk.max_positions) == (0.2, 3)
    assert (notify.telegram_chat_id, notify.symbol) == ("42", "ETH-EUR")
    with pytest.raises(AttributeError):
        risk.max_positions = 4  # type: ignore[misc]  # read-only: the group is a view
