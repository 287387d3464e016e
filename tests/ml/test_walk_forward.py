"""Leakage checks: nothing to learn -> AUC 0.5 and no trading edge; a planted signal -> AUC > 0.6; folds purged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from papertrader.ml import train as train_mod
from papertrader.ml.dataset import build_dataset, labels
from papertrader.ml.metrics import auc
from papertrader.ml.train_cli import main as train_main
from tests.ml.conftest import FAST, train
from tests.ml.synth import planted_signal, random_walk, write_csv


def test_random_walk_has_no_edge(random_walk_model):
    s = random_walk_model["summary"]
    assert abs(s["pooled_auc"] - 0.5) <= 0.03, s
    assert abs(s["mean_auc"] - 0.5) <= 0.03, s
    # out of sample the strategy cannot beat a random walk: what it made before fees is noise and fees make it worse
    assert s["sum_return_pct"] <= 0.0, s
    assert s["sum_return_pct"] < s["sum_gross_return_pct"], s
    for fold in random_walk_model["folds"]:
        assert fold["trading"]["return_pct"] <= fold["trading"]["gross_return_pct"]


def test_planted_signal_is_found(planted_model):
    s = planted_model["summary"]
    assert s["pooled_auc"] > 0.6, s
    assert s["mean_auc"] > 0.6, s
    assert s["mean_accuracy"] > s["mean_majority_accuracy"]


def test_folds_are_purged_and_ordered(random_walk_model):
    meta = random_walk_model
    wf = meta["walk_forward"]
    assert wf["purge"] >= meta["horizon"] + meta["feature_lookback"] + meta["seq_len"]
    for fold in meta["folds"]:
        assert fold["train"][1] < fold["val"][0] < fold["val"][1] < fold["test"][0]
    tests = [f["test"] for f in meta["folds"]]
    assert all(a[1] < b[0] for a, b in zip(tests, tests[1:]))


def test_fold_index_gaps_and_scaler_use_only_training_rows():
    candles = random_walk(5000, seed=3)
    cfg = train_mod.TrainConfig(horizon=5, folds=3)
    ds = build_dataset(candles, cfg.features, cfg.seq_len, cfg.horizon, cfg.label_threshold)
    purge = cfg.horizon + ds.lookback + cfg.seq_len
    folds = train_mod.make_folds(ds, cfg, purge, cfg.horizon)
    for fold in folds:
        assert fold.val[0] - fold.train[1] >= purge
        assert fold.test[0] - fold.val[1] >= purge
        # the last training label looks at candle train_end - 1 + horizon; the first test input window starts at
        # test_start - seq_len + 1 - lookback: they never meet
        assert fold.train[1] - 1 + cfg.horizon < fold.test[0] - cfg.seq_len + 1 - ds.lookback
    for a, b in zip(folds, folds[1:]):
        assert b.test[0] - a.test[1] >= cfg.horizon  # embargo


def test_labels_look_forward_exactly_horizon():
    closes = np.array([1.0, 2.0, 1.5, 1.5, 3.0])
    y = labels(closes, 2, 0.0)
    assert y[:3].tolist() == [1.0, 0.0, 1.0] and np.isnan(y[3:]).all()
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5


def test_same_seed_gives_identical_weights(tmp_path):
    candles = random_walk(3000, seed=5)
    args = ["--horizon", "3", "--folds", "2", "--no-trading-eval"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = train(tmp_path / "a", "m", candles, *args)
    b = train(tmp_path / "b", "m", candles, *args)
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["model_version"] == b["model_version"]
    file_a = hashlib.sha256((a["_dir"] / "model.pt").read_bytes()).hexdigest()
    file_b = hashlib.sha256((b["_dir"] / "model.pt").read_bytes()).hexdigest()
    assert file_a == file_b
    assert a["folds"] == b["folds"]
    c = train(tmp_path / "b", "m2", candles, *args, "--seed", "7")
    assert c["weights_sha256"] != a["weights_sha256"]


def test_model_directory_is_auditable(planted_model):
    meta = planted_model
    for key in ("feature_names", "scaler", "seq_len", "horizon", "label", "data", "folds", "versions",
                "model_version", "weights_sha256", "command", "training", "walk_forward"):
        assert key in meta
    assert meta["data"]["files"][0]["sha256"] == hashlib.sha256(Path(meta["_data"]).read_bytes()).hexdigest()
    assert meta["data"]["time_range"][0] < meta["data"]["time_range"][1]
    assert "close[t+1]" in meta["label"]["definition"]
    for name in ("model.pt", "metadata.json", "model_card.md", "evaluation.md"):
        assert (meta["_dir"] / name).is_file()
    card = (meta["_dir"] / "model_card.md").read_text()
    assert "AUC" in card and "demo" not in card.lower().split("honest")[0]


def test_features_in_training_are_the_engine_features(tmp_path):
    """The dataset's rows are exactly what FeatureEngine gives candle by candle (one implementation)."""
    from papertrader.features import FeatureEngine

    candles = planted_signal(400, seed=4)
    names = train_mod.ML_DEFAULT_FEATURES
    ds = build_dataset(candles, names, 8, 1, 0.0)
    engine = FeatureEngine(names)
    for i, candle in enumerate(candles):
        engine.update(candle)
        if engine.count >= engine.lookback:
            assert ds.features[i].tolist() == engine.vector()
        else:
            assert np.isnan(ds.features[i]).all()


def test_too_little_data_says_how_much_is_needed(tmp_path, capsys):
    data = write_csv(tmp_path / "short.csv", random_walk(900, seed=1))
    rc = train_main(["--data", str(data), "--out", str(tmp_path / "m"), *FAST])
    assert rc == 2
    err = capsys.readouterr().err
    assert "too little data" in err and "needs about" in err and "Traceback" not in err
    needed = int(err.split("needs about ")[1].split()[0])
    assert needed > 900
    data = write_csv(tmp_path / "enough.csv", random_walk(needed, seed=1))
    assert train_main(["--data", str(data), "--out", str(tmp_path / "m"), *FAST, "--no-trading-eval"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--data", "/nonexistent.csv"], "file not found"),
    (["--data", "{bad}"], "missing column"),
    (["--data", "{good}", "--features", "ret_1,nope_3"], "unknown feature"),
    (["--data", "{good}", "--horizon", "0"], "--horizon 0"),
    (["--data", "{good}", "--purge", "3"], "--purge 3"),
])
def test_bad_training_inputs_are_one_line_errors(tmp_path, capsys, args, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,price\n1,2\n")
    good = write_csv(tmp_path / "good.csv", random_walk(3000, seed=1))
    args = [a.replace("{bad}", str(bad)).replace("{good}", str(good)) for a in args]
    rc = train_main([*args, "--out", str(tmp_path / "m"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and "Traceback" not in err


def test_cuda_request_falls_back_with_a_message():
    said = []
    device = train_mod.resolve_device("cuda", said.append)
    import torch

    if torch.cuda.is_available():
        assert device.type == "cuda"
    else:
        assert device.type == "cpu" and "falling back to cpu" in said[0]


def test_json_metadata_round_trips(planted_model):
    text = (planted_model["_dir"] / "metadata.json").read_text()
    assert json.loads(text)["model_version"] == planted_model["model_version"]
