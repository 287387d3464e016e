"""Run every benchmark and write benchmarks/REPORT.md (``make bench``; ``make bench-quick`` for smaller sizes).

    python benchmarks/report.py            # full sizes, ~10 min on 2 cores: benchmarks/REPORT.md
    python benchmarks/report.py --quick    # small sizes, ~3 min: bench_out/REPORT-quick.md

Each benchmark runs in its own process, one after the other (never two at once), and writes JSON that this
script collects. The figures of the run are kept in ``benchmarks/results/latest.json``; the run before it is
moved to ``previous.json`` and the report compares the key figures of both ("numbers match a rerun within
noise"). The machine, the library versions and the load average around every step are recorded, since the
machine may be shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL = {
    "engine": ["engine_throughput.py", "--candles", "1000000", "--repeat", "3", "--latency-candles", "20000"],
    "ml": ["ml_inference.py"],
    "tracing": ["tracing_overhead.py", "--candles", "50000", "--repeat", "2"],
    "ws": ["ws_fanout.py", "--clients", "1000", "--silent", "100", "--hostile", "50", "--candles", "3300",
           "--rate", "100", "--rounds", "2"],
    "fleet": ["load_soak.py", "replay", "--workers", "50", "--candles", "20000"],
    "soak": ["load_soak.py", "soak", "--candles", "1000000", "--interval", "0.5"],
    "operator": ["operator_convergence.py", "--traders", "100", "--symbols", "5"],
}
QUICK = {
    "engine": ["engine_throughput.py", "--candles", "200000", "--repeat", "1", "--latency-candles", "5000"],
    "ml": ["ml_inference.py", "--candles", "20000"],
    "tracing": ["tracing_overhead.py", "--candles", "20000", "--repeat", "1"],
    "ws": ["ws_fanout.py", "--clients", "200", "--silent", "20", "--hostile", "20", "--candles", "600",
           "--rate", "50", "--rounds", "1"],
    "fleet": ["load_soak.py", "replay", "--workers", "10", "--candles", "5000"],
    "soak": ["load_soak.py", "soak", "--candles", "200000", "--interval", "0.2"],
    "operator": ["operator_convergence.py", "--traders", "20", "--symbols", "3"],
}
JSON_FLAG = {"engine", "tracing", "ws", "fleet", "soak"}  # the others print JSON on stdout

# (label, step, path in that step's JSON, unit, higher is better) for the rerun comparison
KEY_FIGURES = [
    ("papertrader candles/s (CPU)", "engine", "papertrader.candles_per_s", "candles/s", True),
    ("backtesting.py candles/s (CPU)", "engine", "backtesting_py.candles_per_s", "candles/s", True),
    ("vectorbt candles/s (CPU)", "engine", "vectorbt.candles_per_s", "candles/s", True),
    ("ratio papertrader / backtesting.py", "engine", "ratio_vs_backtesting_py", "x", True),
    ("ratio papertrader / vectorbt", "engine", "ratio_vs_vectorbt", "x", True),
    ("ratio papertrader / backtesting.py, real data", "engine", "real_data.ratio_vs_backtesting_py", "x", True),
    ("decision latency p50", "engine", "latency.p50_ms", "ms", False),
    ("decision latency p99", "engine", "latency.p99_ms", "ms", False),
    ("ML inference p50 (on_candle)", "ml", "inference_per_candle.on_candle_p50_us", "us", False),
    ("ML model-only p50", "ml", "inference_per_candle.model_only_p50_us", "us", False),
    ("ML replay candles/s", "ml", "replay_ml.candles_per_s", "candles/s", True),
    ("RSS with the ML model loaded", "ml", "rss_mb.model_loaded", "MiB", False),
    ("ML worker process peak RSS", "ml", "papertrader_run_ml.max_rss_mib", "MiB", False),
    ("tracing default sampling / off", "tracing", "ratio_to_off.default sampling", "x", True),
    ("WS fan-out p50", "ws", "fanout_p50_ms", "ms", False),
    ("WS fan-out p99", "ws", "fanout_p99_ms", "ms", False),
    ("engine p99 with/without WS clients", "ws", "engine_p99_ratio", "x", False),
    ("fleet wall time (all workers)", "fleet", "wall_s", "s", False),
    ("fleet aggregate candles/s", "fleet", "aggregate_candles_per_s", "candles/s", True),
    ("worker peak RSS (fleet, max)", "fleet", "worker_peak_rss_mib_max", "MiB", False),
    ("soak candles/s", "soak", "candles_per_s", "candles/s", True),
    ("soak worker RSS peak", "soak", "rss_mib_peak", "MiB", False),
    ("soak RSS growth after warm-up", "soak", "rss_growth_mib_after_warmup", "MiB abs", False),
    ("operator convergence", "operator", "converged_s", "s", False),
    ("operator RSS peak", "operator", "operator_rss_mib_peak", "MiB", False),
]
# how far a rerun may move on this shared 2-core machine and still count as "within noise"
TOLERANCE = {"candles/s": 0.25, "x": 0.25, "ms": 0.5, "us": 0.5, "MiB": 0.10, "s": 0.35}
ABS_TOLERANCE = {"MiB abs": 2.0}  # a figure near zero: compared by difference, not ratio


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except Exception:  # noqa: BLE001, S110 - psutil is optional here
        pass
    versions = {}
    for name in ("papertrader", "numpy", "pandas", "backtesting", "vectorbt", "numba", "torch", "websockets",
                 "kopf", "kmock"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"node": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "memory": mem,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "versions": versions}


def code_state() -> dict[str, Any]:
    """The product code this run measured: git HEAD and a hash of every file under worker/ and operator/
    (committed or not), so that a rerun can tell a code change from noise."""
    import hashlib

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=False).stdout.strip()
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "worker", "operator"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.split()
    files = {}
    for name in sorted(listed):
        path = ROOT / name
        if path.is_file() and "__pycache__" not in name:
            files[name] = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    return {"head": head, "files": files}


def code_changes(before: dict[str, Any] | None, now: dict[str, Any] | None) -> list[str] | None:
    if not before or not now:
        return None
    a, b = before.get("files", {}), now.get("files", {})
    return sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))


def parse_stdout(step: str, text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if step == "ml":
        return {obj.pop("measure"): obj for obj in map(json.loads, lines)}
    return json.loads(lines[-1]) if lines else {}


def run_step(step: str, argv: list[str], tmp: Path, timeout: float) -> dict[str, Any]:
    out = tmp / f"{step}.json"
    command = [sys.executable, str(HERE / argv[0]), *argv[1:]] + (["--json", str(out)] if step in JSON_FLAG else [])
    print(f"[bench] {step}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, stdout, stderr = -1, str(exc.stdout or ""), f"timed out after {timeout} s"
    wall = time.perf_counter() - started
    result: dict[str, Any] = {}
    try:
        result = json.loads(out.read_text()) if step in JSON_FLAG and out.exists() else parse_stdout(step, stdout)
    except (ValueError, OSError) as exc:
        stderr += f"\n(report: could not read the figures: {exc})"
    meta = {"command": " ".join(["python", f"benchmarks/{argv[0]}", *argv[1:]]), "exit_code": code,
            "wall_s": round(wall, 1), "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    if code != 0:
        meta["stderr_tail"] = stderr[-1500:]
    print(f"[bench] {step}: exit {code} in {wall:.0f} s", file=sys.stderr, flush=True)
    return {"meta": meta, "result": result}


def dig(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) < 0.1:
            return f"{value:.4f}"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def engine_table(add: Any, e: dict[str, Any]) -> None:
    """One workload of the engine benchmark: a row per engine and the ratios."""
    add("| engine | candles/s (CPU) | CPU s | wall s | orders / trades | runs (CPU s) |")
    add("|---|---:|---:|---:|---:|---|")
    for key, label in (("papertrader", ("papertrader (full pipeline: quality gate, features, risk, broker, "
                                        "SQLite ledger, CSV logs)")),
                       ("backtesting_py", "backtesting.py (`pd.read_csv` + `Backtest.run`)"),
                       ("vectorbt", "vectorbt (`pd.read_csv` + `Portfolio.from_signals`, numba warmed)"),
                       ("bare_loop", "bare Python loop (2 SMAs, cross, batched SQLite writes)")):
        row = e.get(key)
        if row:
            add(f"| {label} | {fmt(row['candles_per_s'])} | {fmt(row['cpu_s'], 2)} | {fmt(row['wall_s'], 2)} "
                f"| {fmt(row['trades'])} | {', '.join(map(str, row.get('runs_cpu_s', [])))} |")
    add("")
    bare = e.get("bare_loop_over_papertrader")
    add(f"**Ratio papertrader / backtesting.py: {fmt(e.get('ratio_vs_backtesting_py'), 2)}x**; "
        f"**papertrader / vectorbt: {fmt(e.get('ratio_vs_vectorbt'), 3)}x** (vectorbt is vectorised numpy/numba "
        f"over the whole array at once; papertrader processes candle by candle, durably, as a live worker does)"
        + (f"; the bare loop is {fmt(bare, 2)}x faster than papertrader." if bare is not None else "."))


def render(run: dict[str, Any], previous: dict[str, Any] | None) -> str:
    steps = run["steps"]
    r = {name: step["result"] for name, step in steps.items()}
    m = run["machine"]
    e, ml, tr, ws, fl, so, op = (r.get(k, {}) for k in ("engine", "ml", "tracing", "ws", "fleet", "soak",
                                                          "operator"))
    lines: list[str] = []
    add = lines.append
    add("# papertrader benchmark report")
    add("")
    add(f"Generated by `{run['command']}` (`python benchmarks/report.py{' --quick' if run['quick'] else ''}`) on "
        f"{run['finished']} UTC, {run['total_wall_s'] / 60:.1f} min in all. Do not edit by hand: rerun the command.")
    add("")
    add("## Summary")
    add("")
    summary = [
        ("papertrader / backtesting.py (CPU, same candles)", fmt(dig(e, "ratio_vs_backtesting_py"), 2) + "x"),
        *([("papertrader / backtesting.py, real-data file", fmt(dig(e, "real_data.ratio_vs_backtesting_py"), 2) + "x"),
           ("bare Python loop / papertrader (synthetic / real data)",
            f"{fmt(dig(e, 'bare_loop_over_papertrader'), 2)}x / "
            f"{fmt(dig(e, 'real_data.bare_loop_over_papertrader'), 2)}x")] if dig(e, "real_data") else []),
        ("papertrader / vectorbt", fmt(dig(e, "ratio_vs_vectorbt"), 3) + "x"),
        ("decision latency p50 / p99", f"{fmt(dig(e, 'latency.p50_ms'), 3)} / {fmt(dig(e, 'latency.p99_ms'), 3)} ms"),
        ("ML inference p50 / p99 (on_candle)", (f"{fmt(dig(ml, 'inference_per_candle.on_candle_p50_us'))} / "
                                               f"{fmt(dig(ml, 'inference_per_candle.on_candle_p99_us'))} us")),
        ("worker RSS (sma-cross) / with the ML model", (f"{fmt(so.get('rss_mib_peak'))} / "
                                                      f"{fmt(dig(ml, 'rss_mb.model_loaded'))} MiB")),
        (f"soak: RSS growth over {fmt(so.get('candles'))} candles after warm-up",
         f"{so.get('rss_growth_mib_after_warmup', float('nan')):.2f} MiB"),
        (f"{fmt(fl.get('workers'))} replay workers at once", (f"{fmt(fl.get('wall_s'))} s, identical results: "
                                                            f"{fl.get('identical_summaries')}")),
        (f"{fmt(ws.get('clients'))} WS clients: fan-out p50 / p99", (f"{fmt(ws.get('fanout_p50_ms'))} / "
                                                                  f"{fmt(ws.get('fanout_p99_ms'))} ms")),
        (f"operator, {fmt(op.get('traders'))} PaperTraders x {fmt(op.get('symbols'))} symbols converged",
         f"{fmt(op.get('converged_s'))} s"),
    ]
    add("| figure | value |")
    add("|---|---:|")
    for label, value in summary:
        add(f"| {label} | {value} |")
    add("")
    add("## Machine")
    add("")
    add(f"- **{m['cpu'] or 'unknown CPU'}**, {m['cpus']} logical CPUs, {m['memory']} RAM, {m['os']} "
        f"(host `{m['node']}`), Python {m['python']}.")
    add("- " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".")
    code = run.get("code") or {}
    during = code_changes(code, run.get("code_end"))
    if code:
        add(f"- Product code: git `{code.get('head', '?')}` plus the working tree ({len(code.get('files', {}))} files "
            "under worker/ and operator/ hashed)"
            + (f"; **changed during this run**: {', '.join(during)}" if during else "; unchanged during the run")
            + ".")
    else:
        add("- Product code state: not recorded by this run.")
    add(f"- Load average (1/5/15 min) at the start: {run['loadavg_start']}, at the end: {run['loadavg_end']}. "
        "The machine is shared with other test runs; every step records the load around it (last table). "
        "Throughputs are measured in process CPU time where noted, which other load moves less than wall time.")
    add("")
    add("## Engine throughput: papertrader vs backtesting.py vs vectorbt (same candles, same run)")
    add("")
    if e:
        add(f"File `{e.get('file')}` ({fmt(dig(e, 'papertrader.candles'))} synthetic 1-minute candles), SMA(10)/"
            f"SMA(30) cross, fee 0.25 % per side. Method: {e.get('method')} (best of {e.get('repeat')}; all runs' "
            "CPU seconds listed). papertrader's risk layer exits and halts and its slippage are off "
            f"(`--risk {e.get('papertrader_risk')}`), so that it trades every cross as the other two do: its "
            "order count equals vectorbt's (backtesting.py counts round trips).")
        add("")
        engine_table(add, e)
        real = e.get("real_data")
        if real:
            add("")
            add(f"Real data: file `{real.get('file')}`, the real Binance BTC-USDT 1-minute candles repeated end to end "
                "with shifted timestamps (same settings):")
            add("")
            engine_table(add, real)
        lat = e.get("latency", {})
        add("")
        add(f"**Decision latency** (candle in -> decision persisted, one SQLite commit per candle as a live worker): "
            f"p50 {fmt(lat.get('p50_ms'), 3)} ms, p99 {fmt(lat.get('p99_ms'), 3)} ms, mean "
            f"{fmt(lat.get('mean_ms'), 3)} ms over {fmt(lat.get('candles'))} candles (wall clock).")
    else:
        add("_not measured (see the step table)_")
    add("")
    add("## ML inference")
    add("")
    if ml:
        inf, rep, sma, rss = (ml.get(k, {}) for k in ("inference_per_candle", "replay_ml",
                                                       "replay_sma_cross_reference", "rss_mb"))
        add(f"Model `{inf.get('model')}` ({inf.get('arch')}, sequence {inf.get('seq_len')}), "
            f"{inf.get('threads')} torch thread, {fmt(inf.get('candles'))} candles (wall clock).")
        add("")
        add("| measure | p50 | p99 |")
        add("|---|---:|---:|")
        add(f"| `on_candle` (scale, window, model, gate) | {fmt(inf.get('on_candle_p50_us'))} us | "
            f"{fmt(inf.get('on_candle_p99_us'))} us |")
        add(f"| model forward only | {fmt(inf.get('model_only_p50_us'))} us | {fmt(inf.get('model_only_p99_us'))} us |")
        add("")
        add(f"Replay with `--strategy ml`: {fmt(rep.get('candles_per_s'))} candles/s ({fmt(rep.get('candles'))} "
            f"candles, {fmt(rep.get('fills'))} fills); sma-cross on the same candles: "
            f"{fmt(sma.get('candles_per_s'))} candles/s. RSS (engine + ML strategy in one process): "
            f"{fmt(rss.get('at_start'))} MiB at start, {fmt(rss.get('model_loaded'))} MiB with the model loaded, "
            f"{fmt(rss.get('after_replays'))} MiB after the replays.")
        full = ml.get("papertrader_run_ml")
        if full:
            add("")
            add(f"The real `papertrader run --strategy ml` process on the same candles: {fmt(full.get('candles_per_s'))} "
                f"candles/s in its run loop, {fmt(full.get('process_cpu_s'), 2)} s CPU for the whole process, "
                f"**peak RSS {fmt(full.get('max_rss_mib'))} MiB**.")
    else:
        add("_not measured (see the step table)_")
    add("")
    add("## Worker RSS")
    add("")
    add(f"- One `papertrader run` worker process (sma-cross, HTTP + WebSocket + ledger), during the soak: "
        f"{fmt(so.get('rss_mib_before_replay'))} MiB before the replay starts, peak {fmt(so.get('rss_mib_peak'))} MiB.")
    add(f"- {fmt(fl.get('workers'))} concurrent workers: peak RSS per worker median "
        f"{fmt(fl.get('worker_peak_rss_mib_median'))} MiB, max {fmt(fl.get('worker_peak_rss_mib_max'))} MiB; "
        f"all workers together at most {fmt(fl.get('all_workers_rss_mib_peak'))} MiB.")
    if ml:
        add(f"- With the ML model loaded (engine + strategy, see above): {fmt(dig(ml, 'rss_mb.model_loaded'))} MiB"
            + (f"; a whole `papertrader run --strategy ml` worker: peak {fmt(dig(ml, 'papertrader_run_ml.max_rss_mib'))}"
               " MiB." if dig(ml, "papertrader_run_ml.max_rss_mib") else "."))
    add("")
    add("## Load")
    add("")
    add("### Replay workers at once on this machine")
    add("")
    if fl:
        add(f"{fmt(fl.get('workers'))} `papertrader run --source replay` processes (one symbol each, "
            f"{fmt(fl.get('candles_per_worker'))} candles each, every SMA cross traded), all started together on "
            f"{m['cpus']} CPUs: all done in {fmt(fl.get('wall_s'))} s wall ({fmt(fl.get('aggregate_candles_per_s'))} "
            f"candles/s in aggregate, {fmt(fl.get('total_candles'))} candles), exits non-zero: "
            f"{fl.get('exit_codes_nonzero')}, **identical summaries: {fl.get('identical_summaries')}** "
            f"(the same trades and final equity from every worker however contended: {fl.get('summary')}). "
            f"Median in-worker replay time {fmt(fl.get('worker_replay_s_median'), 2)} s.")
    else:
        add("_not measured_")
    add("")
    add(f"### WebSocket fan-out: {fmt(ws.get('clients'))} clients, some slow or hostile")
    add("")
    if ws:
        add(f"{fmt(ws.get('clients'))} clients on one worker ({fmt(ws.get('silent'))} complete the handshake and "
            f"never read; {fmt(ws.get('hostile'))} hostile: garbage/binary frames, frames over 4 KiB, snapshot-request "
            f"floods without reading, half-sent handshakes, connect/abort churn), {fmt(ws.get('candles'))} candles at "
            f"{fmt(ws.get('rate'))} candles/s (live-like source). The worker serves clients from its fan-out process "
            f"(WS_FANOUT_CPU_PRIORITY idle); the clients run in another process at CPU priority "
            f"{ws.get('clients_priority', 'normal')}, standing in for their own machines on this 2-core box; {ws.get('rounds', 1)} rounds of each condition in "
            "alternating order, samples pooled and counts (readers, clients, disconnects) summed over the rounds. "
            "Engine candle latency = candle released by the source -> decision "
            "persisted (so any wait for the worker's event loop counts).")
        add("")
        add("| measure | value |")
        add("|---|---:|")
        add(f"| fan-out latency p50 / p99 (server flush -> client) | {fmt(ws.get('fanout_p50_ms'))} / "
            f"{fmt(ws.get('fanout_p99_ms'))} ms |")
        add(f"| engine per-candle p50 no clients / with clients | {fmt(ws.get('engine_p50_us_no_clients'))} / "
            f"{fmt(ws.get('engine_p50_us_clients'))} us |")
        add(f"| engine per-candle p99 no clients / with clients | {fmt(ws.get('engine_p99_us_no_clients'))} / "
            f"{fmt(ws.get('engine_p99_us_clients'))} us (ratio {fmt(ws.get('engine_p99_ratio'), 2)}) |")
        if "tick_p99_ratio" in ws:
            add(f"| tick p99 (processing -> persisted) no clients / with clients | "
                f"{fmt(ws.get('tick_p99_us_no_clients'))} / {fmt(ws.get('tick_p99_us_clients'))} us "
                f"(ratio {fmt(ws.get('tick_p99_ratio'), 2)}) |")
            add(f"| CPU, share of one core: fan-out process / client process | "
                f"{fmt(ws.get('fanout_cpu_share'), 2)} / {fmt(ws.get('clients_cpu_share'), 2)} |")
        add(f"| readers that received the engine's last candle | {ws.get('readers_complete')} / {ws.get('readers')} |")
        add(f"| candle messages per reader (conflated per flush) | {ws.get('candles_per_reader_min')} - "
            f"{ws.get('candles_per_reader_max')} |")
        add(f"| slow clients disconnected (1013) / clients left | {ws.get('slow_disconnects')} / {ws.get('clients_left')} |")
        add(f"| candles processed / `/healthz` after | {fmt(ws.get('candles_processed'))} / {ws.get('healthz_status')} |")
        if "clients_at_start" in ws:
            add(f"| clients connected when the measured candles start / wait | {ws['clients_at_start']} / "
                f"{ws['connect_wait_s']} s |")
        add(f"| hostile outcomes | {', '.join(f'{k}: {v}' for k, v in sorted(ws.get('hostile_outcomes', {}).items()))} |")
        add("")
        if "engine_p99_us_per_round_clients" in ws:
            rounds = zip(ws["engine_p99_us_per_round_no_clients"], ws["engine_p99_us_per_round_clients"], strict=True)
            add("Engine p99 per round (no clients / with clients): "
                + "; ".join(f"{fmt(b, 0)} / {fmt(c, 0)} us" for b, c in rounds)
                + ". Single rounds scatter (up to about 20 % here, the no-clients rounds among themselves too); the "
                "pooled ratio is the figure.")
            add("")
        add("Clients left at the end = the readers, the garbage senders and the silent clients: those never read, "
            "so the kernel's socket buffers take what they are sent until the buffers and then their backlog "
            "fill (1013), or the keepalive (a ping every 20 s, 20 s to answer) closes them, both later than a "
            "run's half minute; snapshot-request flooders fill theirs within seconds and are closed as slow "
            "consumers (1013); oversize frames get 1009; half-sent handshakes never become clients and are closed by "
            "the server's opening timeout; churners come and go. The engine never waits for any of them. "
            "Candle messages are conflated to the latest per "
            f"50 ms flush (`WS_FLUSH_INTERVAL`), so at this rate a reader gets about one candle in "
            f"{ws.get('candles', 0) / max(1, ws.get('candles_per_reader_max') or 1):.1f}; at a real "
            "live rate (one candle a minute) that is every candle, while a live burst (a backfill after a reconnect) "
            "is conflated too (as `feed/ws.py` documents: conflation per flush in every mode).")
        if "clients_at_start" not in ws:
            add("")
            add("Caveat for this run: `ws_fanout.py` then waited for a client count that the early-closed hostile "
                "clients can make unreachable (up to its 120 s limit) and did not record how long it waited; all the "
                "silent clients were gone by the end (clients left = readers + garbage senders), closed by the "
                "keepalive about 40 s after connecting, so they were present for only part of the measured window, "
                "or none of it. Fixed after this run: the wait counts readers and silent clients only, and the "
                "report shows the clients connected when the measured candles start.")
    else:
        add("_not measured_")
    add("")
    add("### Soak: memory over a long replay")
    add("")
    if so:
        add(f"One worker process replays {fmt(so.get('candles'))} candles ({fmt(so.get('candles_per_s'))} candles/s, "
            f"{fmt(dig(so, 'summary.trades'))} fills: still trading at the end), RSS sampled every "
            f"{so.get('sample_interval_s')} s ({so.get('samples')} samples during the replay).")
        add("")
        add(f"- RSS at 5/25/50/75/100 % of the replay: {' / '.join(map(str, so.get('rss_mib_at_5_25_50_75_100pct', [])))} MiB")
        add(f"- **growth after warm-up** (max of the last quarter - median of the second quarter): "
            f"**{so.get('rss_growth_mib_after_warmup', float('nan')):.2f} MiB**; least-squares slope "
            f"{so.get('rss_slope_mib_per_million_candles') or 0.0:.2f} MiB per million candles.")
    else:
        add("_not measured_")
    add("")
    add(f"### Operator at {fmt(op.get('traders'))} PaperTraders")
    add("")
    if op:
        add(f"The operator (its real CLI, one process) against kmock: {fmt(op.get('traders'))} PaperTraders x "
            f"{fmt(op.get('symbols'))} symbols = {fmt(op.get('children'))} children (StatefulSet, Service, ConfigMap "
            f"per symbol). All PaperTraders posted within {fmt(op.get('posted_s'))} s; counted from the first POST, every "
            f"child exists after {fmt(op.get('children_s'))} s, every status written after **{fmt(op.get('converged_s'))} s**. "
            f"Operator RSS {fmt(op.get('operator_rss_mib_idle'))} MiB idle, {fmt(op.get('operator_rss_mib_peak'))} "
            "MiB peak.")
    else:
        add("_not measured_")
    add("")
    add("## Tracing overhead")
    add("")
    if tr:
        add(f"Replay of {fmt(tr.get('candles'))} candles (wall clock, best of {tr.get('repeat')}; includes start-up), "
            "spans exported over OTLP/HTTP to a local sink:")
        add("")
        add("| tracing | candles/s | ratio to off |")
        add("|---|---:|---:|")
        for name, rate in tr.get("candles_per_s", {}).items():
            add(f"| {name} | {fmt(rate)} | {fmt(tr['ratio_to_off'][name], 3)} |")
    else:
        add("_not measured_")
    add("")
    add("## Rerun: does a second run match?")
    add("")
    if previous:
        add(f"This run against the previous `{run['command']}` run ({previous['finished']} UTC, load "
            f"{previous['loadavg_start']} at its start). Tolerance on this shared 2-core machine: "
            + ", ".join(f"{unit} +-{tol:.0%}" for unit, tol in TOLERANCE.items())
            + "; RSS growth +-2 MiB (absolute).")
        add("")
        changed = code_changes(previous.get("code"), run.get("code"))
        if changed is None:
            add("The previous run did not record its code state, so a code change between the runs cannot be ruled "
                "out (another engineer was optimising ML inference in the same tree at the time).")
        elif changed:
            add(f"**The product code changed between the two runs** (git `{previous['code'].get('head')}` -> "
                f"`{run['code'].get('head')}`; {len(changed)} file(s): {', '.join(changed[:12])}"
                f"{', ...' if len(changed) > 12 else ''}): differences in the figures those files touch are not "
                "noise.")
        else:
            during = code_changes(run.get("code"), run.get("code_end"))
            add(f"Same product code at the start of both runs (git `{previous['code'].get('head')}` and "
                f"`{run['code'].get('head')}`, every file under worker/ and operator/ identical)"
                + (f"; but {', '.join(during)} changed while this run was going (another engineer's edit), so the "
                   "steps after that edit may have measured it" if during else
                   ": the differences below are measurement noise") + ".")
        add("")
        add("| figure | previous run | this run | change | within noise |")
        add("|---|---:|---:|---:|:---:|")
        ok_all = True
        for label, step, path, unit, _ in KEY_FIGURES:
            now = dig(r.get(step, {}), path)
            before = dig(previous["steps"].get(step, {}).get("result", {}), path)
            if unit in ABS_TOLERANCE and isinstance(now, (int, float)) and isinstance(before, (int, float)):
                ok = abs(now - before) <= ABS_TOLERANCE[unit]
                ok_all &= ok
                add(f"| {label} (MiB) | {before:.2f} | {now:.2f} | {now - before:+.2f} MiB | "
                    f"{'yes' if ok else '**no**'} |")
                continue
            if not isinstance(now, (int, float)) or not isinstance(before, (int, float)) or not before:
                add(f"| {label} | {fmt(before)} | {fmt(now)} | n/a | n/a |")
                continue
            change = now / before - 1
            ok = abs(change) <= TOLERANCE[unit]
            ok_all &= ok
            add(f"| {label} ({unit}) | {fmt(float(before), 2)} | {fmt(float(now), 2)} | {change:+.1%} | "
                f"{'yes' if ok else '**no**'} |")
        add("")
        add("All key figures within the tolerance." if ok_all else
            "Figures marked **no** moved beyond the tolerance between the two runs (see the load averages: the "
            "machine is shared); tail latencies (p99) are the most sensitive to other processes.")
    else:
        add("No previous run recorded in `benchmarks/results/`: run the command again to get the comparison.")
    add("")
    add("## Steps")
    add("")
    add("| step | command | exit | wall s | load before | load after |")
    add("|---|---|---:|---:|---|---|")
    for name, step in steps.items():
        meta = step["meta"]
        add(f"| {name} | `{meta['command']}` | {meta['exit_code']} | {meta['wall_s']} | "
            f"{meta['loadavg_before']} | {meta['loadavg_after']} |")
    failed = {name: step["meta"] for name, step in steps.items() if step["meta"]["exit_code"] != 0}
    for name, meta in failed.items():
        add("")
        add(f"Step `{name}` failed (exit {meta['exit_code']}):")
        add("```")
        add(meta.get("stderr_tail", "").strip())
        add("```")
    add("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes; writes bench_out/REPORT-quick.md")
    parser.add_argument("--only", nargs="*", help="run only these steps (the others are left out of the report)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the report from the stored results")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    results_dir = (ROOT / "bench_out" / "quick") if args.quick else (HERE / "results")
    report_path = (ROOT / "bench_out" / "REPORT-quick.md") if args.quick else (HERE / "REPORT.md")
    results_dir.mkdir(parents=True, exist_ok=True)
    latest, previous_path = results_dir / "latest.json", results_dir / "previous.json"
    if args.render_only:
        run = json.loads(latest.read_text())
        previous = json.loads(previous_path.read_text()) if previous_path.exists() else None
        report_path.write_text(render(run, previous), encoding="utf-8")
        print(f"wrote {report_path}", file=sys.stderr)
        return 0
    started = time.perf_counter()
    run: dict[str, Any] = {"command": "make bench-quick" if args.quick else "make bench", "quick": args.quick,
                           "machine": machine(), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                           "code": code_state(), "steps": {}}
    # the 1M-candle file is generated once (about a minute) and cached, outside the timed steps
    generate = ("import sys; sys.path.insert(0, 'benchmarks'); import engine_throughput as e; "
                "e.candle_file(1_000_000); e.candle_file(200_000)")
    subprocess.run([sys.executable, "-c", generate], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for step, argv in plan.items():
            if args.only and step not in args.only:
                continue
            run["steps"][step] = run_step(step, argv, Path(tmp), timeout=900)
    run["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    run["code_end"] = code_state()  # the code may change under a long run on a shared working tree
    run["total_wall_s"] = time.perf_counter() - started
    run["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    previous = None
    if latest.exists():
        shutil.copyfile(latest, previous_path)
        previous = json.loads(previous_path.read_text())
    latest.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    report_path.write_text(render(run, previous), encoding="utf-8")
    print(f"wrote {report_path} ({run['total_wall_s'] / 60:.1f} min)", file=sys.stderr)
    failed = [name for name, step in run["steps"].items() if step["meta"]["exit_code"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
