"""The ml strategy: gating, state round trip, breaker, hot swap, bad model directories."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from papertrader.config import load_settings
from papertrader.events import HOLD
from papertrader.features import FeatureEngine
from papertrader.market.candle_file import CandleFileReader
from papertrader.ml import artifact
from papertrader.ml.artifact import ModelError
from papertrader.resilience import CircuitBreaker
from papertrader.strategy.base import PositionView
from papertrader.strategy.ml import DEMO_MODEL_DIR, MlStrategy
from tests.ml.conftest import SAMPLE

POSITION = PositionView(1.0, 100.0, 0, 1)


def make(tmp_path: Path, **settings) -> MlStrategy:
    flags = {"strategy": "ml", "state_dir": tmp_path / "state", **settings}
    return MlStrategy(load_settings(flags).ml)


def sample_candles(n: int = 600):
    reader = CandleFileReader(SAMPLE)
    candles = reader.read(n)
    reader.close()
    return candles


def feed(strategy: MlStrategy, candles, engine: FeatureEngine | None = None):
    engine = engine or FeatureEngine(strategy.required_features())
    signals, probabilities = [], []
    for candle in candles:
        values = engine.update(candle)
        if engine.count >= engine.lookback:
            signal = strategy.on_candle(candle, values, None)
            probabilities.append(signal.prediction.probability_up if signal.prediction else None)
            signals.append(replace(signal, prediction=None))  # (a prediction carries its wall-clock duration)
    return signals, probabilities, engine


def test_demo_model_is_the_default_and_is_marked_demo(tmp_path):
    strategy = make(tmp_path)
    assert strategy.root == DEMO_MODEL_DIR
    status = strategy.status()
    assert status["model_version"].startswith("btc-usdt-") and status["model_age_seconds"] >= 0
    version_dir = DEMO_MODEL_DIR / (DEMO_MODEL_DIR / "current").read_text().strip()
    assert json.loads((version_dir / "metadata.json").read_text())["demo"] is True
    assert "demo model" in (version_dir / "model_card.md").read_text()
    assert sum(f.stat().st_size for f in DEMO_MODEL_DIR.rglob("*") if f.is_file()) < 300_000


@pytest.mark.parametrize("p, position, side, level", [
    (0.59, None, "hold", None), (0.6, None, "buy", "WEAK"), (0.7, None, "buy", "NEUTRAL"),
    (0.8, None, "buy", "MODERATE"), (0.9, None, "buy", "STRONG"), (0.95, None, "buy", "VERY_STRONG"),
    (0.3, None, "hold", None), (0.3, POSITION, "sell", "NEUTRAL"), (0.45, POSITION, "hold", None),
])
def test_gating_levels(tmp_path, p, position, side, level):
    signal = make(tmp_path).decide(p, position is not None)
    assert signal.side == side
    if level:
        assert signal.reason.endswith(level.lower())
        assert signal.confidence == pytest.approx(max(p, 1 - p))
        assert signal.strength == pytest.approx((max(p, 1 - p) - 0.6) / 0.4)


def test_every_gating_setting_has_an_effect(tmp_path):
    assert make(tmp_path).decide(0.65, False).side == "buy"
    assert make(tmp_path, min_confidence_threshold=0.7).decide(0.65, False) is HOLD
    assert make(tmp_path, min_signal_strength=0.4).decide(0.7, False) is HOLD  # strength 0.25
    assert make(tmp_path, min_signal_strength=0.4).decide(0.8, False).side == "buy"  # strength 0.5


def test_state_round_trips_through_json_exactly(tmp_path):
    candles = sample_candles(500)
    a = make(tmp_path)
    engine = FeatureEngine(a.required_features())
    feed(a, candles[:300], engine)
    state = json.loads(json.dumps({"s": a.state(), "f": engine.state()}))
    rest_a = feed(a, candles[300:], engine)[:2]
    b = make(tmp_path)
    engine_b = FeatureEngine(b.required_features())
    engine_b.load_state(state["f"])
    b.load_state(state["s"])
    rest_b = feed(b, candles[300:], engine_b)[:2]
    assert rest_a == rest_b
    assert sum(p is not None for p in rest_a[1]) == 200


def test_warmup_and_buffer(tmp_path):
    strategy = make(tmp_path)
    engine = FeatureEngine(strategy.required_features())
    assert strategy.warmup_candles(engine.lookback) == engine.lookback + strategy.predictor.seq_len
    _, probabilities, _ = feed(strategy, sample_candles(200), engine)
    first = next(i for i, p in enumerate(probabilities) if p is not None)
    assert first == strategy.predictor.seq_len - 1


def test_prediction_failures_open_the_breaker_and_hold(tmp_path):
    strategy = make(tmp_path)
    clock = [0.0]
    breaker = CircuitBreaker("prediction", failure_threshold=3, recovery_timeout=60, clock=lambda: clock[0])
    strategy.bind_breaker(breaker)
    candles = sample_candles(300)
    feed(strategy, candles[:150])  # fill the window
    engine = FeatureEngine(strategy.required_features())
    for candle in candles[:150]:
        engine.update(candle)

    def boom(window):
        raise RuntimeError("model exploded")

    good = strategy.predictor.predict
    strategy.predictor.predict = boom
    for candle in candles[150:155]:
        assert strategy.on_candle(candle, engine.update(candle), None) is HOLD
    assert breaker.is_open and strategy.failures == 3  # open after 3: no more calls while open
    strategy.predictor.predict = good
    clock[0] = 61.0
    for candle in candles[155:160]:
        strategy.on_candle(candle, engine.update(candle), None)
    assert not breaker.is_open and strategy.predictions > 0


def _copy_demo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(DEMO_MODEL_DIR, root)
    return root


def _new_version(root: Path, version: str, mutate=None) -> str:
    current = (root / "current").read_text().strip()
    meta = json.loads((root / current / "metadata.json").read_text())
    import torch

    state = torch.load(root / current / "model.pt", weights_only=True)
    state["head.bias"] = state["head.bias"] + 3.0  # strongly bullish: every prediction changes
    meta["weights_sha256"] = artifact.tensor_sha256(state)
    meta["model_version"] = version
    if mutate:
        mutate(meta)
    artifact.write_version(root, version, state, meta, {}, make_current=False)
    return version


def test_hot_swap_is_atomic_and_recorded(tmp_path):
    root = _copy_demo(tmp_path)
    strategy = make(tmp_path, model=root)
    strategy.reload_min_seconds = 0.0  # check the pointer at every candle (default: at most once a second)
    old = strategy.predictor.version
    engine = FeatureEngine(strategy.required_features())
    candles = sample_candles(400)
    _, before, _ = feed(strategy, candles[:200], engine)
    _new_version(root, "v-new")
    artifact.set_current(root, "v-new")
    _, after, _ = feed(strategy, candles[200:], engine)
    assert strategy.predictor.version == "v-new"
    assert strategy.swaps[0]["from"] == old and strategy.swaps[0]["to"] == "v-new"
    assert min(after) > max(before[-50:])  # the new, bullish weights are used from the next candle on
    state = json.loads(json.dumps(strategy.state()))
    assert state["model_version"] == "v-new"
    # a restarted worker whose pointer moved back still resumes with the version it was using
    artifact.set_current(root, old)
    resumed = make(tmp_path, model=root)
    resumed.load_state(state)
    assert resumed.predictor.version == "v-new"


def test_hot_swap_refuses_other_features_and_keeps_the_old_model(tmp_path, caplog):
    root = _copy_demo(tmp_path)
    strategy = make(tmp_path, model=root)
    strategy.reload_min_seconds = 0.0
    old = strategy.predictor.version
    _new_version(root, "v-bad", lambda m: m.update(feature_names=m["feature_names"][:-1] + ["rsi_7"]))
    artifact.set_current(root, "v-bad")
    feed(strategy, sample_candles(150))
    assert strategy.predictor.version == old
    assert "restart the worker to change the feature list" in caplog.text
    (root / "v-worse").mkdir()
    (root / "v-worse" / "metadata.json").write_text("{not json")
    artifact.set_current(root, "v-worse")
    feed(strategy, sample_candles(150))
    assert strategy.predictor.version == old and "corrupt metadata" in caplog.text


def test_pointer_checks_are_throttled_in_time(tmp_path, monkeypatch):
    """A replay does not stat the pointer file per candle: at most once per reload_min_seconds."""
    root = _copy_demo(tmp_path)
    strategy = make(tmp_path, model=root)
    clock = [1000.0]
    monkeypatch.setattr("papertrader.strategy.ml.time.monotonic", lambda: clock[0])
    stats = []
    real = strategy._stat_pointer
    monkeypatch.setattr(strategy, "_stat_pointer", lambda: stats.append(1) or real())
    candles = sample_candles(300)
    engine = FeatureEngine(strategy.required_features())
    feed(strategy, candles[:200], engine)
    assert len(stats) == 1  # the first candle; then the clock did not move
    _new_version(root, "v-new")
    artifact.set_current(root, "v-new")
    feed(strategy, candles[200:210], engine)
    assert strategy.predictor.version != "v-new" and len(stats) == 1
    clock[0] += strategy.reload_min_seconds
    feed(strategy, candles[210:220], engine)
    assert strategy.predictor.version == "v-new" and len(stats) == 2
    assert strategy.swaps[0]["ts"] == candles[210].ts


def test_pinned_version_disables_hot_swap(tmp_path):
    root = _copy_demo(tmp_path)
    old = (root / "current").read_text().strip()
    _new_version(root, "v-new")
    pinned = make(tmp_path, model=root, model_version=old)
    artifact.set_current(root, "v-new")
    feed(pinned, sample_candles(150))
    assert pinned.predictor.version == old and pinned.reload_every == 0
    assert make(tmp_path, model=root, model_version="v-new").predictor.version == "v-new"


def _broken(tmp_path: Path, how: str) -> Path:
    root = _copy_demo(tmp_path)
    version = (root / "current").read_text().strip()
    vdir = root / version
    meta = json.loads((vdir / "metadata.json").read_text())
    if how == "no-weights":
        (vdir / "model.pt").unlink()
    elif how == "garbage-weights":
        (vdir / "model.pt").write_bytes(b"not a zip file at all")
    elif how == "pickle":
        import pickle

        (vdir / "model.pt").write_bytes(pickle.dumps({"x": object()}))
    elif how == "bad-json":
        (vdir / "metadata.json").write_text("{")
    elif how == "unknown-feature":
        meta["feature_names"][0] = "wobble_3"
        (vdir / "metadata.json").write_text(json.dumps(meta))
    elif how == "feature-version":
        meta["feature_code_version"] = 999
        (vdir / "metadata.json").write_text(json.dumps(meta))
    elif how == "other-weights":
        meta["weights_sha256"] = "0" * 64
        (vdir / "metadata.json").write_text(json.dumps(meta))
    elif how == "no-pointer":
        (root / "current").unlink()
    return root


@pytest.mark.parametrize("how, message", [
    ("no-weights", "model.pt: missing"), ("garbage-weights", "corrupt or not a weights-only"),
    ("pickle", "corrupt or not a weights-only"), ("bad-json", "corrupt metadata"),
    ("unknown-feature", "feature list does not match"), ("feature-version", "feature code version 999"),
    ("other-weights", "sha256 differs"), ("no-pointer", "no metadata.json and no 'current'"),
])
def test_bad_model_directories_are_refused_clearly(tmp_path, how, message):
    root = _broken(tmp_path, how)
    with pytest.raises(ModelError, match=message):
        make(tmp_path, model=root)


def test_cli_reports_a_bad_model_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "papertrader.cli", "run", "--strategy", "ml", "--model", str(tmp_path / "nope"),
         "--state-dir", str(tmp_path / "s"), "--max-candles", "10", "--http-port", "0", "--ws-port", "0"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "model directory" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.stderr
