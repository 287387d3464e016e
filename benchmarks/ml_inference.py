"""ML benchmarks: per-candle inference latency, replay throughput with --strategy ml, RSS with the model loaded.

    python benchmarks/ml_inference.py [--data ../shared/data/binance_BTC-USDT_1m.csv] [--model DIR]

Runs on one CPU thread (TORCH_THREADS=1). Prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data" / "binance_BTC-USDT_1m.csv")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--candles", type=int, default=None)
    args = parser.parse_args()
    if not args.data.exists():
        args.data = root / "worker" / "papertrader" / "data" / "sample_BTC-USDT_1m.csv"
    rss_start = rss_mb()

    from papertrader.config import load_settings
    from papertrader.engine.pipeline import Engine
    from papertrader.engine.runner import build_breakers
    from papertrader.features import FeatureEngine
    from papertrader.ledger.store import LedgerStore
    from papertrader.market.candle_file import CandleFileReader
    from papertrader.strategy.ml import MlStrategy
    from papertrader.strategy.sma_cross import SmaCross

    tmp = Path(tempfile.mkdtemp(prefix="ml-bench-"))
    flags = {"strategy": "ml", "state_dir": tmp / "a", "symbol": "BTC-USDT", "model": args.model}
    settings = load_settings({k: v for k, v in flags.items() if v is not None})

    # 1. latency of on_candle (scale the new vector, update the window, run the model, gate) on one thread
    strategy = MlStrategy(settings)
    rss_model = rss_mb()  # before the benchmark loads the candle file into memory
    reader = CandleFileReader(args.data)
    candles = [c for c in reader.read(args.candles or 10**7) if type(c) is not tuple or len(c) == 6]
    reader.close()
    engine = FeatureEngine(strategy.required_features())
    lat, model_lat = [], []
    for candle in candles[:20000]:
        values = engine.update(candle)
        if engine.count >= engine.lookback:
            t0 = time.perf_counter()
            strategy.on_candle(candle, values, None)
            lat.append(time.perf_counter() - t0)
            if strategy.prediction is not None:
                model_lat.append(strategy.prediction.duration_s)
                strategy.prediction = None
    lat_us = np.array(lat[200:]) * 1e6
    model_us = np.array(model_lat[200:]) * 1e6
    print(json.dumps({"measure": "inference_per_candle", "threads": settings.torch_threads,
                      "model": strategy.predictor.version, "arch": strategy.predictor.arch,
                      "seq_len": strategy.predictor.seq_len, "candles": len(lat_us),
                      "on_candle_p50_us": round(float(np.percentile(lat_us, 50)), 1),
                      "on_candle_p99_us": round(float(np.percentile(lat_us, 99)), 1),
                      "model_only_p50_us": round(float(np.percentile(model_us, 50)), 1),
                      "model_only_p99_us": round(float(np.percentile(model_us, 99)), 1)}))

    # 2. replay throughput through the engine (quality gate, features, strategy, risk, broker, ledger buffers)
    def replay(strategy_obj, state_dir: Path) -> tuple[float, int]:
        s = load_settings({**{k: v for k, v in flags.items() if v is not None}, "state_dir": state_dir,
                           "strategy": strategy_obj.name})
        strategy_obj.bind_breaker(build_breakers(s).breakers["prediction"])
        eng = Engine(s, strategy_obj, LedgerStore(state_dir / "state.db"))
        eng.restore()
        t0 = time.perf_counter()
        for i, candle in enumerate(candles, 1):
            eng.process(candle)
            if i % 2000 == 0:
                eng.commit({})
        eng.commit({})
        return time.perf_counter() - t0, eng.portfolio.fills

    seconds, fills = replay(MlStrategy(settings), tmp / "ml")
    print(json.dumps({"measure": "replay_ml", "candles": len(candles), "seconds": round(seconds, 2),
                      "candles_per_s": round(len(candles) / seconds), "fills": fills}))
    seconds_sma, _ = replay(SmaCross(settings), tmp / "sma")
    print(json.dumps({"measure": "replay_sma_cross_reference", "candles": len(candles),
                      "candles_per_s": round(len(candles) / seconds_sma)}))
    print(json.dumps({"measure": "rss_mb", "at_start": round(rss_start, 1), "model_loaded": round(rss_model, 1),
                      "after_replays": round(rss_mb(), 1), "note": "engine + ml strategy in one process, "
                      "without the HTTP/WebSocket/notification services"}))


if __name__ == "__main__":
    os.environ.setdefault("TORCH_THREADS", "1")
    main()
