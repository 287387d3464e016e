"""Walk-forward training and evaluation, and the final model.

Fold layout (indices are accepted candles; a sample at t is the window ending at t with label horizon h)::

    | train ............ | purge | val .... | purge | test fold k | embargo | test fold k+1 ...

- purge P >= h + lookback + seq_len (default exactly that): no training label window (t, t+h] overlaps any raw
  candle used by a validation/test sample's inputs, and vice versa.
- embargo E (default h) separates consecutive test folds, so no test label reaches into the next fold.
- Train and validation lie strictly before each test fold (walk-forward, expanding window); the scaler is fitted
  on the fold's training rows only; early stopping watches the validation log loss.
- The deployed model is trained the same way on all data (validation = the most recent part) and is not
  evaluated on anything: the fold metrics are the honest estimate of its quality.
"""

from __future__ import annotations

import copy
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from papertrader.errors import PapertraderError
from papertrader.features.engine import DEFAULT_FEATURES
from papertrader.market.candle import Candle
from papertrader.ml import artifact
from papertrader.ml.dataset import CandleSet, Dataset, build_dataset, label_definition, windows
from papertrader.ml.metrics import auc, classification_report, log_loss
from papertrader.ml.model import build_model
from papertrader.ml.scaling import apply_scaler, fit_scaler

#: The default inputs: the scale-free subset of the engine's DEFAULT_FEATURES (ema_12 and the MACD family are in
#: price units, so a model trained on one price level would be mis-fed at another).
ML_DEFAULT_FEATURES: tuple[str, ...] = tuple(
    name for name in DEFAULT_FEATURES if name not in ("ema_12", "macd", "macd_signal", "macd_hist"))

MIN_TRAIN = 500
MIN_VAL = 100
MIN_TEST = 100


@dataclass
class TrainConfig:
    symbol: str = "BTC-EUR"
    interval: str = "1m"
    features: tuple[str, ...] = ML_DEFAULT_FEATURES
    horizon: int = 15
    label_threshold: float = 0.0
    arch: str = "tconv"
    seq_len: int = 32
    hidden: int = 32
    dropout: float = 0.1
    folds: int = 4
    test_fraction: float = 0.4
    val_fraction: float = 0.2
    purge: int | None = None  # default: horizon + lookback + seq_len
    embargo: int | None = None  # default: horizon
    epochs: int = 20
    patience: int = 4
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-3
    seed: int = 42
    device: str = "auto"
    threads: int = 1
    trading_eval: bool = True
    progress: bool = True
    command: list[str] = field(default_factory=list)


@dataclass
class Fold:
    index: int
    train: tuple[int, int]  # [start, end) candle indices
    val: tuple[int, int]
    test: tuple[int, int]


class TrainingError(PapertraderError, ValueError):
    """Training cannot run with this data/configuration (one clear line)."""


def resolve_device(requested: str, say: Callable[[str], None]) -> torch.device:
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        say("--device cuda: no CUDA device is available to this torch build "
            f"({torch.__version__}); falling back to cpu")
    return torch.device("cpu")


def make_folds(ds: Dataset, cfg: TrainConfig, purge: int, embargo: int) -> list[Fold]:
    ok = np.flatnonzero(ds.sample_ok)
    n_candles = len(ds.ts)
    if len(ok) == 0:
        raise TrainingError(_too_little(n_candles, ds, cfg, purge, embargo))
    first, end = int(ok[0]), int(ok[-1]) + 1
    span = end - first
    test_total = int(span * cfg.test_fraction)
    block = (test_total - (cfg.folds - 1) * embargo) // cfg.folds
    folds = []
    test_start0 = end - test_total
    for k in range(cfg.folds):
        ts = test_start0 + k * (block + embargo)
        te = ts + block
        val_end = ts - purge
        val_len = int((val_end - first) * cfg.val_fraction)
        val_start = val_end - val_len
        train_end = val_start - purge
        folds.append(Fold(k + 1, (first, train_end), (val_start, val_end), (ts, te)))
    for fold in folds:
        sizes = [_count(ds, fold.train), _count(ds, fold.val), _count(ds, fold.test)]
        if sizes[0] < MIN_TRAIN or sizes[1] < MIN_VAL or sizes[2] < MIN_TEST:
            raise TrainingError(_too_little(n_candles, ds, cfg, purge, embargo))
    return folds


def _count(ds: Dataset, rng: tuple[int, int]) -> int:
    start, end = rng
    return int(ds.sample_ok[max(start, 0):max(end, 0)].sum()) if end > start else 0


def min_candles(lookback: int, cfg: TrainConfig, purge: int, embargo: int) -> int:
    """Accepted candles needed so that the first fold has MIN_TRAIN training and MIN_VAL validation samples and
    every test fold MIN_TEST samples (span S of sample candles, test fraction tf, validation fraction vf)."""
    tf, vf, k = cfg.test_fraction, cfg.val_fraction, cfg.folds
    span = max(((MIN_TRAIN + purge) / (1 - vf) + purge) / (1 - tf),
               (MIN_VAL / vf + purge) / (1 - tf),
               (k * MIN_TEST + (k - 1) * embargo) / tf)
    return int(math.ceil(span * 1.02)) + lookback + cfg.seq_len + cfg.horizon


def _too_little(n: int, ds: Dataset, cfg: TrainConfig, purge: int, embargo: int) -> str:
    need = min_candles(ds.lookback, cfg, purge, embargo)
    return (f"too little data to train: {n} usable candles; with lookback {ds.lookback}, seq_len {cfg.seq_len}, "
            f"horizon {cfg.horizon}, purge {purge}, {cfg.folds} folds of >= {MIN_TEST} test samples and >= "
            f"{MIN_TRAIN} training samples this needs about {need} candles (use more data, or fewer --folds, "
            f"a shorter --horizon/--seq-len)")


def _indices(ds: Dataset, rng: tuple[int, int]) -> np.ndarray:
    start, end = rng
    return np.flatnonzero(ds.sample_ok[start:end]) + start


@dataclass
class FitResult:
    model: torch.nn.Module
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    seconds: float


def fit(cfg: TrainConfig, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        device: torch.device, progress: tqdm | None, desc: str) -> FitResult:
    """Train with early stopping on validation log loss; deterministic for a seed on CPU."""
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, x_train.shape[2], cfg.seq_len, cfg.hidden, cfg.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    xt = torch.from_numpy(x_train).to(device)
    yt = torch.from_numpy(y_train.astype(np.float32)).to(device)
    xv = torch.from_numpy(x_val).to(device)
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(len(xt), generator=gen).to(device)
        for start in range(0, len(xt), cfg.batch_size):
            batch = perm[start:start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            opt.step()
        val_loss = log_loss(y_val, predict_batch(model, xv))
        if progress is not None:
            progress.set_postfix_str(f"{desc} epoch {epoch} val_loss {val_loss:.4f}")
            progress.update(1)
        if val_loss < best[0] - 1e-6:
            best = (val_loss, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= cfg.patience:
            break
    if progress is not None:
        progress.update(cfg.epochs - epoch)
    model.load_state_dict(best[2])
    model.eval()
    return FitResult(model.cpu(), best[1], best[0], epoch, time.perf_counter() - started)


def predict_batch(model: torch.nn.Module, x: torch.Tensor | np.ndarray, batch: int = 4096) -> np.ndarray:
    was_training = model.training
    model.eval()
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            out.append(torch.sigmoid(model(x[start:start + batch])).double().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(cfg: TrainConfig, data: CandleSet, out: Path, say: Callable[[str], None] = print, demo: bool = False
        ) -> dict[str, Any]:
    """Train, evaluate walk-forward, write the versioned model directory. Returns the metadata."""
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(cfg.device, say)
    candles = data.candles
    started = time.perf_counter()
    ds = build_dataset(candles, cfg.features, cfg.seq_len, cfg.horizon, cfg.label_threshold)
    feature_seconds = time.perf_counter() - started
    min_purge = cfg.horizon + ds.lookback + cfg.seq_len
    purge = min_purge if cfg.purge is None else cfg.purge
    if purge < min_purge:
        raise TrainingError(f"--purge {purge}: must be >= horizon + feature lookback + seq_len = {min_purge}")
    embargo = cfg.horizon if cfg.embargo is None else cfg.embargo
    folds = make_folds(ds, cfg, purge, embargo)
    total_epochs = cfg.epochs * (len(folds) + 1)
    bar = tqdm(total=total_epochs, desc="train", unit="epoch", disable=not cfg.progress, file=sys.stderr,
               dynamic_ncols=True)
    fold_reports: list[dict[str, Any]] = []
    pooled: list[tuple[np.ndarray, np.ndarray]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="papertrader-folds-") as tmp:
            for fold in folds:
                fold_reports.append(_run_fold(cfg, data, ds, fold, device, bar, Path(tmp), pooled))
            # the deployed model: same recipe, validation = the most recent part of the data
            ok = np.flatnonzero(ds.sample_ok)
            first, end = int(ok[0]), int(ok[-1]) + 1
            val_len = int((end - first) * cfg.val_fraction)
            final_fold = Fold(0, (first, end - val_len - purge), (end - val_len, end), (end, end))
            scaler, fit_result, _ = _fit_fold(cfg, ds, final_fold, device, bar, "final")
    finally:
        bar.close()
    state = {k: v.detach().cpu().contiguous() for k, v in fit_result.model.state_dict().items()}
    weights_sha = artifact.tensor_sha256(state)
    version = f"{cfg.symbol.lower()}-{weights_sha[:12]}"
    summary = _summarise(fold_reports)
    if pooled:
        summary["pooled_auc"] = auc(np.concatenate([y for y, _ in pooled]), np.concatenate([p for _, p in pooled]))
    metadata = {
        "schema_version": artifact.ARTIFACT_SCHEMA_VERSION,
        "feature_code_version": artifact.FEATURE_CODE_VERSION,
        "model_version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "demo": demo,
        "symbol": cfg.symbol,
        "interval": cfg.interval,
        "arch": cfg.arch,
        "feature_names": list(ds.feature_names),
        "feature_lookback": ds.lookback,
        "seq_len": cfg.seq_len,
        "hidden": cfg.hidden,
        "dropout": cfg.dropout,
        "horizon": cfg.horizon,
        "label": {"definition": label_definition(cfg.horizon, cfg.label_threshold),
                  "horizon": cfg.horizon, "threshold": cfg.label_threshold},
        "scaler": scaler,
        "weights_sha256": weights_sha,
        "data": {
            "files": [{k: v for k, v in f.items() if k != "path"} for f in data.files],
            "accepted_candles": len(candles),
            "rejected_rows": data.rejected,
            "first_ts": candles[0].ts, "last_ts": candles[-1].ts,
            "time_range": [_iso(candles[0].ts), _iso(candles[-1].ts)],
            "samples": int(ds.sample_ok.sum()),
            "base_rate": float(np.nanmean(ds.y)),
        },
        "walk_forward": {"folds": len(folds), "purge": purge, "embargo": embargo,
                         "test_fraction": cfg.test_fraction, "val_fraction": cfg.val_fraction,
                         "scheme": "expanding window; train | purge | val | purge | test; scaler per fold"},
        "training": {k: v for k, v in asdict(cfg).items()
                     if k in ("seed", "epochs", "patience", "batch_size", "lr", "weight_decay", "threads")},
        "device": str(device),
        "trading_settings": _trading_settings(cfg),
        "final_model": {"train_range": [_iso(int(ds.ts[final_fold.train[0]])),
                                        _iso(int(ds.ts[final_fold.train[1] - 1]))],
                        "val_range": [_iso(int(ds.ts[final_fold.val[0]])), _iso(int(ds.ts[final_fold.val[1] - 1]))],
                        "best_epoch": fit_result.best_epoch, "val_log_loss": fit_result.best_val_loss,
                        "seconds": round(fit_result.seconds, 2)},
        "folds": fold_reports,
        "summary": summary,
        "timing": {"features_seconds": round(feature_seconds, 2),
                   "total_seconds": round(time.perf_counter() - started, 2)},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "papertrader": _package_version()},
        "command": cfg.command,
    }
    table = format_table(fold_reports)
    texts = {artifact.EVALUATION: f"# Walk-forward evaluation of {version}\n\n{table}\n",
             artifact.CARD: model_card(metadata, table)}
    path = artifact.write_version(out, version, state, metadata, texts)
    metadata["path"] = str(path)
    return metadata


def _trading_settings(cfg: TrainConfig) -> dict[str, Any]:
    from papertrader.config import load_settings

    s = load_settings({"symbol": cfg.symbol})
    return {"min_confidence_threshold": s.min_confidence_threshold, "min_signal_strength": s.min_signal_strength,
            "fee_rate": str(s.fee_rate), "slippage_pct": str(s.slippage_pct),
            "base_position_size": s.base_position_size, "take_profit_pct": s.take_profit_pct,
            "stop_loss_pct": s.stop_loss_pct}


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("papertrader")
    except Exception:  # noqa: BLE001 - no installed metadata (a source tree)
        return "unknown"


def _fit_fold(cfg: TrainConfig, ds: Dataset, fold: Fold, device: torch.device, bar: tqdm | None, desc: str
              ) -> tuple[dict[str, Any], FitResult, np.ndarray]:
    train_rows = ds.features[max(fold.train[0] - cfg.seq_len + 1, 0):fold.train[1]]
    scaler = fit_scaler(train_rows)
    scaled = apply_scaler(ds.features, scaler)
    tr, va = _indices(ds, fold.train), _indices(ds, fold.val)
    result = fit(cfg, windows(scaled, tr, cfg.seq_len), ds.y[tr], windows(scaled, va, cfg.seq_len), ds.y[va],
                 device, bar, desc)
    return scaler, result, scaled


def _run_fold(cfg: TrainConfig, data: CandleSet, ds: Dataset, fold: Fold, device: torch.device, bar: tqdm | None,
              tmp: Path, pooled: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    scaler, result, scaled = _fit_fold(cfg, ds, fold, device, bar, f"fold {fold.index}")
    te = _indices(ds, fold.test)
    p = predict_batch(result.model, windows(scaled, te, cfg.seq_len))
    pooled.append((ds.y[te], p))
    from papertrader.config import load_settings

    threshold = load_settings({"symbol": cfg.symbol}).min_confidence_threshold
    report: dict[str, Any] = {
        "fold": fold.index,
        "train": [_iso(int(ds.ts[fold.train[0]])), _iso(int(ds.ts[fold.train[1] - 1]))],
        "val": [_iso(int(ds.ts[fold.val[0]])), _iso(int(ds.ts[fold.val[1] - 1]))],
        "test": [_iso(int(ds.ts[fold.test[0]])), _iso(int(ds.ts[fold.test[1] - 1]))],
        "n_train": _count(ds, fold.train), "n_val": _count(ds, fold.val),
        "best_epoch": result.best_epoch, "val_log_loss": result.best_val_loss,
        "threshold": threshold,
        **classification_report(ds.y[te], p, threshold),
    }
    if cfg.trading_eval:
        report["trading"] = trade_fold(cfg, data.candles, ds, fold, result.model, scaler, tmp)
    return report


def trade_fold(cfg: TrainConfig, candles: Sequence[Candle], ds: Dataset, fold: Fold, model: torch.nn.Module,
               scaler: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Out-of-sample run of the ``ml`` strategy through the engine's own pipeline, broker and fees on the test
    fold. The candles before the fold that only warm up features and window lie inside the purge."""
    from papertrader.config import load_settings
    from papertrader.engine.pipeline import Engine
    from papertrader.engine.runner import build_breakers
    from papertrader.ledger.store import LedgerStore
    from papertrader.strategy.ml import MlStrategy

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    sha = artifact.tensor_sha256(state)
    version = f"fold{fold.index}-{sha[:12]}"
    meta = {"schema_version": artifact.ARTIFACT_SCHEMA_VERSION, "feature_code_version": artifact.FEATURE_CODE_VERSION,
            "model_version": version, "arch": cfg.arch, "feature_names": list(ds.feature_names),
            "seq_len": cfg.seq_len, "hidden": cfg.hidden, "dropout": cfg.dropout, "horizon": cfg.horizon,
            "scaler": scaler, "weights_sha256": sha, "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    model_dir = artifact.write_version(tmp / f"fold{fold.index}", version, state, meta, {}, make_current=False)
    state_dir = tmp / f"state{fold.index}"
    settings = load_settings({"symbol": cfg.symbol, "strategy": "ml", "model": str(model_dir),
                              "state_dir": str(state_dir), "candle_interval": cfg.interval,
                              "model_reload_check_candles": 0})
    strategy = MlStrategy(settings.ml)
    strategy.bind_breaker(build_breakers(settings.breakers).breakers["prediction"])
    store = LedgerStore(state_dir / "state.db")
    engine = Engine(settings.engine, settings.risk, settings.exchange, strategy, store)
    engine.restore()
    start = fold.test[0] - engine.warmup
    if start < 0 or start < fold.val[1]:
        raise TrainingError(f"fold {fold.index}: warm-up of {engine.warmup} candles does not fit in the purge")
    for candle in candles[start:fold.test[1]]:
        engine.process(candle)
    engine.finish()
    engine.commit({})
    summary = engine.summary()
    store.close()
    initial = float(settings.initial_capital)
    gross = summary["final_equity"] - initial + summary["fees_paid"]
    first_open = candles[fold.test[0]].open
    last_close = candles[fold.test[1] - 1].close
    return {"return_pct": summary["return_pct"], "gross_return_pct": round(100 * gross / initial, 4),
            "fees_paid": summary["fees_paid"], "trades": summary["trades"], "round_trips": summary["round_trips"],
            "win_rate": summary["win_rate"], "max_drawdown_pct": summary["max_drawdown_pct"],
            "buy_and_hold_pct": round(100 * (last_close / first_open - 1), 4),
            "predictions": strategy.predictions}


def _summarise(folds: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str, sub: str | None = None) -> float:
        values = [(f[sub][key] if sub else f[key]) for f in folds if (f.get(sub) if sub else True)]
        values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return float(np.mean(values)) if values else math.nan

    out = {"mean_auc": mean("auc"), "mean_accuracy": mean("accuracy"), "mean_majority_accuracy":
           mean("majority_accuracy"), "mean_log_loss": mean("log_loss"), "mean_base_log_loss": mean("base_log_loss"),
           "buy_signals": int(sum(f["buy_signals"] for f in folds))}
    if folds and "trading" in folds[0]:
        out["sum_return_pct"] = float(sum(f["trading"]["return_pct"] for f in folds))
        out["sum_gross_return_pct"] = float(sum(f["trading"]["gross_return_pct"] for f in folds))
        out["trades"] = int(sum(f["trading"]["trades"] for f in folds))
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(folds: list[dict[str, Any]]) -> str:
    """The per-fold table (markdown), printed by ``papertrader train`` and stored as evaluation.md."""
    head = ["fold", "test period (UTC)", "n", "AUC", "acc", "base", "logloss", "base ll", "buys", "buy prec",
            "buy rec", "sells", "sell prec", "trades", "return %", "gross %", "fees", "B&H %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in folds:
        t = f.get("trading", {})
        row = [f["fold"], f"{f['test'][0]} .. {f['test'][1]}", f["n"], _fmt(f["auc"]), _fmt(f["accuracy"]),
               _fmt(f["majority_accuracy"]), _fmt(f["log_loss"], 4), _fmt(f["base_log_loss"], 4), f["buy_signals"],
               _fmt(f["buy_precision"]), _fmt(f["buy_recall"]), f["sell_signals"], _fmt(f["sell_precision"]),
               t.get("trades", "-"), _fmt(t.get("return_pct"), 2), _fmt(t.get("gross_return_pct"), 2),
               _fmt(t.get("fees_paid"), 2), _fmt(t.get("buy_and_hold_pct"), 2)]
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def model_card(meta: dict[str, Any], table: str) -> str:
    s = meta["summary"]
    demo = ("**This is a demo model** trained on a small sample shipped with the package so that "
            "`papertrader run --strategy ml` works offline. It is not expected to make money.\n\n"
            if meta.get("demo") else "")
    verdict = ("The mean out-of-sample AUC is within 0.03 of 0.5: the model has **no demonstrated predictive "
               "edge** on this data." if abs(s["mean_auc"] - 0.5) <= 0.03 else
               f"Mean out-of-sample AUC {s['mean_auc']:.3f}; judge it against the fees in the trading columns.")
    trading = ""
    if "sum_return_pct" in s:
        trading = (f"- out-of-sample trading through the engine (fee rate {meta['trading_settings']['fee_rate']}, slippage {meta['trading_settings']['slippage_pct']}): "
                   f"{s['trades']} fills, summed net return {s['sum_return_pct']:.2f}% "
                   f"(before fees {s['sum_gross_return_pct']:.2f}%)\n")
    d = meta["data"]
    return f"""# Model card: {meta['model_version']}

{demo}- symbol / interval: {meta['symbol']} / {meta['interval']}
- architecture: {meta['arch']} (seq_len {meta['seq_len']}, hidden {meta['hidden']}), {len(meta['feature_names'])} features
- label: {meta['label']['definition']}
- data: {', '.join(f['name'] for f in d['files'])} ({d['accepted_candles']} candles, {d['time_range'][0]} .. {d['time_range'][1]}), sha256 {', '.join(f['sha256'][:16] for f in d['files'])}...
- base rate of the label: {d['base_rate']:.3f}
- walk-forward: {meta['walk_forward']['folds']} folds, purge {meta['walk_forward']['purge']} candles, embargo {meta['walk_forward']['embargo']} candles
- trained: seed {meta['training']['seed']}, device {meta['device']}, torch {meta['versions']['torch']}

## Honest numbers (out of sample, per fold)

- mean AUC {s['mean_auc']:.3f} (all test folds pooled {s.get('pooled_auc', float('nan')):.3f}), mean accuracy {s['mean_accuracy']:.3f} vs majority-class {s['mean_majority_accuracy']:.3f}, mean log loss {s['mean_log_loss']:.4f} vs base-rate {s['mean_base_log_loss']:.4f}
{trading}
{verdict}

{table}

"buy prec/rec": precision/recall of label 1 among candles with P(up) >= the trading threshold; "sell prec": share of
label 0 among candles with P(up) <= 1 - threshold. "return %" is after the engine's fees and slippage; "gross %"
adds the fees back; "B&H %" is buy-and-hold over the same test period.

## Limits

- The deployed weights were trained on all data up to {meta['final_model']['train_range'][1]} (validation up to
  {meta['final_model']['val_range'][1]}) and were not evaluated on anything; the fold numbers above are the estimate.
- Past out-of-sample results on one market period say little about future periods.
"""
