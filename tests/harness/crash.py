"""Crash harness: SIGKILL a worker at seeded random moments, restart it with the same arguments, and compare its
final trades.csv / portfolio.csv (bytes) and its ledger (the ``fills`` and ``marks`` tables of state.db, row by
row) with an uninterrupted run.

    python -m tests.harness.crash --kills 20 --source replay --replay-file FILE.csv      # one scenario
    python -m tests.harness.crash --kills 20 --source synthetic --max-candles 30000
    python -m tests.harness.crash --kills 20 --live                                     # fake-live (Bitvavo)
    python -m tests.harness.crash --full                                                # docs/proof.md matrix

Where the kills landed is classified without hooks in the product: after each kill the harness compares the
CSV files on disk with the sizes the last committed checkpoint recorded (bigger: the kill fell between a CSV
write and its commit, or inside the commit), counts fills committed since the previous kill, and reads the
worker's log for the phase it had reached (start-up, live backfill, the candle loop).

Exit status 0 when every file is byte-identical; the last line is a JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

COMPARED = ("logs/trades.csv", "logs/portfolio.csv")


def _command(state_dir: Path, worker_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "papertrader.cli", "run", "--state-dir", str(state_dir), "--http-port", "0",
            "--ws-port", "0", *worker_args]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(extra)
    return env


MARKER = b"websocket feed listening"  # logged once start-up (imports, state, servers) is over; the run begins
STARTUP_SHARE = 0.15  # this share of kills is aimed at start-up (imports, opening the ledger, recovery)


BACKFILL_MARKER = b"exchange clock synchronised"  # a live worker then fetches its warm-up / missed candles


def _wait_marker(state_dir: Path, offset: int, process: subprocess.Popen[bytes], timeout: float = 600,
                 marker: bytes = MARKER) -> bool:
    """Poll the worker log (from ``offset``) until start-up is over; False if the process ended first."""
    path = state_dir / "logs" / "enhanced_paper_trader.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(offset)
                if marker in handle.read():
                    return True
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def run_uninterrupted(state_dir: Path, worker_args: list[str], env: dict[str, str]) -> float:
    """Run to the end once; returns the seconds it ran after start-up (used to spread the kills)."""
    process = subprocess.Popen(_command(state_dir, worker_args), env=_env(env), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _wait_marker(state_dir, 0, process)
    started = time.monotonic()
    if process.wait(timeout=600) != 0:
        raise RuntimeError(f"uninterrupted run exited {process.returncode}")
    return time.monotonic() - started


def _checkpoint(state_dir: Path) -> tuple[dict[str, int], int, int]:
    """(file sizes of the last committed checkpoint, committed fills, committed items) -- read-only."""
    path = state_dir / "state.db"
    if not path.exists():
        return {}, 0, 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT file_sizes, items FROM checkpoint WHERE id = 1").fetchone()
        fills = db.execute("SELECT count(*) FROM fills").fetchone()[0]
    except sqlite3.Error:
        return {}, 0, 0
    finally:
        db.close()
    return (json.loads(row[0]) if row else {}), int(fills), int(row[1]) if row else 0


def _classify(state_dir: Path, log_offset: int, fills_before: int, items_before: int) -> dict[str, Any]:
    """Where a kill landed, judged from what it left on disk (no hooks in the worker)."""
    sizes, fills, items = _checkpoint(state_dir)
    files = {"trades": "logs/trades.csv", "portfolio": "logs/portfolio.csv", "record": "record.csv"}
    uncommitted = [name for name, rel in files.items() if name in sizes and (state_dir / rel).exists()
                   and (state_dir / rel).stat().st_size > sizes[name]]
    log_path = state_dir / "logs" / "enhanced_paper_trader.log"
    text = ""
    if log_path.exists():
        with open(log_path, "rb") as handle:
            handle.seek(log_offset)
            text = handle.read().decode("utf-8", "replace")
    if "exchange clock synchronised" in text and "restart backfill:" not in text and "warm-up:" not in text:
        phase = "live backfill"  # clock synchronised, history / missed candles not yet all fetched
    elif items == items_before and not uncommitted:
        phase = "start-up"  # nothing new committed or written
    else:
        phase = "loop"
    return {"phase": phase, "uncommitted_csv": uncommitted, "new_fills": fills - fills_before,
            "items": items}


def _log_size(state_dir: Path) -> int:
    path = state_dir / "logs" / "enhanced_paper_trader.log"
    return path.stat().st_size if path.exists() else 0


def run_with_kills(state_dir: Path, worker_args: list[str], env: dict[str, str], kills: int, duration: float,
                   seed: int, min_delay: float = 0.05, backfill_share: float = 0.0,
                   backfill_window: float = 0.2) -> dict[str, Any]:
    """Start, SIGKILL at a random moment, restart ... until ``kills`` kills happened; then run to the end.

    ``duration`` is how long an uninterrupted run takes after start-up. Most kills wait for the end of start-up
    (the log's MARKER line) and then a random time with mean ``duration / kills``, so that they land all along
    the run (the loop, fills, commits, CSV writes, a live worker's backfill and stream) rather than after it;
    STARTUP_SHARE of them are aimed at start-up itself (imports, opening the ledger, recovery) and
    ``backfill_share`` (live) at the REST warm-up / restart backfill that follows the clock sync."""
    rng = random.Random(seed)
    done = 0
    starts = 0
    landed: list[dict[str, Any]] = []
    startup_s = 1.0  # measured on every start
    first_finish: int | None = None  # kills that happened before a run first reached the end (later ones hit a
    # finished worker's start-up and exit: still a restart, no longer mid-run)
    _, fills_before, items_before = _checkpoint(state_dir)
    while True:
        starts += 1
        log_offset = _log_size(state_dir)
        started_at = time.monotonic()
        process = subprocess.Popen(_command(state_dir, worker_args), env=_env(env), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        if done < kills:
            aim = rng.random()
            if aim < STARTUP_SHARE:
                delay = rng.uniform(min_delay, max(startup_s, min_delay * 2))
            elif aim < STARTUP_SHARE + backfill_share:  # live: right after the clock sync, in the REST backfill
                _wait_marker(state_dir, log_offset, process, marker=BACKFILL_MARKER)
                delay = rng.uniform(0.0, backfill_window)
            else:
                if _wait_marker(state_dir, log_offset, process):
                    startup_s = time.monotonic() - started_at
                delay = rng.uniform(0.0, 2.0 * duration / max(kills, 1))
            try:
                process.wait(timeout=max(delay, 0.001))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                done += 1
                where = _classify(state_dir, log_offset, fills_before, items_before)
                fills_before, items_before = where["new_fills"] + fills_before, where["items"]
                landed.append(where)
                continue
        code = process.wait(timeout=600)
        if code != 0:
            raise RuntimeError(f"worker exited {code} after {done} kills")
        if first_finish is None:
            first_finish = done
        if done >= kills:
            return {"kills": done, "starts": starts, "kills_before_first_finish": first_finish,
                    "landed": _summary(landed)}


def _summary(landed: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for where in landed:
        out[where["phase"]] = out.get(where["phase"], 0) + 1
        if where["uncommitted_csv"]:
            out["between_csv_write_and_commit"] = out.get("between_csv_write_and_commit", 0) + 1
        if where["new_fills"]:
            out["after_new_fills"] = out.get("after_new_fills", 0) + 1
    return out


def ledger_rows(state_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The ledger's content: every fill and mark, in order (compared row by row, not as file bytes)."""
    db = sqlite3.connect(f"file:{state_dir / 'state.db'}?mode=ro", uri=True)
    try:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() for table in ("fills", "marks")}
    finally:
        db.close()


def compare(a: Path, b: Path) -> list[str]:
    """Names of compared files (and ledger tables) that differ."""
    differs = [name for name in COMPARED if (a / name).read_bytes() != (b / name).read_bytes()]
    rows_a, rows_b = ledger_rows(a), ledger_rows(b)
    differs += [f"state.db:{table}" for table in rows_a if rows_a[table] != rows_b[table]]
    return differs


def crash_matrix(workdir: Path, worker_args: list[str], kills: int, seed: int,
                 env: dict[str, str] | None = None) -> dict[str, Any]:
    env = {"COMMIT_EVERY_CANDLES": "97", "PORTFOLIO_SNAPSHOT_EVERY": "5", **(env or {})}
    duration = run_uninterrupted(workdir / "reference", worker_args, env)
    report = run_with_kills(workdir / "killed", worker_args, env, kills, duration, seed)
    report["differs"] = compare(workdir / "reference", workdir / "killed")
    report["identical"] = not report["differs"]
    report["trades"] = sum(1 for _ in open(workdir / "reference" / "logs" / "trades.csv")) - 1
    report["fills"] = len(ledger_rows(workdir / "reference")["fills"])
    return report


# --- fake-live: a worker on --source bitvavo against the fake exchange ------------------------------------------
LIVE_ENV = {"HTTP_HOST": "127.0.0.1", "HTTP_PORT": "0", "WS_PORT": "0", "WS_STALE_SECONDS": "2",
            "API_TIMEOUT_SECONDS": "2", "RECONNECT_INITIAL_BACKOFF_SECONDS": "0.05",
            "RECONNECT_MAX_BACKOFF_SECONDS": "0.5", "CANDLE_CLOSE_GRACE_SECONDS": "0",
            "CLOCK_SYNC_INTERVAL_SECONDS": "0.5"}


class FakeExchangeProcess:
    """``papertrader fake-exchange --synthetic N`` in its own process (it outlives every worker kill)."""

    def __init__(self, count: int, seed: int, history: int, speed: float, rest_delay: float = 0.0) -> None:
        self.count, self.seed, self.history, self.speed = count, seed, history, speed
        self.rest_delay = rest_delay
        self.process: subprocess.Popen[str] | None = None
        self.urls: dict[str, str] = {}

    def __enter__(self) -> FakeExchangeProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "papertrader.cli", "fake-exchange", "--synthetic", str(self.count), "--seed",
             str(self.seed), "--history", str(self.history), "--speed", repr(self.speed), "--rest-delay",
             repr(self.rest_delay)],
            env=_env({}), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        while len(self.urls) < 2:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("fake exchange did not start")
            key, _, value = line.strip().partition("=")
            if key in ("BITVAVO_REST_URL", "BITVAVO_WS_URL"):
                self.urls[key] = value
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def candles(self) -> list[Any]:
        from papertrader.market.fake_exchange import _synthetic

        return _synthetic(self.count, "1m", self.seed)


def live_crash_matrix(workdir: Path, kills: int, seed: int, max_candles: int = 700, speed: float = 3000.0,
                      env: dict[str, str] | None = None) -> dict[str, Any]:
    """SIGKILL a live worker (fake Bitvavo, fast virtual clock: a bar every 60000/speed ms) during start-up, the
    warm-up / restart backfill and the stream; each restart backfills what it missed from REST. Then:
    the recording is one contiguous slice of the exchange's candles with exactly ``max_candles`` rows (nothing lost,
    nothing invented), and trades.csv, portfolio.csv and the ledger equal a replay of that slice never interrupted.
    """
    from papertrader.market.candle_file import HEADER, format_candle

    env = {"COMMIT_EVERY_CANDLES": "7", "PORTFOLIO_SNAPSHOT_EVERY": "5", **LIVE_ENV, **(env or {})}
    bars_per_s = speed / 60.0
    # the exchange must outlast every run: kills * mean delay + the final run, with margin
    # the exchange runs on, so a live run takes about max_candles / bars_per_s of wall time however often it is
    # killed (restarts catch up from REST); each life (start-up + delay) uses up some of it
    duration = max_candles / bars_per_s
    count = int(1500 + max_candles + bars_per_s * (kills * 15 + 120))
    # every REST answer takes 50 ms, so the warm-up / restart backfill (/markets, candle pages) lasts long enough
    # for a quarter of the kills to be aimed into it
    with FakeExchangeProcess(count, seed, 1500, speed, rest_delay=0.05) as fake:
        live_env = {**env, **fake.urls}
        args = ["--source", "bitvavo", "--symbol", "BTC-EUR", "--max-candles", str(max_candles), "--record",
                str(workdir / "killed" / "record.csv")]
        # start-ups (2-4 s) use up the run too: a quarter of it spread over the delays after start-up
        report = run_with_kills(workdir / "killed", args, live_env, kills, duration / 4, seed, backfill_share=0.25,
                                backfill_window=0.15)
        exchange = fake.candles()
    rows = (workdir / "killed" / "record.csv").read_text().splitlines()[1:]
    index = {format_candle(c): i for i, c in enumerate(exchange)}
    first = index.get(rows[0] + "\n") if rows else None
    contiguous = (first is not None and len(rows) == max_candles
                  and [r + "\n" for r in rows] == [format_candle(c) for c in exchange[first:first + max_candles]])
    report["recorded"] = len(rows)
    report["contiguous_slice"] = contiguous
    if not contiguous:
        report.update(identical=False, differs=["record.csv"])
        return report
    assert first is not None
    slice_file = workdir / "slice.csv"
    slice_file.write_text(HEADER + "".join(format_candle(c) for c in exchange[first:first + max_candles]))
    run_uninterrupted(workdir / "reference", ["--source", "replay", "--symbol", "BTC-EUR", "--replay-file",
                                              str(slice_file)], env)
    report["differs"] = compare(workdir / "reference", workdir / "killed")
    report["identical"] = not report["differs"]
    report["trades"] = sum(1 for _ in open(workdir / "reference" / "logs" / "trades.csv")) - 1
    report["fills"] = len(ledger_rows(workdir / "reference")["fills"])
    report["backfilled_restarts"] = (workdir / "killed" / "logs" / "enhanced_paper_trader.log").read_text(
        encoding="utf-8", errors="replace").count("restart backfill:")
    return report


def full_matrix(workdir: Path, kills_per_source: int = 40, seed: int = 1) -> dict[str, Any]:
    """The documented full run (docs/proof.md): replay, synthetic and fake-live, ``kills_per_source`` each."""
    from tests.conftest import synthetic_candles, write_candle_file

    workdir.mkdir(parents=True, exist_ok=True)
    data = write_candle_file(workdir / "FULL-EUR_1m.csv", synthetic_candles(60_000, seed=seed + 5))
    results = {
        "replay": crash_matrix(workdir / "replay", ["--source", "replay", "--replay-file", str(data)],
                               kills_per_source, seed, {"COMMIT_EVERY_CANDLES": "13"}),
        "synthetic": crash_matrix(workdir / "synthetic", ["--source", "synthetic", "--seed", str(seed + 8),
                                                          "--max-candles", "40000"], kills_per_source, seed + 1,
                                  {"COMMIT_EVERY_CANDLES": "13"}),
        "fake-live": live_crash_matrix(workdir / "live", kills_per_source, seed + 2, max_candles=8000),
    }
    return {"kills": sum(r["kills"] for r in results.values()),
            "identical": all(r["identical"] for r in results.values()), "scenarios": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--live", action="store_true", help="fake-live scenario (fake Bitvavo, --source bitvavo)")
    parser.add_argument("--full", action="store_true", help="replay + synthetic + fake-live, --kills each")
    args, worker_args = parser.parse_known_args()
    import tempfile

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crash-"))
    if args.full:
        report = full_matrix(workdir, args.kills, args.seed)
    elif args.live:
        report = live_crash_matrix(workdir, args.kills, args.seed)
    else:
        report = crash_matrix(workdir, worker_args, args.kills, args.seed)
    print(json.dumps(report))
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
