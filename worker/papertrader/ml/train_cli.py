"""``papertrader train``: fit a model on candle files with walk-forward evaluation and write a model directory.

Example::

    papertrader train --data ../shared/data/binance_BTC-USDT_1m.csv --symbol BTC-USDT --out models/btc --seed 42

Exit codes: 0 trained, 2 bad input (missing/unreadable file, too little data, bad option), 1 unexpected error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    from papertrader.ml.model import ARCHITECTURES
    from papertrader.ml.train import ML_DEFAULT_FEATURES

    p = argparse.ArgumentParser(prog="papertrader train", description="Train an ml-strategy model walk-forward.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, type=Path, metavar="FILE",
                   help="candle CSV file(s), in time order (timestamp_ms,open,high,low,close,volume)")
    p.add_argument("--symbol", default="BTC-EUR", help="market the model is for (goes into the version id)")
    p.add_argument("--out", required=True, type=Path, help="model directory (versions + 'current' pointer)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--interval", default="1m", help="candle interval of the files")
    p.add_argument("--features", default=",".join(ML_DEFAULT_FEATURES), help="comma-separated feature names")
    p.add_argument("--horizon", type=int, default=15, help="label horizon h in candles")
    p.add_argument("--label-threshold", type=float, default=0.0,
                   help="label = 1 if close[t+h]/close[t]-1 > this")
    p.add_argument("--arch", choices=ARCHITECTURES, default="tconv")
    p.add_argument("--seq-len", type=int, default=32, help="feature vectors per input window")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--test-fraction", type=float, default=0.4, help="share of the data in the test folds")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of each fold's pre-test data for validation")
    p.add_argument("--purge", type=int, default=None, help="default and minimum: horizon + lookback + seq_len")
    p.add_argument("--embargo", type=int, default=None, help="candles between test folds (default: horizon)")
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs")
    p.add_argument("--patience", type=int, default=4, help="early-stopping patience in epochs")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (results are reproducible per count)")
    p.add_argument("--max-candles", type=int, default=None, help="use only the last N accepted candles")
    p.add_argument("--no-trading-eval", action="store_true", help="skip the per-fold engine trading runs")
    p.add_argument("--demo", action="store_true", help="mark the model card as a demo model")
    p.add_argument("--no-progress", action="store_true")
    return p


def _check(args: argparse.Namespace) -> str | None:
    positive = {"--horizon": args.horizon, "--seq-len": args.seq_len, "--hidden": args.hidden,
                "--folds": args.folds, "--epochs": args.epochs, "--patience": args.patience,
                "--batch-size": args.batch_size, "--threads": args.threads}
    for flag, value in positive.items():
        if value < 1:
            return f"{flag} {value}: must be >= 1"
    for flag, value in {"--test-fraction": args.test_fraction, "--val-fraction": args.val_fraction}.items():
        if not 0 < value < 1:
            return f"{flag} {value}: must be between 0 and 1"
    if not 0 <= args.dropout < 1:
        return f"--dropout {args.dropout}: must be in [0, 1)"
    if args.lr <= 0:
        return f"--lr {args.lr}: must be > 0"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    problem = _check(args)
    if problem:
        print(f"papertrader train: {problem}", file=sys.stderr)
        return EXIT_INPUT

    from papertrader.config import ConfigError, load_settings
    from papertrader.features import UnknownFeatureError, parse_feature
    from papertrader.market.candle import INTERVAL_MS
    from papertrader.market.candle_file import CandleFileError
    from papertrader.ml.dataset import DatasetError, load_candles

    features = tuple(name.strip() for name in args.features.split(",") if name.strip())
    try:
        for name in features:
            parse_feature(name)
        if args.interval not in INTERVAL_MS:
            raise ConfigError(f"--interval {args.interval}: allowed values are {', '.join(INTERVAL_MS)}")
        settings = load_settings({"symbol": args.symbol, "candle_interval": args.interval})
        data = load_candles(args.data, settings.interval_ms,
                            {"window": settings.quality_window, "outlier_z": settings.quality_outlier_z,
                             "reject_z": settings.quality_reject_z,
                             "enabled": settings.enable_data_quality_checks})
    except (UnknownFeatureError, ConfigError, CandleFileError, DatasetError) as exc:
        print(f"papertrader train: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.max_candles is not None:
        data.candles = data.candles[-args.max_candles:]
    if not data.candles:
        why = f": {data.rejection_note}" if data.rejection_note else ""
        print(f"papertrader train: no usable candles in {', '.join(map(str, args.data))}{why}", file=sys.stderr)
        return EXIT_INPUT

    from papertrader.ml import train

    cfg = train.TrainConfig(
        symbol=settings.symbol, interval=args.interval, features=features, horizon=args.horizon,
        label_threshold=args.label_threshold, arch=args.arch, seq_len=args.seq_len, hidden=args.hidden,
        dropout=args.dropout, folds=args.folds, test_fraction=args.test_fraction, val_fraction=args.val_fraction,
        purge=args.purge, embargo=args.embargo, epochs=args.epochs, patience=args.patience,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
        device=args.device, threads=args.threads, trading_eval=not args.no_trading_eval,
        progress=not args.no_progress, command=["papertrader", "train", *(argv if argv is not None else sys.argv[1:])],
    )
    try:
        meta = train.run(cfg, data, args.out, say=lambda m: print(f"papertrader train: {m}", file=sys.stderr),
                         demo=args.demo)
    except (train.TrainingError, DatasetError, ConfigError) as exc:
        print(f"papertrader train: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(train.format_table(meta["folds"]))
    s = meta["summary"]
    print(f"\nmodel {meta['model_version']} written to {meta['path']} (current -> {meta['model_version']})")
    print(f"mean AUC {s['mean_auc']:.3f}, accuracy {s['mean_accuracy']:.3f} vs majority "
          f"{s['mean_majority_accuracy']:.3f}, log loss {s['mean_log_loss']:.4f} vs base {s['mean_base_log_loss']:.4f}"
          + (f", trading {s['sum_return_pct']:.2f}% net over the test folds" if "sum_return_pct" in s else ""))
    print(f"weights sha256 {meta['weights_sha256']}; trained in {meta['timing']['total_seconds']:.1f} s "
          f"on {meta['device']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
