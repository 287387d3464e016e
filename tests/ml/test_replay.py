"""Replay with --strategy ml: deterministic, identical to candle-by-candle processing, survives SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from papertrader.config import load_settings
from papertrader.engine.pipeline import Engine
from papertrader.engine.runner import build_breakers
from papertrader.ledger.store import LedgerStore
from papertrader.market.candle_file import CandleFileReader
from papertrader.strategy.ml import MlStrategy
from tests.ml.conftest import SAMPLE


def _engine(state_dir: Path) -> Engine:
    settings = load_settings({"strategy": "ml", "state_dir": state_dir, "symbol": "BTC-USDT"})
    strategy = MlStrategy(settings.ml)
    strategy.bind_breaker(build_breakers(settings).breakers["prediction"])
    engine = Engine(settings.engine, settings.risk, settings.exchange, strategy,
                    LedgerStore(state_dir / "state.db"))
    engine.restore()
    return engine


def _fills(engine: Engine) -> list[tuple]:
    return [tuple(map(str, row)) for row in engine.store.fill_rows()]


def test_replay_equals_candle_by_candle_with_state_round_trips(tmp_path):
    reader = CandleFileReader(SAMPLE)
    candles = reader.read(3000)
    reader.close()
    batch = _engine(tmp_path / "batch")
    for candle in candles:
        batch.process(candle)
    batch.commit({})
    live = _engine(tmp_path / "live")
    for i, candle in enumerate(candles):
        live.process(candle)
        live.commit({})  # a live worker commits after every candle
        if i % 700 == 699:  # and may be restarted: rebuild from the JSON checkpoint
            state = json.loads(json.dumps(live.state()))
            live.store.close()
            live = _engine(tmp_path / "live")
            assert live.state() == state
    live.commit({})
    assert _fills(batch) == _fills(live)
    assert len(_fills(batch)) > 0
    assert batch.strategy.state() == live.strategy.state()


def test_cli_replay_is_deterministic_and_survives_sigkill(tmp_path):
    settings = "COMMIT_EVERY_CANDLES: 300\n"
    (tmp_path / "cfg.yaml").write_text(settings)
    base = [sys.executable, "-m", "papertrader.cli", "run", "--strategy", "ml", "--source", "replay",
            "--replay-file", str(SAMPLE), "--http-port", "0", "--ws-port", "0", "--config", str(tmp_path / "cfg.yaml"),
            "--speed", "2000"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = subprocess.run([*base, "--state-dir", str(tmp_path / "ref"), "--speed", "max"], capture_output=True,
                         text=True, timeout=300, env=env)
    assert ref.returncode == 0, ref.stderr[-2000:]
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([*base, "--state-dir", str(killed_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    trades = killed_dir / "logs" / "trades.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not trades.exists() or trades.read_text().count("\n") < 6):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([*base, "--state-dir", str(killed_dir), "--speed", "max"], capture_output=True,
                             text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (killed_dir / "logs" / "trades.csv").read_bytes() == (tmp_path / "ref" / "logs" / "trades.csv").read_bytes()
    assert (killed_dir / "logs" / "portfolio.csv").read_bytes() == \
        (tmp_path / "ref" / "logs" / "portfolio.csv").read_bytes()
    assert json.loads(ref.stdout.strip().splitlines()[-1])["trades"] > 0


def test_every_prediction_reaches_the_listeners_in_order(tmp_path):
    """The model's prediction travels in the signal (Signal.prediction) and the engine publishes each one."""
    reader = CandleFileReader(SAMPLE)
    candles = reader.read(600)
    reader.close()
    engine = _engine(tmp_path / "p")
    heard = []

    class Predictions:
        def on_prediction(self, prediction):
            heard.append(prediction)

        def on_fill(self, fill): ...

        def on_portfolio(self, snapshot): ...

    engine.listeners.append(Predictions())
    engine.process_batch(candles)
    assert len(heard) == engine.strategy.predictions > 400
    assert [p.ts for p in heard] == sorted({p.ts for p in heard})
    assert heard[-1].ts == candles[-1].ts and heard[-1].probability_up == engine.strategy.last_probability
