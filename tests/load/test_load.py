"""Load and soak, bounded for CI: concurrent replay workers, WebSocket clients (slow and hostile ones included)
and a 200k-candle soak with the worker's RSS sampled. The full sizes of issue 9 (50 workers, 1,000 clients, a
1M-candle soak, the operator at 100 PaperTraders) are the ``slow`` tests below (``pytest -m slow tests/load``)
and part of ``make bench`` (benchmarks/REPORT.md)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import load_soak as load
import ws_fanout

from tests.conftest import synthetic_candles, write_candle_file


@pytest.fixture(scope="module")
def candles_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the project's own generator, not benchmarks/data (CI has no cached file)
    return write_candle_file(tmp_path_factory.mktemp("load") / "candles.csv", synthetic_candles(200_000))


def check_replay(result: dict, workers: int, candles: int) -> None:
    assert result["exit_codes_nonzero"] == 0, result["errors"]
    assert result["identical_summaries"], result["summary"]  # same decisions however loaded the machine is
    assert result["summary"]["candles"] == candles
    assert result["summary"]["trades"] > 0
    assert result["total_candles"] == workers * candles
    assert result["worker_peak_rss_mib_max"] < 250


def check_soak(result: dict, candles: int, bound_mib: float) -> None:
    assert result["exit_code"] == 0, result["log_tail"]
    assert result["candles"] == candles
    assert result["summary"]["trades"] > 1000  # still trading at the end: the halts are off
    assert result["samples"] >= 10
    assert result["rss_growth_mib_after_warmup"] < bound_mib, result


def check_ws(summary: dict) -> None:
    assert summary["candles_processed"] == summary["candles"]
    assert summary["healthz_status"] == 200
    # every reading client ends on the engine's last candle, hostile and silent neighbours notwithstanding
    assert summary["readers"] > 0 and summary["readers_complete"] == summary["readers"], summary
    outcomes = summary["hostile_outcomes"]
    if summary["hostile"]:
        assert outcomes.get("oversize_closed_1009", 0) >= 1, outcomes  # frames over 4 KiB are refused
        assert outcomes.get("garbage_messages_received", 0) >= 1, outcomes  # junk input is ignored, not fatal
        assert outcomes.get("churn_cycles", 0) >= 1, outcomes
        assert summary["ignored_inputs"] >= 1
    assert summary["slow_disconnects"] >= 1  # the snapshot flooders (and silent clients when their backlog fills)


def ws_run(clients: int, silent: int, hostile: int, candles: int, rate: float) -> dict:
    args = SimpleNamespace(clients=clients, silent=silent, hostile=hostile, candles=candles, rate=rate, rounds=1,
                           clients_priority="normal")
    ws_fanout._raise_fd_limit()
    base = asyncio.run(ws_fanout.run_worker(0, 0, candles, rate))
    loaded = asyncio.run(ws_fanout.run_worker(clients, silent, candles, rate, hostile))
    return ws_fanout.summarize([base], [loaded], args)


def test_replay_workers_concurrently(candles_file: Path, tmp_path: Path) -> None:
    source = load.sliced_file(5_000, tmp_path, candles_file)
    check_replay(load.run_replay(5, 5_000, timeout=120, source=source), 5, 5_000)


def test_websocket_clients_slow_and_hostile() -> None:
    check_ws(ws_run(clients=100, silent=10, hostile=10, candles=500, rate=100))


def test_soak_rss_does_not_grow(candles_file: Path) -> None:
    check_soak(load.run_soak(200_000, 0.05, timeout=120, source=candles_file), 200_000, bound_mib=8)


@pytest.mark.slow
def test_full_replay_fifty_workers() -> None:
    check_replay(load.run_replay(50, 20_000, timeout=600), 50, 20_000)


@pytest.mark.slow
def test_full_websocket_thousand_clients() -> None:
    check_ws(ws_run(clients=1000, silent=100, hostile=50, candles=1500, rate=50))


@pytest.mark.slow
def test_full_soak_million_candles() -> None:
    check_soak(load.run_soak(1_000_000, 0.5, timeout=900), 1_000_000, bound_mib=16)


@pytest.mark.slow
def test_full_operator_hundred_papertraders() -> None:
    import operator_convergence

    result = asyncio.run(operator_convergence.run(100, 5, timeout=300))
    assert result["children"] == 1500
    assert result["converged_s"] < 300
