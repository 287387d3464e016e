"""Where the engine's replay time goes, by stage, in microseconds per candle.

    python benchmarks/engine_profile.py                        # 200k candles of the benchmark's synthetic file
    python benchmarks/engine_profile.py --file real --candles 1000000
    python benchmarks/engine_profile.py --replay-file FILE.csv --risk default
    python benchmarks/engine_profile.py --cprofile 25          # also the 25 functions with the most own time

It runs the real ``papertrader run`` loop (:class:`~papertrader.engine.runner.WorkerRunner`, with its listeners
and services, the settings of ``benchmarks/engine_throughput.py``) and times, per candle: reading and parsing the
CSV (the source's ``next_batch``), each pipeline stage of ``Engine.STAGES`` (through the engine's stage observer,
as tracing hears of them), ``process_batch`` beyond its stages (the loop itself), the ledger commit, and the rest
of the run loop (tick reporting to listeners, progress, the event loop). The cost of the timing itself is measured
first and taken off, so the rows add up to the run's wall time within noise (the rows are estimates: what the
correction misses lands in the loop row). Stages are timed in wall time, since a CPU-time clock is a system call
that costs more than most stages: run it on a quiet machine (when the printed wall time is well above the process
CPU time, other load distorted the rows). The process CPU time of the same run is printed for comparison with
``engine_throughput.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_throughput import PURE_SMA, candle_file, real_candle_file  # noqa: E402


class StageClock:
    """Accumulates the wall time of wrapped calls, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.overhead = 0.0  # seconds one wrapped call costs beyond the call itself

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter
        seconds, calls = self.seconds, self.calls
        seconds.setdefault(name, 0.0)
        calls.setdefault(name, 0)

        def timed(*args: Any) -> Any:
            started = clock()
            try:
                return function(*args)
            finally:
                seconds[name] += clock() - started
                calls[name] += 1

        return timed

    def wrap_async(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter
        seconds, calls = self.seconds, self.calls
        seconds.setdefault(name, 0.0)
        calls.setdefault(name, 0)

        async def timed(*args: Any) -> Any:
            started = clock()
            try:
                return await function(*args)
            finally:
                seconds[name] += clock() - started
                calls[name] += 1

        return timed

    def calibrate(self, rounds: int = 200_000) -> None:
        """The cost of the wrapper itself (two clock reads, the try/finally, two dict updates)."""
        probe = StageClock()
        noop = probe.wrap("noop", lambda *args: None)
        bare = lambda *args: None  # noqa: E731
        clock = time.perf_counter
        started = clock()
        for _ in range(rounds):
            bare(1)
        plain = clock() - started
        started = clock()
        for _ in range(rounds):
            noop(1)
        self.overhead = max(0.0, (clock() - started - plain) / rounds)

    def net(self, name: str) -> float:
        return max(0.0, self.seconds.get(name, 0.0) - self.calls.get(name, 0) * self.overhead)


class StageTimer:
    """The engine's stage observer (``Engine.set_observer``): the wall time of every stage of every item, and of
    each commit. Its own cost per stage (two calls, two clock reads) is measured by :meth:`calibrate`."""

    def __init__(self, stages: tuple[str, ...]) -> None:
        self.seconds: dict[str, float] = dict.fromkeys((*stages, "commit"), 0.0)
        self.calls: dict[str, int] = dict.fromkeys((*stages, "commit"), 0)
        self.items = 0
        self.stage_overhead = 0.0  # seconds a stage_started/stage_ended pair costs
        self.item_overhead = 0.0  # seconds an item_started/item_ended pair costs
        self._clock = time.perf_counter
        self._started = 0.0

    def item_started(self, item: Any) -> bool:
        self.items += 1
        return True

    def stage_started(self, stage: str) -> None:
        self._started = self._clock()

    def stage_ended(self, stage: str, result: Any) -> None:
        self.seconds[stage] += self._clock() - self._started
        self.calls[stage] += 1

    def item_ended(self, verdict: Any) -> None:
        pass

    def commit_started(self) -> None:
        self._started = self._clock()

    def commit_ended(self) -> None:
        self.seconds["commit"] += self._clock() - self._started
        self.calls["commit"] += 1

    def calibrate(self, rounds: int = 200_000) -> None:
        probe = StageTimer(("noop",))
        clock = time.perf_counter
        started = clock()
        for _ in range(rounds):
            probe.stage_started("noop")
            probe.stage_ended("noop", None)
        self.stage_overhead = (clock() - started) / rounds
        started = clock()
        for _ in range(rounds):
            probe.item_started(None)
            probe.item_ended(None)
        self.item_overhead = (clock() - started) / rounds

    def net(self, stage: str) -> float:
        """A stage's time less what timing it cost (the clock read between the two timestamps, about half)."""
        return max(0.0, self.seconds[stage] - self.calls[stage] * self.stage_overhead / 2)

    def overhead(self) -> float:
        """Seconds the observer itself cost over the run."""
        return (sum(self.calls.values()) * self.stage_overhead) + self.items * self.item_overhead


def profile(path: Path, candles: int | None, risk: str, workdir: Path, top: int) -> dict[str, Any]:
    from papertrader.config import load_settings
    from papertrader.cli import build_worker

    settings = load_settings({"source": "replay", "replay_file": path, "state_dir": workdir / "pt",
                              "symbol": "BENCH-EUR", "candle_interval": "1m", "http_port": 0, "ws_port": 0,
                              "max_candles": candles, **(PURE_SMA if risk == "off" else {})})
    clock = StageClock()
    clock.calibrate()
    runner, _ = build_worker(settings, console_logs=False)
    engine = runner.engine
    timer = StageTimer(engine.STAGES)
    timer.calibrate()
    engine.set_observer(timer)
    engine.process_batch = clock.wrap("process", engine.process_batch)  # type: ignore[method-assign]
    runner.source.next_batch = clock.wrap_async("read", runner.source.next_batch)  # type: ignore[method-assign]
    profiler = cProfile.Profile() if top else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    summary = asyncio.run(runner.run())
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    count = summary["candles"]
    rows: list[tuple[str, float]] = [("read + parse CSV (source.next_batch)", clock.net("read"))]
    stage_total = 0.0
    for stage in engine.STAGES:
        seconds = timer.net(stage)
        stage_total += seconds
        rows.append((f"stage {stage}", seconds))
    # the observer runs inside process_batch: take its whole cost off process too
    dispatch = max(0.0, clock.net("process") - timer.overhead() + timer.calls["commit"] * timer.stage_overhead
                   - stage_total)
    rows.append(("process_batch() beyond its stages (loop, dispatch)", dispatch))
    rows.append(("ledger commit (SQLite, CSV flush)", timer.net("commit")))
    accounted = sum(seconds for _, seconds in rows)
    wrapped_overhead = sum(clock.calls.values()) * clock.overhead + timer.overhead()
    rows.append(("run loop rest (tick reporting, progress, event loop, start/stop)",
                 max(0.0, wall - accounted - wrapped_overhead)))
    result = {"file": path.name, "candles": count, "trades": summary["trades"], "cpu_s": cpu, "wall_s": wall,
              "timer_overhead_us": timer.stage_overhead * 1e6,
              "stages_us_per_candle": {label: seconds / count * 1e6 for label, seconds in rows}}
    print(f"{path.name}: {count:,} candles, {summary['trades']:,} trades; process CPU {cpu:.2f} s "
          f"({count / cpu:,.0f} candles/s), wall {wall:.2f} s with the timers "
          f"(each timed stage costs {timer.stage_overhead * 1e6:.2f} us, taken off)")
    if wall > 1.25 * cpu:
        print(f"note: wall time is {wall / cpu:.2f}x the process CPU time: other load on the machine distorts the rows")
    print(f"{'where':66s} {'us/candle':>10s} {'share':>6s}")
    total = sum(seconds for _, seconds in rows)
    for label, seconds in rows:
        print(f"{label:66s} {seconds / count * 1e6:10.3f} {100 * seconds / total:5.1f}%")
    print(f"{'total':66s} {total / count * 1e6:10.3f}")
    if profiler is not None:
        print(f"\ntop {top} functions by own time (cProfile; its overhead inflates small functions):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", choices=("synthetic", "real"), default="synthetic",
                        help="the benchmark's synthetic trade-heavy file or its real-data file")
    parser.add_argument("--replay-file", type=Path, help="any candle file instead")
    parser.add_argument("--candles", type=int, default=200_000, help="candles to replay (of a 1M file)")
    parser.add_argument("--risk", choices=("off", "default"), default="off")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="also print the top N functions")
    args = parser.parse_args()
    if args.replay_file is not None:
        path = args.replay_file
    elif args.file == "real":
        found = real_candle_file(1_000_000)
        if found is None:
            parser.error("the real candle file is missing (set PAPERTRADER_REAL_CANDLES)")
        path = found
    else:
        path = candle_file(1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        profile(path, args.candles, args.risk, Path(tmp), args.cprofile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
