"""Models trained once per session on synthetic series (small, one thread, a few seconds each)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from papertrader.ml.train_cli import main as train_main
from tests.ml.synth import planted_signal, random_walk, write_csv

PACKAGE_DATA = Path(__file__).resolve().parents[2] / "worker" / "papertrader" / "data"
SAMPLE = PACKAGE_DATA / "sample_BTC-USDT_1m.csv"
DEMO = PACKAGE_DATA / "models" / "demo"

FAST = ["--epochs", "8", "--patience", "3", "--no-progress", "--symbol", "BTC-EUR", "--threads", "1"]


def train(tmp: Path, name: str, candles: list, *extra: str) -> dict[str, Any]:
    data = write_csv(tmp / f"{name}.csv", candles)
    out = tmp / name
    rc = train_main(["--data", str(data), "--out", str(out), *FAST, *extra])
    assert rc == 0
    version = (out / "current").read_text().strip()
    meta = json.loads((out / version / "metadata.json").read_text())
    meta["_dir"] = out / version
    meta["_root"] = out
    meta["_data"] = data
    return meta


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def random_walk_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return train(tmp_path_factory.mktemp("rw"), "rw", random_walk(10000, seed=11), "--horizon", "1")


@pytest.fixture(scope="session")
def planted_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return train(tmp_path_factory.mktemp("planted"), "planted", planted_signal(6000, seed=12), "--horizon", "1")
