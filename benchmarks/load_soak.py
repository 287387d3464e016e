"""Load and soak: many replay workers at once on this machine, and one long replay with its RSS sampled.

    python benchmarks/load_soak.py replay --workers 50 --candles 20000   # 50 workers (one symbol each) at once
    python benchmarks/load_soak.py soak --candles 1000000                 # one worker, RSS sampled every 0.5 s

Every worker is the real CLI (``papertrader run --source replay ... --http-port 0 --ws-port 0``) in its own
process, on the first ``--candles`` candles of the cached synthetic file (see ``engine_throughput.py``), with the
risk layer's exits and halts off (``PURE_SMA``) so that the workers keep trading every SMA cross to the end.

``replay`` checks that every worker exits 0 and that all of them report the same summary (same candles, trades,
final equity: the same input gives the same decisions however loaded the machine is), and reports wall time,
aggregate candles/s and each worker's peak RSS.

``soak`` samples the worker's RSS while it replays (start-up and imports excluded, from the summary's duration_s)
and reports the growth after warm-up: the largest RSS in the last quarter of the replay minus the median RSS of
its second quarter (the first quarter fills caches and buffers), and a least-squares slope over the last three
quarters in MiB per million candles. A leak of even a few bytes per candle shows up as tens of MiB over 1M candles.
Both print one JSON object (``--json FILE`` also writes it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

MIB = 2**20


def worker_command() -> list[str]:
    exe = shutil.which("papertrader") or str(Path(sys.executable).with_name("papertrader"))
    if Path(exe).exists():
        return [exe]
    return [sys.executable, "-c", "import sys; from papertrader.cli import main; sys.exit(main())"]


def sliced_file(candles: int, workdir: Path, source: Path | None = None) -> Path:
    """The first ``candles`` candles of ``source`` (default: the cached synthetic file big enough for them)."""
    from engine_throughput import candle_file

    if source is None:
        source = candle_file(1_000_000 if candles > 200_000 else 200_000)
    out = workdir / f"candles_{candles}.csv"
    with open(source, encoding="utf-8") as handle, open(out, "w", encoding="utf-8") as target:
        target.writelines(itertools.islice(handle, candles + 1))
    return out


def symbol_for(index: int) -> str:
    return f"L{chr(65 + index // 26 % 26)}{chr(65 + index % 26)}-EUR"


def start_worker(command: list[str], replay: Path, state_dir: Path, symbol: str, log: Path) -> subprocess.Popen[bytes]:
    from engine_throughput import PURE_SMA

    # the risk layer's exits and halts off: every SMA cross trades, all the way through the file (with the
    # defaults the drawdown halt stops trading after a few hundred fills on this synthetic series)
    env = {**os.environ, "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
           **{key.upper(): str(value) for key, value in PURE_SMA.items()}}
    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        env.pop(key, None)
    return subprocess.Popen(
        [*command, "run", "--source", "replay", "--replay-file", str(replay), "--state-dir", str(state_dir),
         "--http-port", "0", "--ws-port", "0", "--symbol", symbol],
        stdout=subprocess.PIPE, stderr=open(log, "wb"), env=env)


def rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def last_json(stdout: bytes) -> dict[str, Any]:
    for line in reversed(stdout.decode("utf-8", "replace").strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def run_replay(workers: int, candles: int, timeout: float, source: Path | None = None) -> dict[str, Any]:
    """``source``: a candle file to replay as is (default: the first ``candles`` of the cached synthetic file)."""
    command = worker_command()
    with tempfile.TemporaryDirectory(prefix="load-replay-") as tmp:
        work = Path(tmp)
        replay = source if source is not None else sliced_file(candles, work)
        load_before = os.getloadavg()
        started = time.perf_counter()
        procs = [start_worker(command, replay, work / f"w{i}", symbol_for(i), work / f"w{i}.log")
                 for i in range(workers)]
        handles = [psutil.Process(p.pid) for p in procs]
        peaks = [0] * workers
        outputs: dict[int, bytes] = {}
        ends: dict[int, float] = {}
        import threading

        def drain(i: int) -> None:  # read stdout so a full pipe never blocks a worker
            outputs[i] = procs[i].stdout.read() if procs[i].stdout else b""  # type: ignore[union-attr]

        readers = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(workers)]
        for thread in readers:
            thread.start()
        peak_total = 0
        while len(ends) < workers:
            total = 0
            for i, (proc, handle) in enumerate(zip(procs, handles)):
                if i in ends:
                    continue
                if proc.poll() is not None:
                    ends[i] = time.perf_counter() - started
                    continue
                value = rss(handle)
                peaks[i] = max(peaks[i], value)
                total += value
            peak_total = max(peak_total, total)
            if time.perf_counter() - started > timeout:
                for proc in procs:
                    proc.kill()
                raise RuntimeError(f"replay load: not done after {timeout} s")
            time.sleep(0.25)
        wall = time.perf_counter() - started
        for thread in readers:
            thread.join(10)
        codes = [p.returncode for p in procs]
        summaries = [last_json(outputs.get(i, b"")) for i in range(workers)]
        failed = [i for i, code in enumerate(codes) if code != 0]
        errors = {i: (work / f"w{i}.log").read_text(errors="replace")[-2000:] for i in failed[:3]}

    keys = ("candles", "trades", "final_equity", "return_pct", "max_drawdown_pct")
    distinct = {tuple(s.get(k) for k in keys) for s in summaries}
    durations = [s.get("duration_s", 0.0) for s in summaries]
    return {
        "workers": workers, "candles_per_worker": candles, "exit_codes_nonzero": len(failed), "errors": errors,
        "identical_summaries": len(distinct) == 1 and not failed,
        "summary": dict(zip(keys, next(iter(distinct)))) if len(distinct) == 1 else [list(d) for d in distinct],
        "wall_s": round(wall, 2), "first_exit_s": round(min(ends.values()), 2),
        "total_candles": sum(s.get("candles", 0) for s in summaries),
        "aggregate_candles_per_s": round(sum(s.get("candles", 0) for s in summaries) / wall),
        "worker_replay_s_median": round(statistics.median(durations), 2) if durations else None,
        "worker_peak_rss_mib_median": round(statistics.median(peaks) / MIB, 1),
        "worker_peak_rss_mib_max": round(max(peaks) / MIB, 1),
        "all_workers_rss_mib_peak": round(peak_total / MIB, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
    }


def run_soak(candles: int, interval: float, timeout: float, source: Path | None = None) -> dict[str, Any]:
    command = worker_command()
    with tempfile.TemporaryDirectory(prefix="load-soak-") as tmp:
        work = Path(tmp)
        replay = source if source is not None and candles <= 0 else sliced_file(candles, work, source)
        started = time.perf_counter()
        proc = start_worker(command, replay, work / "w", "SOAK-EUR", work / "w.log")
        handle = psutil.Process(proc.pid)
        samples: list[tuple[float, int]] = []
        import threading

        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else b""),
                                  daemon=True)
        reader.start()
        while proc.poll() is None:
            value = rss(handle)
            if value:
                samples.append((time.perf_counter() - started, value))
            if time.perf_counter() - started > timeout:
                proc.kill()
                raise RuntimeError(f"soak: not done after {timeout} s")
            time.sleep(interval)
        reader.join(10)
        wall = time.perf_counter() - started
        summary = last_json(out[0] if out else b"")
        log_tail = (work / "w.log").read_text(errors="replace")[-2000:] if proc.returncode else ""
    candles_done = summary.get("candles", 0)
    duration = summary.get("duration_s") or wall
    rate = candles_done / duration if duration else 0.0
    # only the replay itself (the summary's duration_s), not interpreter start-up and imports
    replaying = [(t, v) for t, v in samples if t >= wall - duration] or samples
    startup_rss = max((v for t, v in samples if t < wall - duration), default=0)
    samples = replaying
    n = len(samples)
    values = [v for _, v in samples]
    q1, q2, q3 = n // 4, n // 2, 3 * n // 4
    second_quarter = values[q1:q2] or values
    last_quarter = values[q3:] or values
    baseline = statistics.median(second_quarter)
    growth = max(last_quarter) - baseline
    # a straight line through the post-warm-up samples: MiB per million candles
    post = samples[q1:] or samples
    slope = 0.0
    if len(post) > 2:
        ts = [t for t, _ in post]
        mean_t, mean_v = statistics.fmean(ts), statistics.fmean(v for _, v in post)
        var = sum((t - mean_t) ** 2 for t in ts)
        if var:
            slope = sum((t - mean_t) * (v - mean_v) for t, v in post) / var  # bytes per second
    profile = [round(values[min(n - 1, int(n * f))] / MIB, 1) for f in (0.05, 0.25, 0.5, 0.75, 1.0)] if n else []
    return {
        "candles": candles_done, "exit_code": proc.returncode, "log_tail": log_tail, "wall_s": round(wall, 2),
        "candles_per_s": round(rate), "samples": n, "sample_interval_s": interval,
        "rss_mib_before_replay": round(startup_rss / MIB, 1),
        "rss_mib_at_5_25_50_75_100pct": profile,
        "rss_mib_baseline_q2_median": round(baseline / MIB, 2),
        "rss_mib_peak": round(max(values) / MIB, 2) if values else None,
        "rss_growth_mib_after_warmup": round(growth / MIB, 2),
        "rss_slope_mib_per_million_candles": round(slope / MIB / rate * 1e6, 2) if rate else None,
        "summary": {k: summary.get(k) for k in ("trades", "final_equity", "return_pct")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    replay = sub.add_parser("replay")
    replay.add_argument("--workers", type=int, default=50)
    replay.add_argument("--candles", type=int, default=20_000)
    replay.add_argument("--timeout", type=float, default=600)
    soak = sub.add_parser("soak")
    soak.add_argument("--candles", type=int, default=1_000_000)
    soak.add_argument("--interval", type=float, default=0.5)
    soak.add_argument("--timeout", type=float, default=900)
    for p in (replay, soak):
        p.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.what == "replay":
        result = run_replay(args.workers, args.candles, args.timeout)
        ok = result["identical_summaries"]
    else:
        result = run_soak(args.candles, args.interval, args.timeout)
        ok = result["exit_code"] == 0
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
