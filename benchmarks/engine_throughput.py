"""Replay throughput and decision latency of the engine, against backtesting.py on the same candles.

    python benchmarks/engine_throughput.py                 # 1M candles (generated once, cached)
    python benchmarks/engine_throughput.py --candles 200000 --json out.json
    PAPERTRADER_REAL_CANDLES=binance_BTC-USDT_1m.csv python benchmarks/engine_throughput.py

Two workloads, each measured for every engine in the same run: the seeded synthetic file (trade-heavy: about one
order per 27 candles with every cross traded), and a real-data file of the same length, the real Binance BTC-USDT
1-minute candles (``PAPERTRADER_REAL_CANDLES``, default /work/shared/data/binance_BTC-USDT_1m.csv) repeated end to
end with shifted timestamps (skipped with a note when that file is missing).

Measured in one run, on one file, with SMA(10)/SMA(30) and a 0.25 % fee:
- papertrader: the full pipeline (quality gate, features, strategy, risk, broker, durable SQLite ledger and CSV
  logs), from reading the CSV to the last commit. The risk layer's exits and guards (take profit, stops, minimum
  hold, cooldown, daily trade cap, daily-loss and drawdown halts) and slippage are switched off (``PURE_SMA``) so
  that it trades every cross like the others (same number of orders as vectorbt); ``--risk default`` keeps them;
- backtesting.py: ``pd.read_csv`` plus ``Backtest.run`` of the classic SmaCross;
- vectorbt: ``pd.read_csv`` plus two rolling means, the crosses, and ``Portfolio.from_signals`` with the same fee
  (signals on the close of candle t fill at the open of t+1, as papertrader fills); numba is warmed up on a small
  slice first (compilation not measured);
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
#: real Binance BTC-USDT 1-minute candles (61,272 rows, April-May 2021); the real-data workload repeats them
REAL_CANDLES = Path(os.environ.get("PAPERTRADER_REAL_CANDLES", "/work/shared/data/binance_BTC-USDT_1m.csv"))


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


def real_candle_file(count: int, source: Path = REAL_CANDLES) -> Path | None:
    """A cached file of ``count`` real 1-minute candles: ``source`` repeated end to end, each copy's timestamps
    shifted to follow the previous copy by one interval (rows otherwise byte for byte as in ``source``).
    None when ``source`` is missing."""
    if not source.is_file():
        return None
    path = DATA / f"real_{source.stem}_x{count}.csv"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as handle:
        header = handle.readline()
        rows = [line.split(b",", 1) for line in handle if line.strip()]
    first, last = int(rows[0][0]), int(rows[-1][0])
    span = last - first + 60_000
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(header)
        written = copy = 0
        while written < count:
            shift = copy * span
            for ts, rest in rows[:count - written]:
                out.write(b"%d,%s" % (int(ts) + shift, rest))
            written += min(len(rows), count - written)
            copy += 1
    os.replace(tmp, path)
    return path


# every SMA cross becomes an order, as in backtesting.py's SmaCross and vectorbt's from_signals
PURE_SMA: dict[str, Any] = {
    "take_profit_pct": 0, "stop_loss_pct": 0, "trailing_stop_pct": 0, "min_hold_time_minutes": 0,
    "max_hold_hours": 0, "position_cooldown_minutes": 0, "max_daily_trades_per_symbol": 0,
    "max_daily_loss_pct": 0, "max_drawdown_pct": 0, "slippage_pct": 0,
    # 1M candles of fee-paying crosses shrink the equity a thousandfold: start big enough that the last entries
    # are still above the minimum order size (percent sizing has no minimum in vectorbt)
    "initial_capital": 1_000_000_000,
}


def bench_papertrader(path: Path, workdir: Path, risk: str = "off") -> dict[str, Any]:
    from papertrader.cli import build_worker
    from papertrader.config import load_settings

    settings = load_settings({"source": "replay", "replay_file": path, "state_dir": workdir / "pt",
                              "symbol": "BENCH-EUR", "candle_interval": "1m", "http_port": 0, "ws_port": 0,
                              **(PURE_SMA if risk == "off" else {})})
    wall, cpu = time.perf_counter(), time.process_time()
    runner, _ = build_worker(settings, console_logs=False)
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


def bench_vectorbt(path: Path) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    import numpy as np
    import pandas as pd
    import vectorbt as vbt

    def run(frame: pd.DataFrame) -> Any:
        close, open_ = frame["close"], frame["open"]
        fast, slow = close.rolling(10).mean(), close.rolling(30).mean()
        above = (fast > slow).to_numpy()
        valid = slow.notna().to_numpy()
        prev = np.roll(above, 1)
        prev_valid = np.roll(valid, 1)
        prev_valid[0] = False
        cross = valid & prev_valid & (above != prev)
        # decided on the close of t, filled at the open of t+1
        entries = np.roll(cross & above, 1)
        exits = np.roll(cross & ~above, 1)
        entries[0] = exits[0] = False
        return vbt.Portfolio.from_signals(close, entries, exits, price=open_, fees=0.0025, init_cash=10_000,
                                          size=0.08, size_type="percent", freq="1min")

    warm = pd.read_csv(path, nrows=2000)
    warm.index = pd.to_datetime(warm["timestamp_ms"], unit="ms")
    run(warm).stats()  # numba compilation, not measured
    wall, cpu = time.perf_counter(), time.process_time()
    frame = pd.read_csv(path)
    frame.index = pd.to_datetime(frame["timestamp_ms"], unit="ms")
    portfolio = run(frame)
    trades = int(portfolio.orders.count())
    final = float(portfolio.final_value())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"candles": len(frame), "trades": trades, "cpu_s": cpu, "wall_s": wall,
            "candles_per_s": len(frame) / cpu, "final_value": final}


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


def best_of(repeat: int, measure: Any) -> dict[str, Any]:
    """Run ``measure`` ``repeat`` times and keep the run with the least CPU time (all CPU times are recorded)."""
    runs = [measure() for _ in range(max(1, repeat))]
    best = dict(min(runs, key=lambda r: r["cpu_s"]))
    best["runs_cpu_s"] = [round(r["cpu_s"], 3) for r in runs]
    return best


def workload(path: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """papertrader, the bare loop, backtesting.py and vectorbt on one file, and the ratios between them."""
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    counter = iter(range(10**6))
    print(f"{path.name}: papertrader full pipeline ...", file=sys.stderr, flush=True)
    results["papertrader"] = best_of(args.repeat, lambda: bench_papertrader(path, work / f"r{next(counter)}",
                                                                            args.risk))
    print(f"{path.name}: bare Python loop ...", file=sys.stderr, flush=True)
    results["bare_loop"] = best_of(args.repeat, lambda: bench_bare_loop(path, Path(tempfile.mkdtemp(dir=work))))
    results["bare_loop_over_papertrader"] = (results["bare_loop"]["candles_per_s"]
                                             / results["papertrader"]["candles_per_s"])
    if not args.skip_backtesting:
        print(f"{path.name}: backtesting.py ...", file=sys.stderr, flush=True)
        results["backtesting_py"] = best_of(args.repeat, lambda: bench_backtesting(path))
        results["ratio_vs_backtesting_py"] = (results["papertrader"]["candles_per_s"]
                                              / results["backtesting_py"]["candles_per_s"])
    if not args.skip_vectorbt:
        print(f"{path.name}: vectorbt ...", file=sys.stderr, flush=True)
        results["vectorbt"] = best_of(args.repeat, lambda: bench_vectorbt(path))
        results["ratio_vs_vectorbt"] = (results["papertrader"]["candles_per_s"]
                                        / results["vectorbt"]["candles_per_s"])
    return results


def report_workload(name: str, results: dict[str, Any]) -> None:
    print(f"--- {name}")
    for engine in ("papertrader", "bare_loop", "backtesting_py", "vectorbt"):
        if engine in results:
            row = results[engine]
            print(f"{engine:16s} {row['candles_per_s']:>12,.0f} candles/s  ({row['candles']} candles, "
                  f"{row['trades']} trades, {row['cpu_s']:.2f} s cpu, {row['wall_s']:.2f} s wall)")
    if "ratio_vs_backtesting_py" in results:
        print(f"ratio papertrader / backtesting.py: {results['ratio_vs_backtesting_py']:.2f}")
    if "ratio_vs_vectorbt" in results:
        print(f"ratio papertrader / vectorbt: {results['ratio_vs_vectorbt']:.4f}")
    print(f"bare loop / papertrader: {results['bare_loop_over_papertrader']:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--latency-candles", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs (least CPU time) for each engine")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-backtesting", action="store_true")
    parser.add_argument("--skip-vectorbt", action="store_true")
    parser.add_argument("--skip-real", action="store_true", help="only the synthetic trade-heavy file")
    parser.add_argument("--risk", choices=("off", "default"), default="off",
                        help="papertrader's risk exits and guards: off (every cross trades) or the defaults")
    args = parser.parse_args()
    path = candle_file(args.candles)
    results: dict[str, Any] = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
                               "python": platform.python_version(), "file": path.name, "repeat": args.repeat,
                               "papertrader_risk": args.risk,
                               "method": "process CPU time (time.process_time), CSV load included; best of repeat"}
    real = None if args.skip_real else real_candle_file(args.candles)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results.update(workload(path, work / "synthetic", args))
        if real is not None:
            results["real_data"] = {"file": real.name, **workload(real, work / "real", args)}
        elif not args.skip_real:
            print(f"real-data workload skipped: {REAL_CANDLES} not found (set PAPERTRADER_REAL_CANDLES)",
                  file=sys.stderr)
        print("decision latency ...", file=sys.stderr, flush=True)
        results["latency"] = bench_latency(path, work, args.latency_candles)
    report_workload(path.name, results)
    if "real_data" in results:
        report_workload(results["real_data"]["file"], results["real_data"])
    latency = results["latency"]
    print(f"decision latency (candle in -> decision persisted): p50 {latency['p50_ms']:.3f} ms, "
          f"p99 {latency['p99_ms']:.3f} ms over {latency['candles']} candles")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
