"""Feature scaling, fitted on a fold's training rows only: z = clip((x - mean) / std, -clip, clip)."""

from __future__ import annotations

import numpy as np

CLIP = 8.0


def fit_scaler(features: np.ndarray) -> dict[str, list[float] | float]:
    rows = features[np.isfinite(features).all(axis=1)]
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "clip": CLIP}


def apply_scaler(features: np.ndarray, scaler: dict) -> np.ndarray:
    """Same arithmetic as :meth:`papertrader.ml.predictor.Predictor.scale` (float64, then float32)."""
    mean = np.asarray(scaler["mean"], dtype=np.float64)
    inv_std = 1.0 / np.asarray(scaler["std"], dtype=np.float64)
    clip = float(scaler["clip"])
    return np.clip((features - mean) * inv_std, -clip, clip).astype(np.float32)
