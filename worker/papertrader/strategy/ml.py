"""``ml``: trade on a trained model's probability that price is higher ``horizon`` candles ahead.

Per closed candle the strategy appends the features of that candle (computed incrementally by the engine) to a
rolling buffer of the last ``seq_len`` vectors, scales only the new vector, and runs the model over the window
(no recomputation of the window's features). The decision, with ``p = P(up)`` and ``T = MIN_CONFIDENCE_THRESHOLD``:

- confidence = max(p, 1 - p); strength = (confidence - T) / (1 - T), clipped to 0..1 (0 exactly at the
  threshold, 1 at certainty). Strength maps to the seed's levels WEAK < 0.2 <= NEUTRAL < 0.4 <= MODERATE < 0.6
  <= STRONG < 0.8 <= VERY_STRONG, which scale the position size (risk/sizing.py) together with confidence.
- buy when p >= T and strength >= MIN_SIGNAL_STRENGTH; sell (close the open position) when 1 - p >= T and
  strength >= MIN_SIGNAL_STRENGTH and a position is open; otherwise hold.

Hot swap: with ``--model DIR`` holding versions and a ``current`` pointer, the pointer is checked every
MODEL_RELOAD_CHECK_CANDLES candles, at most once per :attr:`MlStrategy.reload_min_seconds` (1 s) of wall time — a
live worker checks at every candle, a replay about once a second: a ``stat`` per candle cost ~15 us of the hot path
(the system call also slows the matrix-vector product after it). A new version is loaded and validated completely
(same feature list, format and feature-code version) before it replaces the running one, from the next candle on. A
refused version is logged once and the old model keeps running. The version in use is part of :meth:`state`, so a
resumed worker reloads that version and continues byte for byte. MODEL_VERSION pins a version (no hot swap).

Failures of the prediction itself go to the prediction circuit breaker; while it is open the strategy holds.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections import deque
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from papertrader.config_groups import MlSettings
from papertrader.events import HOLD, Prediction, Side, Signal
from papertrader.market.candle import Candle
from papertrader.ml.artifact import POINTER, ModelError, resolve
from papertrader.risk.sizing import strength_level
from papertrader.strategy.base import PositionView, Strategy

log = logging.getLogger("papertrader.strategy.ml")

#: the model shipped in the package, used when --strategy ml is given without --model
DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "data" / "models" / "demo"


def _load_predictor(root: Path, version: str | None) -> Any:
    from papertrader.ml.predictor import Predictor  # imports torch: only on the ml path

    return Predictor(resolve(root, version))


class MlStrategy(Strategy):
    name = "ml"
    #: the pointer file is stat'ed at most once per this many seconds (time.monotonic; 0: at every check)
    reload_min_seconds = 1.0

    settings_type = MlSettings

    def __init__(self, settings: MlSettings) -> None:
        super().__init__(settings)
        import torch

        torch.set_num_threads(settings.torch_threads)
        self.root = Path(settings.model) if settings.model is not None else DEMO_MODEL_DIR
        self.pinned = settings.model_version
        self.threshold = float(settings.min_confidence_threshold)
        self.min_strength = float(settings.min_signal_strength)
        self.predictor = _load_predictor(self.root, self.pinned)
        self.names = self.predictor.feature_names
        names = self.names
        self._vector = itemgetter(*names) if len(names) > 1 else lambda values: (values[names[0]],)
        self.reload_every = settings.model_reload_check_candles if self.predictor.files.pointer else 0
        self._pointer_path = os.fspath(self.root / POINTER)  # a str: no Path object per check
        self._pointer_stat: tuple[int, int, int] | None = self._stat_pointer()
        self._next_check = 0.0  # time.monotonic() of the next allowed pointer check
        self._refused: str | None = None
        self._calls = 0
        self.swaps: list[dict[str, Any]] = []
        self.raw: deque[list[float]] = deque(maxlen=self.predictor.seq_len)
        self._since_nonfinite = 0
        self._ring = np.zeros((0, 0), dtype=np.float32)
        self._windows: list[Any] = []
        self._pos = 0
        self._rebuild_ring()
        self.predictions = 0
        self.failures = 0
        self.last_probability: float | None = None
        # torch's import leaves ~10^6 long-lived objects; move them (and the model) out of the cyclic GC's
        # generations so that full collections during the run do not walk them (they were p99 spikes of ms)
        gc.freeze()
        log.info("ml strategy: model %s (%s, %d features, seq_len %d, horizon %d) from %s", self.predictor.version,
                 self.predictor.arch, len(self.names), self.predictor.seq_len, self.predictor.horizon,
                 self.predictor.files.path)

    # --- interface ---------------------------------------------------------------------------------------------
    def required_features(self) -> tuple[str, ...]:
        return self.names

    def warmup_candles(self, feature_lookback: int) -> int:
        """Features need their lookback, then the window needs ``seq_len`` feature vectors."""
        return feature_lookback + self.predictor.seq_len

    def on_candle(self, candle: Candle, features: dict[str, float], position: PositionView | None) -> Signal:
        self._calls += 1
        if self.reload_every and self._calls % self.reload_every == 0:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + self.reload_min_seconds
                self._maybe_swap(candle.ts)
        if self._push(self._vector(features)) < self.predictor.seq_len:
            return HOLD
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            return HOLD
        predictor = self.predictor
        started = time.perf_counter()
        try:
            p = predictor.predict(self._windows[self._pos])
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"model returned {p!r}")
        except Exception as exc:  # noqa: BLE001 - any failure of the model is a prediction failure
            self.failures += 1
            log.error("prediction failed at ts=%d with model %s: %s", candle.ts, predictor.version, exc)
            if breaker is not None:
                breaker.record_failure(str(exc)[:200])
            return HOLD
        duration = time.perf_counter() - started
        if breaker is not None:
            breaker.record_success()
        self.predictions += 1
        self.last_probability = p
        signal = self.decide(p, position is not None)
        return Signal(signal.side, signal.confidence, signal.strength, signal.reason,
                      Prediction(candle.ts, p, predictor.version, duration))

    def decide(self, p: float, has_position: bool) -> Signal:
        """The gating described in the module docstring."""
        threshold = self.threshold
        up = p >= threshold
        down = 1.0 - p >= threshold
        if not up and not (down and has_position):
            return HOLD
        confidence = p if up else 1.0 - p
        strength = min(1.0, max(0.0, (confidence - threshold) / (1.0 - threshold)))
        if strength < self.min_strength:
            return HOLD
        level, _ = strength_level(strength)
        side = Side.BUY if up else Side.SELL
        return Signal(side, confidence, strength, f"ml_{'up' if up else 'down'}_{level.lower()}")

    # --- the rolling window ------------------------------------------------------------------------------------
    def _push(self, vector: Any) -> int:
        """Append one raw vector; returns how many consecutive finite vectors end the window."""
        self.raw.append(vector)
        row, finite = self.predictor.scale_checked(vector)
        if finite:
            self._since_nonfinite += 1
        else:
            self._since_nonfinite = 0
        self._write(row)
        return min(self._since_nonfinite, len(self.raw))

    def _write(self, row: list[float]) -> None:
        seq = self.predictor.seq_len
        pos = self._pos + 1
        if pos == seq:
            pos = 0
        ring = self._ring
        ring[pos] = row
        ring[pos + seq] = ring[pos]
        self._pos = pos
        # window = ring[pos + 1 : pos + 1 + seq]: oldest first, newest (just written) last; self._windows[pos]
        # is that slice as a flat float32 torch view sharing the ring's memory (no copy, no conversion per candle)

    def _rebuild_ring(self) -> None:
        """Re-scale the raw buffer with the current model's scaler (start, resume, hot swap)."""
        predictor = self.predictor
        seq = predictor.seq_len
        if self.raw.maxlen != seq:
            self.raw = deque(list(self.raw)[-seq:], maxlen=seq)
        import torch

        self._ring = ring = np.zeros((2 * seq, len(self.names)), dtype=np.float32)
        self._windows = [torch.from_numpy(ring[pos + 1:pos + 1 + seq]).reshape(-1) for pos in range(seq)]
        self._pos = seq - 1
        for vector in self.raw:
            self._write(predictor.scale(vector))

    # --- hot swap ------------------------------------------------------------------------------------------------
    def _stat_pointer(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._pointer_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _maybe_swap(self, ts: int | None) -> None:
        stat = self._stat_pointer()
        if stat == self._pointer_stat:
            return
        self._pointer_stat = stat
        try:
            files = resolve(self.root)
        except ModelError as exc:
            self._refuse(str(exc))
            return
        if files.version == self.predictor.version:
            return
        self._swap_to(files.version, ts)

    def _swap_to(self, version: str, ts: int | None) -> bool:
        try:
            candidate = _load_predictor(self.root, version)
        except ModelError as exc:
            self._refuse(str(exc))
            return False
        if candidate.feature_names != self.names:
            self._refuse(f"model {version} uses features {list(candidate.feature_names)}, the running worker "
                         f"computes {list(self.names)}; restart the worker to change the feature list")
            return False
        old = self.predictor.version
        self.predictor = candidate
        self._rebuild_ring()
        self._refused = None
        self.swaps.append({"ts": ts, "from": old, "to": version})
        log.warning("ml model hot-swapped at candle ts=%s: %s -> %s (decisions use the new model from this "
                    "candle on)", ts, old, version)
        return True

    def _refuse(self, why: str) -> None:
        if why != self._refused:
            log.error("refusing new model, keeping %s: %s", self.predictor.version, why)
            self._refused = why

    # --- state ---------------------------------------------------------------------------------------------------
    def state(self) -> Any:
        return {"model_version": self.predictor.version, "raw": [list(v) for v in self.raw],
                "since_nonfinite": self._since_nonfinite, "calls": self._calls, "predictions": self.predictions,
                "swaps": self.swaps}

    def load_state(self, state: Any) -> None:
        if not state:
            return
        version = state["model_version"]
        if version != self.predictor.version:
            # the run was using another version when it checkpointed: continue with it for identical decisions
            if self._swap_to(version, None):
                self._pointer_stat = None  # re-read the pointer at the next check: a newer version may be current
                self._next_check = 0.0
            else:
                log.warning("checkpoint used model %s, which is not loadable now; continuing with %s",
                            version, self.predictor.version)
        self.raw = deque(state["raw"], maxlen=self.predictor.seq_len)
        self._since_nonfinite = state["since_nonfinite"]
        self._calls = state["calls"]
        self.predictions = state["predictions"]
        self.swaps = state["swaps"]
        self._rebuild_ring()

    def status(self) -> dict[str, Any]:
        predictor = self.predictor
        return {**predictor.describe(), "model_age_seconds": round(predictor.age_seconds(), 1),
                "model_swaps": len(self.swaps), "predictions": self.predictions, "prediction_failures": self.failures,
                "last_probability": self.last_probability, "min_confidence_threshold": self.threshold,
                "min_signal_strength": self.min_strength, "hot_swap": bool(self.reload_every)}
