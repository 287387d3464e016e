"""The engine's stage observer (what tracing and benchmarks/engine_profile.py hear): every stage of every item it
asks for, in order, each commit, and the same results as a run without an observer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from papertrader.config import load_settings
from papertrader.engine.pipeline import Engine
from papertrader.engine.runner import WorkerRunner
from papertrader.events import CandleVerdict, Signal
from papertrader.market.candle import Candle
from tests.conftest import synthetic_candles, write_candle_file
from tests.engine.test_fast_paths import INTERVAL, _with_anomalies


class Recorder:
    """Asks for every other item and writes down what it hears."""

    def __init__(self) -> None:
        self.calls = 0
        self.items: list[list[tuple[str, Any]]] = []  # per observed item: (event, payload)
        self.commits: list[str] = []
        self.open_stage: str | None = None

    def item_started(self, item: Candle) -> bool:
        self.calls += 1
        if self.calls % 2:
            return False
        self.items.append([("item", item)])
        return True

    def stage_started(self, stage: str) -> None:
        assert self.open_stage is None, "stages do not nest"
        self.open_stage = stage
        self.items[-1].append(("start", stage))

    def stage_ended(self, stage: str, result: Any) -> None:
        assert self.open_stage == stage
        self.open_stage = None
        self.items[-1].append(("end", (stage, result)))

    def item_ended(self, verdict: CandleVerdict) -> None:
        self.items[-1].append(("verdict", verdict))

    def commit_started(self) -> None:
        self.commits.append("start")

    def commit_ended(self) -> None:
        self.commits.append("end")


def _run(tmp: Path, name: str, path: Path, observer: Recorder | None) -> dict[str, Any]:
    settings = load_settings({"source": "replay", "replay_file": path, "state_dir": tmp / name, "symbol": "BTC-EUR",
                              "candle_interval": "1m", "http_port": 0, "ws_port": 0, "commit_every_candles": 500})
    runner = WorkerRunner(settings, console_logs=False)
    runner.engine.set_observer(observer)
    summary = asyncio.run(runner.run())
    summary.pop("duration_s")
    db = sqlite3.connect(tmp / name / "state.db")
    ledger = [db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() for table in ("fills", "marks", "events")]
    db.close()
    return {"summary": summary, "ledger": ledger, "trades": (tmp / name / "logs" / "trades.csv").read_bytes()}


def test_observer_hears_every_stage_in_order_and_changes_nothing(tmp_path: Path) -> None:
    items = _with_anomalies(synthetic_candles(3000, seed=4, interval_ms=INTERVAL), 4)
    path = write_candle_file(tmp_path / "in.csv", [item for item in items if type(item) is Candle])  # type: ignore[misc]
    observer = Recorder()
    heard = _run(tmp_path, "heard", path, observer)
    assert heard == _run(tmp_path, "quiet", path, None)
    assert observer.calls == heard["summary"]["candles"] + heard["summary"]["rejected_candles"] + \
        heard["summary"]["duplicates_ignored"]
    accepted = skipped = signals = 0
    for events in observer.items:
        verdict = events[-1][1]
        stages = [payload for kind, payload in events if kind == "start"]
        ended = [payload[0] for kind, payload in events if kind == "end"]
        assert stages == ended
        if verdict.status == "rejected" or verdict.status == "duplicate":
            assert stages == ["quality"]
            skipped += 1
        else:
            assert tuple(stages) == Engine.STAGES
            accepted += 1
            prediction = next(payload[1] for kind, payload in events if kind == "end" and payload[0] == "prediction")
            signals += isinstance(prediction, Signal)
        assert dict(payload for kind, payload in events if kind == "end")["quality"] is verdict
    assert accepted > 1000 and skipped > 20 and signals > 1000
    assert len(observer.items) == observer.calls // 2
    assert observer.commits == ["start", "end"] * (len(observer.commits) // 2) and len(observer.commits) >= 12
