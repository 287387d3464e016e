"""Replay throughput and decision latency of the engine, against backtesting.py on the same candles.

    python benchmarks/engine_throughput.py                 # 1M candles (generated once, cached)
    python benchmarks/engine_throughput.py --candles 200000 --json out.json

Measured in one run, on one file, with SMA(10)/SMA(30) and a 0.25 % fee:
- papertrader: the full pipeline (quality gate, features, strategy, risk, broker, durable SQLite ledger and CSV
  logs), from reading the CSV to the last commit;
- backtesting.py: ``pd.read_csv`` plus ``Backtest.run`` of the classic SmaCross;
- a bare Python loop (two rolling SMAs, cross detection, batched SQLite writes): the floor of what pure Python does;
- decision latency: candle in -> decision persisted, one candle per commit as a live worker does it.
Throughputs use CPU time of this process (``time.process_time``), so other load on the machine moves them less.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"


def candle_file(count: int, seed: int = 7) -> Path:
    """A cached synthetic 1-minute candle file (the engine's own seeded generator)."""
    from papertrader.market.candle_file import HEADER, format_candle
    from papertrader.market.sources.synthetic import SyntheticSource

    path = DATA / f"synthetic_{count}_seed{seed}_1m.csv"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    print(f"generating {count} candles into {path} (once) ...", file=sys.stderr, flush=True)
    source = SyntheticSource(seed, 60_000, 1_600_000_000_000 - 1_600_000_000_000 % 60_000)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(HEADER)
        left = count
        while left:
            batch = asyncio.run(source.next_batch(min(100_000, left)))
            handle.writelines(format_candle(c) for c in batch)  # type: ignore[arg-type]
            left -= len(batch)
    os.replace(tmp, path)
    return path


def bench_papertrader(path: Path, workdir: Path) -> dict[str, Any]:
    from papertrader.config import load_settings
    from papertrader.engine.runner import WorkerRunner

    settings = load_settings({"source": "replay", "replay_file": path, "state_dir": workdir / "pt",
                              "symbol": "BENCH-EUR", "candle_interval": "1m", "http_port": 0, "ws_port": 0})
    wall, cpu = time.perf_counter(), time.process_time()
    runner = WorkerRunner(settings, console_logs=False)
    summary = asyncio.run(runner.run())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"candles": summary["candles"], "trades": summary["trades"], "cpu_s": cpu, "wall_s": wall,
            "candles_per_s": summary["candles"] / cpu}


def bench_backtesting(path: Path) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import SMA

    class SmaCross(Strategy):
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, 10)
            self.slow = self.I(SMA, self.data.Close, 30)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy(size=0.08)
            elif crossover(self.slow, self.fast):
                self.position.close()

    wall, cpu = time.perf_counter(), time.process_time()
    frame = pd.read_csv(path)
    frame.index = pd.to_datetime(frame["timestamp_ms"], unit="ms")
    frame = frame.rename(columns=str.capitalize)
    stats = Backtest(frame, SmaCross, commission=0.0025, cash=10_000_000, finalize_trades=True).run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"candles": len(frame), "trades": int(stats["# Trades"]), "cpu_s": cpu, "wall_s": wall,
            "candles_per_s": len(frame) / cpu}


def bench_bare_loop(path: Path, workdir: Path) -> dict[str, Any]:
    """Two rolling SMAs and a cross in plain Python, every candle's close written to SQLite in batches."""
    wall, cpu = time.perf_counter(), time.process_time()
    db = sqlite3.connect(workdir / "bare.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE marks (ts INTEGER, close REAL)")
    fast, slow = deque(maxlen=10), deque(maxlen=30)
    fast_sum = slow_sum = 0.0
    prev_above = None
    trades = 0
    batch: list[tuple[int, float]] = []
    with open(path, "rb") as handle:
        handle.readline()
        for line in handle:
            parts = line.split(b",")
            ts, close = int(parts[0]), float(parts[4])
            if len(fast) == 10:
                fast_sum -= fast[0]
            if len(slow) == 30:
                slow_sum -= slow[0]
            fast.append(close)
            slow.append(close)
            fast_sum += close
            slow_sum += close
            if len(slow) == 30:
                above = fast_sum / 10 > slow_sum / 30
                if prev_above is not None and above != prev_above:
                    trades += 1
                prev_above = above
            batch.append((ts, close))
            if len(batch) >= 5000:
                db.executemany("INSERT INTO marks VALUES (?, ?)", batch)
                db.commit()
                batch.clear()
    db.executemany("INSERT INTO marks VALUES (?, ?)", batch)
    db.commit()
    count = db.execute("SELECT COUNT(*) FROM marks").fetchone()[0]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"candles": count, "trades": trades, "cpu_s": cpu, "wall_s": wall, "candles_per_s": count / cpu}


def bench_latency(path: Path, workdir: Path, count: int) -> dict[str, Any]:
    """Candle in -> decision persisted (one commit per candle, as a live worker)."""
    from papertrader.config import load_settings
    from papertrader.engine.runner import WorkerRunner
    from papertrader.market.candle_file import CandleFileReader

    settings = load_settings({"source": "replay", "replay_file": path, "state_dir": workdir / "lat",
                              "symbol": "BENCH-EUR", "candle_interval": "1m"})
    runner = WorkerRunner(settings, console_logs=False)
    engine = runner.engine
    engine.restore()
    reader = CandleFileReader(path)
    samples = []
    for item in reader.read(count):
        started = time.perf_counter()
        engine.process(item)
        engine.commit(reader.cursor())
        samples.append(time.perf_counter() - started)
        runner.store.checkpoint_if_due()  # between candles, as the run loop does
    reader.close()
    samples.sort()
    return {"candles": len(samples), "p50_ms": samples[len(samples) // 2] * 1e3,
            "p99_ms": samples[int(len(samples) * 0.99)] * 1e3, "mean_ms": statistics.fmean(samples) * 1e3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--latency-candles", type=int, default=20_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-backtesting", action="store_true")
    args = parser.parse_args()
    path = candle_file(args.candles)
    results: dict[str, Any] = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
                               "python": platform.python_version(), "file": path.name}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("papertrader full pipeline ...", file=sys.stderr, flush=True)
        results["papertrader"] = bench_papertrader(path, work)
        print("bare Python loop ...", file=sys.stderr, flush=True)
        results["bare_loop"] = bench_bare_loop(path, work)
        if not args.skip_backtesting:
            print("backtesting.py ...", file=sys.stderr, flush=True)
            results["backtesting_py"] = bench_backtesting(path)
            results["ratio_vs_backtesting_py"] = (results["papertrader"]["candles_per_s"]
                                                  / results["backtesting_py"]["candles_per_s"])
        print("decision latency ...", file=sys.stderr, flush=True)
        results["latency"] = bench_latency(path, work, args.latency_candles)
    for name in ("papertrader", "bare_loop", "backtesting_py"):
        if name in results:
            row = results[name]
            print(f"{name:16s} {row['candles_per_s']:>12,.0f} candles/s  ({row['candles']} candles, "
                  f"{row['trades']} trades, {row['cpu_s']:.2f} s cpu, {row['wall_s']:.2f} s wall)")
    if "ratio_vs_backtesting_py" in results:
        print(f"ratio papertrader / backtesting.py: {results['ratio_vs_backtesting_py']:.2f}")
    latency = results["latency"]
    print(f"decision latency (candle in -> decision persisted): p50 {latency['p50_ms']:.3f} ms, "
          f"p99 {latency['p99_ms']:.3f} ms over {latency['candles']} candles")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
