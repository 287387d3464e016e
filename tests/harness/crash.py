"""Crash harness: SIGKILL a worker at seeded random moments, restart it with the same arguments, and compare its
final trades.csv / portfolio.csv with an uninterrupted run.

    python -m tests.harness.crash --kills 20 --source replay --replay-file FILE.csv      # one scenario
    python -m tests.harness.crash --kills 20 --source synthetic --max-candles 30000

Exit status 0 when every file is byte-identical; the last line is a JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
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


def run_uninterrupted(state_dir: Path, worker_args: list[str], env: dict[str, str]) -> float:
    """Run to the end once; returns how long it took (used to spread the kills)."""
    started = time.monotonic()
    subprocess.run(_command(state_dir, worker_args), env=_env(env), check=True, capture_output=True, timeout=600)
    return time.monotonic() - started


def run_with_kills(state_dir: Path, worker_args: list[str], env: dict[str, str], kills: int, duration: float,
                   seed: int) -> dict[str, Any]:
    """Start, SIGKILL after a random delay, restart ... until ``kills`` kills happened; then run to the end."""
    rng = random.Random(seed)
    done = 0
    starts = 0
    while True:
        starts += 1
        process = subprocess.Popen(_command(state_dir, worker_args), env=_env(env), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        if done < kills:
            # delays spread over a whole run (start-up included), so kills land in imports, warm-up, the loop,
            # commits and CSV writes alike
            try:
                process.wait(timeout=rng.uniform(0.05, duration))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                done += 1
                continue
        code = process.wait(timeout=600)
        if code != 0:
            raise RuntimeError(f"worker exited {code} after {done} kills")
        if done >= kills:
            return {"kills": done, "starts": starts}


def compare(a: Path, b: Path) -> list[str]:
    """Names of compared files that differ."""
    return [name for name in COMPARED if (a / name).read_bytes() != (b / name).read_bytes()]


def crash_matrix(workdir: Path, worker_args: list[str], kills: int, seed: int,
                 env: dict[str, str] | None = None) -> dict[str, Any]:
    env = {"COMMIT_EVERY_CANDLES": "97", "PORTFOLIO_SNAPSHOT_EVERY": "5", **(env or {})}
    duration = run_uninterrupted(workdir / "reference", worker_args, env)
    report = run_with_kills(workdir / "killed", worker_args, env, kills, duration, seed)
    report["differs"] = compare(workdir / "reference", workdir / "killed")
    report["identical"] = not report["differs"]
    report["trades"] = sum(1 for _ in open(workdir / "reference" / "logs" / "trades.csv")) - 1
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    args, worker_args = parser.parse_known_args()
    import tempfile

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crash-"))
    report = crash_matrix(workdir, worker_args, args.kills, args.seed)
    print(json.dumps(report))
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
