"""Property-based fuzzing (Hypothesis) of PaperTrader spec validation (:mod:`papertrader_operator.validation`).

Any JSON value as a spec (and near-valid specs with one field mutated) is either accepted or rejected with
messages that each name the offending field (``spec....: ...``, one line); validation never raises. A spec that is
accepted renders its children, and each symbol's ``config.yaml`` loads through the worker's own settings loader:
the operator never accepts a spec whose workers would refuse their configuration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from papertrader.config import ConfigError, load_settings
from papertrader_operator.children import render_children
from papertrader_operator.validation import name_errors, validate_spec

from . import test_fuzz_engine  # noqa: F401  (registers and loads the "ci" / "full" profiles)

SCALAR = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                   st.sampled_from(["max", "realtime", "0", "1.5", "ml", "sma-cross", "BTC-EUR", "1m", "/m",
                                    "a:B", "synthetic", "replay", "bitvavo"]))
JSON = st.recursive(SCALAR, lambda children: st.one_of(
    st.lists(children, max_size=5), st.dictionaries(st.text(max_size=10), children, max_size=5)), max_leaves=25)

SYMBOL = st.one_of(st.from_regex(r"\A[A-Z0-9]{1,6}-[A-Z0-9]{1,6}\Z"), st.text(max_size=10))
NUMBER = st.one_of(st.floats(min_value=-2, max_value=20, allow_nan=False), st.integers(min_value=-5, max_value=200),
                   st.sampled_from([0, 1, 0.5, 1e12, 1e13]))
RISK = st.fixed_dictionaries({}, optional={k: NUMBER for k in (
    "maxDrawdownPct", "symbolMaxDrawdownPct", "maxDailyLossPct", "takeProfitPct", "stopLossPct", "trailingStopPct")})
CAPITAL = st.fixed_dictionaries({}, optional={"initial": NUMBER, "maxPositions": NUMBER, "feeTaker": NUMBER,
                                              "slippagePct": NUMBER})
STRATEGY = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.sampled_from(["sma-cross", "ml", "mod.sub:Klass", "x"]), st.text(max_size=8)),
    "model": st.fixed_dictionaries({}, optional={"path": st.sampled_from(["/models/m.pt", "rel", ""]),
                                                 "claimName": st.sampled_from(["models", "Bad_Name"])})})
EXTRA = st.dictionaries(st.sampled_from(["COMMIT_EVERY_CANDLES", "LOG_LEVEL", "lower", "SYMBOL", "NOT_A_SETTING",
                                         "PORTFOLIO_SNAPSHOT_EVERY", "WS_STALE_SECONDS"]),
                        st.sampled_from(["1", "10", "INFO", "x", "-1", ""]), max_size=3)
NEAR_VALID = st.fixed_dictionaries(
    {"symbols": st.lists(SYMBOL, min_size=0, max_size=4), "source": st.sampled_from(["synthetic", "replay",
                                                                                     "bitvavo", "other"])},
    optional={"replayFile": st.sampled_from(["/data/x.csv", ""]),
              "speed": st.sampled_from(["max", "realtime", "0", "00", "0.0", "2.5", "fast", "1e3"]),
              "candleInterval": st.sampled_from(["1m", "1h", "1d", "2m", ""]),
              "strategy": STRATEGY, "capital": CAPITAL, "risk": RISK, "extraConfig": EXTRA,
              "paused": st.booleans(), "unknownField": JSON})

FRACTION = st.floats(min_value=0.001, max_value=0.5)
LIKELY_VALID = st.fixed_dictionaries(
    {"symbols": st.lists(st.from_regex(r"\A[A-Z0-9]{2,5}-[A-Z]{3}\Z"), min_size=1, max_size=3, unique=True),
     "source": st.sampled_from(["synthetic", "replay", "bitvavo"])},
    optional={"replayFile": st.just("/data/x.csv"),
              "speed": st.sampled_from(["max", "realtime", "0", "00", "0.0", "2.5", "10", "0.001"]),
              "candleInterval": st.sampled_from(["1m", "5m", "1h", "1d"]),
              "strategy": st.sampled_from([{}, {"name": "sma-cross"}, {"name": "ml", "model": {"path": "/m/x.pt"}}]),
              "capital": st.fixed_dictionaries({}, optional={
                  "initial": st.floats(min_value=1, max_value=1e12), "maxPositions": st.integers(1, 100),
                  "feeTaker": st.floats(min_value=0, max_value=0.1), "slippagePct": st.floats(0, 0.1)}),
              "risk": st.fixed_dictionaries({}, optional={k: FRACTION for k in (
                  "maxDrawdownPct", "symbolMaxDrawdownPct", "maxDailyLossPct", "takeProfitPct", "stopLossPct",
                  "trailingStopPct")}),
              "extraConfig": EXTRA})


def _check_messages(errors: list[str]) -> None:
    for message in errors:
        assert isinstance(message, str) and message.startswith("spec") and "\n" not in message, message


@given(spec=st.one_of(JSON, NEAR_VALID))
def test_any_spec_is_accepted_or_explained(spec: Any) -> None:
    defaulted, errors = validate_spec(spec)
    _check_messages(errors)
    if errors:
        return
    assert isinstance(defaulted, dict) and defaulted["symbols"] and defaulted["source"]
    validate_spec(spec, old_spec=spec)  # an update with itself as the old spec (transition rules) never raises


@settings(max_examples=80 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else 1500)
@given(spec=st.one_of(LIKELY_VALID, NEAR_VALID))
def test_an_accepted_spec_gives_workers_a_configuration_they_accept(spec: dict[str, Any], tmp_path_factory:
                                                                    pytest.TempPathFactory) -> None:
    defaulted, errors = validate_spec(spec)
    if errors or name_errors("fuzz", defaulted["symbols"]):
        return
    trader = {"apiVersion": "papertrader.io/v1alpha1", "kind": "PaperTrader",
              "metadata": {"name": "fuzz", "namespace": "ns", "uid": "u"}, "spec": spec}
    children = render_children(trader)
    assert len(children) == 3 * len(defaulted["symbols"])
    configmaps = [child for child in children if child["kind"] == "ConfigMap"]
    path: Path = tmp_path_factory.mktemp("spec") / "config.yaml"
    for configmap, symbol in zip(configmaps, defaulted["symbols"], strict=True):
        path.write_text(configmap["data"]["config.yaml"])
        assert yaml.safe_load(path.read_text())["SYMBOL"] == symbol
        flags = {"symbol": symbol, "replay_file": defaulted.get("replayFile"),
                 "model": (defaulted["strategy"].get("model") or {}).get("path")}  # the container's arguments
        try:
            worker = load_settings(flags={k: v for k, v in flags.items() if v}, config_file=path)
        except ConfigError as exc:
            raise AssertionError(f"accepted spec {spec!r} gives a worker configuration it refuses: {exc}") from None
        assert worker.symbol == symbol and worker.source == defaulted["source"]
