"""Dataset building: candles -> the engine's incremental features -> windows and forward-return labels.

Nothing here re-implements a feature: every candle is streamed through :class:`papertrader.features.FeatureEngine`
exactly as the worker does, after the same data-quality gate (rejected rows and identical duplicates never reach
the features, as in the worker). Row ``i`` of the feature matrix is the feature vector the ``ml`` strategy sees
on accepted candle ``i``; it uses candles ``<= i`` only.

Label (``label_definition``): ``y_i = 1 if close[i + h] / close[i] - 1 > threshold else 0`` where ``h`` is the
horizon in accepted candles and ``threshold`` the label threshold (default 0: "up after h candles"). The last
``h`` candles have no label.

A sample at candle ``i`` is the window of the ``seq_len`` feature vectors ending at ``i``; it exists only when all
of them are defined (the feature engine had seen at least its lookback of candles) and finite, which is exactly
when the strategy would predict in the worker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from papertrader.errors import PapertraderError
from papertrader.features import FeatureEngine
from papertrader.market.candle import Candle
from papertrader.market.candle_file import CandleFileError, CandleFileReader
from papertrader.quality import DUPLICATE, DataQualityGate, describe_rejections


class DatasetError(PapertraderError, ValueError):
    """The data cannot be used for training (message says why and what is needed)."""


@dataclass
class CandleSet:
    """Accepted candles of one or more files, in order, with provenance."""

    candles: list[Candle]
    files: list[dict[str, object]]  # path, sha256, rows
    rejected: int
    reasons: dict[str, int] = field(default_factory=dict)  # rejected candles per gate rule
    rejection_note: str | None = None  # the gate's one-line account of the rejections (rule, count, example)

    @property
    def time_range(self) -> tuple[int, int]:
        return self.candles[0].ts, self.candles[-1].ts


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_candles(paths: Sequence[Path | str], interval_ms: int, gate_settings: dict[str, object] | None = None
                 ) -> CandleSet:
    """Read candle files in the given order through the worker's data-quality gate."""
    gate_settings = gate_settings or {}
    gate = DataQualityGate(interval_ms, **gate_settings)  # type: ignore[arg-type]  # the gate checks its own options
    candles: list[Candle] = []
    files: list[dict[str, object]] = []
    for raw_path in paths:
        path = Path(raw_path)
        if not path.is_file():
            raise DatasetError(f"--data {path}: file not found")
        reader = CandleFileReader(path)
        rows = 0
        try:
            while True:
                batch = reader.read(10_000)
                if not batch:
                    break
                rows += len(batch)
                for item in batch:
                    verdict = gate.check(item)
                    if verdict.accepted and verdict is not DUPLICATE:
                        candles.append(item)  # type: ignore[arg-type]  # accepted: a Candle
        finally:
            reader.close()
        if rows == 0:
            raise CandleFileError(f"{path}: line 2: no candle rows after the header")
        files.append({"path": str(path), "name": path.name, "sha256": file_sha256(path), "rows": rows})
    counters = gate.counters
    checked = counters.accepted + counters.rejected
    note = describe_rejections(counters, checked, interval_ms) if counters.rejected else None
    return CandleSet(candles, files, counters.rejected, dict(counters.reasons), note)


def feature_matrix(candles: Sequence[Candle], names: Sequence[str]) -> tuple[np.ndarray, int]:
    """(N, F) float64 matrix of feature vectors (NaN before the engine's lookback) and that lookback."""
    engine = FeatureEngine(names)
    out = np.full((len(candles), len(engine.names)), np.nan, dtype=np.float64)
    lookback = engine.lookback
    update, vector = engine.update, engine.vector
    for i, candle in enumerate(candles):
        update(candle)
        if engine.count >= lookback:
            out[i] = vector()
    return out, lookback


def labels(closes: np.ndarray, horizon: int, threshold: float) -> np.ndarray:
    """Forward-return labels as float (1.0 / 0.0), NaN for the last ``horizon`` candles."""
    y = np.full(len(closes), np.nan)
    if len(closes) > horizon:
        forward = closes[horizon:] / closes[:-horizon] - 1.0
        y[:-horizon] = (forward > threshold).astype(np.float64)
    return y


def label_definition(horizon: int, threshold: float) -> str:
    return (f"y_t = 1 if close[t+{horizon}] / close[t] - 1 > {threshold!r} else 0 "
            f"(t, t+{horizon} counted in accepted candles)")


def window_valid(features: np.ndarray, seq_len: int) -> np.ndarray:
    """Boolean per candle: the ``seq_len`` rows ending here are all finite."""
    finite = np.isfinite(features).all(axis=1).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(finite)])
    ok = np.zeros(len(features), dtype=bool)
    if len(features) >= seq_len:
        ok[seq_len - 1:] = (csum[seq_len:] - csum[:-seq_len]) == seq_len
    return ok


@dataclass
class Dataset:
    """Everything training needs, aligned by accepted-candle index."""

    ts: np.ndarray  # (N,) int64 open times
    closes: np.ndarray  # (N,)
    features: np.ndarray  # (N, F) float64
    y: np.ndarray  # (N,) float, NaN where unlabeled
    sample_ok: np.ndarray  # (N,) bool: valid window and label
    lookback: int
    feature_names: tuple[str, ...]


def build_dataset(candles: Sequence[Candle], names: Sequence[str], seq_len: int, horizon: int,
                  threshold: float) -> Dataset:
    feats, lookback = feature_matrix(candles, names)
    closes = np.fromiter((c.close for c in candles), dtype=np.float64, count=len(candles))
    ts = np.fromiter((c.ts for c in candles), dtype=np.int64, count=len(candles))
    y = labels(closes, horizon, threshold)
    ok = window_valid(feats, seq_len) & np.isfinite(y)
    return Dataset(ts, closes, feats, y, ok, lookback, tuple(dict.fromkeys(names)))


def windows(features_scaled: np.ndarray, index: np.ndarray, seq_len: int) -> np.ndarray:
    """(len(index), seq_len, F) float32 windows ending at each index (a copy)."""
    view = np.lib.stride_tricks.sliding_window_view(features_scaled, seq_len, axis=0)  # (N-seq+1, F, seq)
    return np.ascontiguousarray(view[index - (seq_len - 1)].transpose(0, 2, 1), dtype=np.float32)

