"""What a worker of a PaperTrader with spec.telegram is given: with --notifier-url the notifier's address, its
trader, its own chat (an optional key of the trader's Secret) and limits, never the token; without it, as before,
the token and chat id. Plus the operator flag and its environment twin."""

from __future__ import annotations

from typing import Any

import pytest

from papertrader_operator import settings as s
from papertrader_operator.children import render_symbol
from papertrader_operator.crd import default_spec
from papertrader_operator.main import build_parser, config_from_args


def worker_env(spec: dict[str, Any], notifier_url: str = "") -> dict[str, Any]:
    trader = {"metadata": {"name": "demo", "uid": "u", "namespace": "ns"}, "spec": spec}
    sts = render_symbol(trader, default_spec(spec), "BTC-EUR", notifier_url=notifier_url)[2]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


SPEC = {"symbols": ["BTC-EUR"], "source": "synthetic",
        "telegram": {"secretName": "tg", "notificationsPerHour": {"error": 5, "trade": 20}}}


def test_with_a_notifier_workers_get_its_address_never_the_token() -> None:
    env = worker_env(SPEC, "http://papertrader-notifier.pt.svc:8767/")
    assert "TELEGRAM_BOT_TOKEN" not in env and "TELEGRAM_CHAT_ID" not in env
    assert env["NOTIFIER_URL"] == "http://papertrader-notifier.pt.svc:8767"
    assert env["NOTIFIER_TRADER"] == "demo"
    assert env["NOTIFIER_CHAT_ID"] == {"secretKeyRef": {"name": "tg", "key": "chatId", "optional": True}}
    assert env["NOTIFIER_LIMITS"] == '{"error":5,"trade":20}'
    assert env["CONTROL_TOKEN_FILE"].startswith(s.CONTROL_DIR)


def test_without_a_notifier_workers_keep_the_token_as_before() -> None:
    env = worker_env(SPEC)
    assert env["TELEGRAM_BOT_TOKEN"] == {"secretKeyRef": {"name": "tg", "key": "token"}}
    assert env["TELEGRAM_CHAT_ID"] == {"secretKeyRef": {"name": "tg", "key": "chatId"}}
    assert not [name for name in env if name.startswith("NOTIFIER_")]


def test_a_trader_without_telegram_gets_neither() -> None:
    env = worker_env({"symbols": ["BTC-EUR"], "source": "synthetic"}, "http://n:8767")
    assert not [name for name in env if name.startswith(("NOTIFIER_", "TELEGRAM_"))]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_notifier_url_flag_and_environment(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "env":
        monkeypatch.setenv("PAPERTRADER_NOTIFIER_URL", "http://n:8767")
        args = build_parser().parse_args([])
    else:
        monkeypatch.delenv("PAPERTRADER_NOTIFIER_URL", raising=False)
        args = build_parser().parse_args(["--notifier-url", "http://n:8767"])
    assert config_from_args(args).notifier_url == "http://n:8767"
