"""ML benchmarks: per-candle inference latency, replay throughput with --strategy ml, RSS with the model loaded.

    python benchmarks/ml_inference.py [--data ../shared/data/binance_BTC-USDT_1m.csv] [--model DIR] [--no-full-run]

Runs on one CPU thread (TORCH_THREADS=1). Prints one JSON object per measurement. Latency is measured twice over
the same candles: wall time per ``on_candle`` (perf_counter) and CPU time of the calling thread per call
(thread_time_ns, which excludes time the process waited for a CPU on a loaded machine). The last measurement runs
the real worker, ``papertrader run --strategy ml --source replay`` with its HTTP/WebSocket services, in a child
process: candles/s from its summary (candles / duration_s, wall), its CPU time, and its peak RSS (ru_maxrss, the
number ``/usr/bin/time -v`` prints as "Maximum resident set size"), in MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
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
    parser.add_argument("--no-full-run", action="store_true", help="skip the papertrader run child process")
    args = parser.parse_args()
    if not args.data.exists():
        args.data = root / "worker" / "papertrader" / "data" / "sample_BTC-USDT_1m.csv"
    rss_start = rss_mb()

    from papertrader.config import load_settings
    from papertrader.engine.pipeline import Engine
    from papertrader.engine.runner import build_breakers
    from papertrader.features import FeatureEngine
    from papertrader.ledger.store import LedgerStore
    from papertrader.market.candle import Candle
    from papertrader.market.candle_file import CandleFileReader
    from papertrader.strategy.ml import MlStrategy
    from papertrader.strategy.sma_cross import SmaCross

    tmp = Path(tempfile.mkdtemp(prefix="ml-bench-"))
    flags = {"strategy": "ml", "state_dir": tmp / "a", "symbol": "BTC-USDT", "model": args.model}
    settings = load_settings({k: v for k, v in flags.items() if v is not None})

    # 1. latency of on_candle (scale the new vector, update the window, run the model, gate) on one thread
    strategy = MlStrategy(settings.ml)
    rss_model = rss_mb()  # before the benchmark loads the candle file into memory
    reader = CandleFileReader(args.data)
    candles = [c for c in reader.read(args.candles or 10**7) if isinstance(c, Candle)]  # bad rows out
    reader.close()
    def latency(strategy_obj: MlStrategy, clock) -> tuple[np.ndarray, np.ndarray]:
        engine = FeatureEngine(strategy_obj.required_features())
        lat, model_lat = [], []
        for candle in candles[:20000]:
            values = engine.update(candle)
            if engine.count >= engine.lookback:
                t0 = clock()
                signal = strategy_obj.on_candle(candle, values, None)
                lat.append(clock() - t0)
                if signal.prediction is not None:
                    model_lat.append(signal.prediction.duration_s)
        return np.array(lat[200:]), np.array(model_lat[200:]) * 1e6

    lat_s, model_us = latency(strategy, time.perf_counter)
    lat_us = lat_s * 1e6
    cpu_us = latency(MlStrategy(settings.ml), time.thread_time_ns)[0] / 1e3
    print(json.dumps({"measure": "inference_per_candle", "threads": settings.torch_threads,
                      "model": strategy.predictor.version, "arch": strategy.predictor.arch,
                      "seq_len": strategy.predictor.seq_len, "candles": len(lat_us),
                      "on_candle_p50_us": round(float(np.percentile(lat_us, 50)), 1),
                      "on_candle_p99_us": round(float(np.percentile(lat_us, 99)), 1),
                      "on_candle_p999_us": round(float(np.percentile(lat_us, 99.9)), 1),
                      "on_candle_cpu_p50_us": round(float(np.percentile(cpu_us, 50)), 1),
                      "on_candle_cpu_p99_us": round(float(np.percentile(cpu_us, 99)), 1),
                      "model_only_p50_us": round(float(np.percentile(model_us, 50)), 1),
                      "model_only_p99_us": round(float(np.percentile(model_us, 99)), 1)}))

    # 2. replay throughput through the engine (quality gate, features, strategy, risk, broker, ledger buffers)
    def replay(strategy_obj, state_dir: Path) -> tuple[float, int]:
        s = load_settings({**{k: v for k, v in flags.items() if v is not None}, "state_dir": state_dir,
                           "strategy": strategy_obj.name})
        strategy_obj.bind_breaker(build_breakers(s).breakers["prediction"])
        eng = Engine(s.engine, s.risk, s.exchange, strategy_obj, LedgerStore(state_dir / "state.db"))
        eng.restore()
        t0, c0 = time.perf_counter(), time.process_time()
        for i, candle in enumerate(candles, 1):
            eng.process(candle)
            if i % 2000 == 0:
                eng.commit({})
        eng.commit({})
        return time.perf_counter() - t0, time.process_time() - c0, eng.portfolio.fills

    seconds, cpu, fills = replay(MlStrategy(settings.ml), tmp / "ml")
    print(json.dumps({"measure": "replay_ml", "candles": len(candles), "seconds": round(seconds, 2),
                      "candles_per_s": round(len(candles) / seconds), "cpu_s": round(cpu, 2),
                      "candles_per_cpu_s": round(len(candles) / cpu), "fills": fills}))
    seconds_sma, cpu_sma, _ = replay(SmaCross(settings.sma), tmp / "sma")
    print(json.dumps({"measure": "replay_sma_cross_reference", "candles": len(candles),
                      "candles_per_s": round(len(candles) / seconds_sma),
                      "candles_per_cpu_s": round(len(candles) / cpu_sma)}))
    print(json.dumps({"measure": "rss_mb", "at_start": round(rss_start, 1), "model_loaded": round(rss_model, 1),
                      "after_replays": round(rss_mb(), 1), "note": "engine + ml strategy in one process, "
                      "without the HTTP/WebSocket/notification services"}))
    if not args.no_full_run:
        print(json.dumps(full_run(args.data, tmp / "run", args.model, args.candles)))


def full_run(data: Path, state_dir: Path, model: Path | None = None, candles: int | None = None) -> dict:
    """``papertrader run --strategy ml --source replay`` in a child process (HTTP and WebSocket services on)."""
    cmd = [sys.executable, "-m", "papertrader.cli", "run", "--strategy", "ml", "--source", "replay", "--replay-file",
           str(data), "--state-dir", str(state_dir), "--http-port", "0", "--ws-port", "0"]
    if model is not None:
        cmd += ["--model", str(model)]
    if candles:
        cmd += ["--max-candles", str(candles)]
    # The child's ru_maxrss would include this (large) process's pages from before its exec, so the peak RSS comes
    # from /usr/bin/time (itself a small process) where it exists.
    timer = Path("/usr/bin/time")
    rss_file = state_dir.parent / "maxrss.txt"
    if timer.exists():
        cmd = [str(timer), "-f", "%M", "-o", str(rss_file), *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads((state_dir / "summary.json").read_text())
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    max_rss = round(int(rss_file.read_text().split()[-1]) / 1024, 1) if timer.exists() else None
    return {"measure": "papertrader_run_ml", "candles": summary["candles"], "duration_s": summary["duration_s"],
            "candles_per_s": round(summary["candles"] / summary["duration_s"]), "process_wall_s": round(wall, 2),
            "process_cpu_s": round(cpu, 2), "max_rss_mib": max_rss,
            "note": "candles/s = summary candles / duration_s (the run loop, wall); process_* include startup"}


if __name__ == "__main__":
    os.environ.setdefault("TORCH_THREADS", "1")
    main()
