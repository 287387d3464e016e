"""The hot path's shortcuts give exactly what the general code gives (issue 19: speed without changing a byte).

- the quality gate's branch for the next in-order candle against its general path (forced by a custom check that
  never objects), on candles with every kind of anomaly: same verdicts, counters, score and state, candle by candle;
  and its runs of common-case candles (``accept_run``) against a check per candle;
- moving averages pushed directly against the indicators' ``update`` path (forced by a second kind of feature),
  and fed a run of closes at once against one update per candle;
- exit rules in one call per lot against the stop, trailing and take-profit rules written out;
- a replay's trades, portfolio rows and ledger with listeners (batched ``on_candle`` / ``on_ticks_done``) equal the
  same replay without any listener, and the tick histogram saw every candle.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sqlite3
from pathlib import Path

import pytest

from papertrader.cli import build_worker
from papertrader.config import load_settings
from papertrader.engine.runner import WorkerRunner
from papertrader.features import FeatureEngine
from papertrader.ledger.portfolio import Lot
from papertrader.market.candle import Candle
from papertrader.market.candle_file import BadRow
from papertrader.quality import OK, DataQualityGate
from papertrader.risk.exits import ExitRules
from tests.conftest import synthetic_candles, write_candle_file

INTERVAL = 60_000


def _with_anomalies(candles: list[Candle], seed: int) -> list[Candle | BadRow]:
    """In-order candles with duplicates, conflicts, out-of-order rows, bad rows, spikes, gaps, misaligned and far
    future timestamps, invalid prices and level shifts mixed in (seeded)."""
    rng = random.Random(seed)
    out: list[Candle | BadRow] = []
    previous: Candle | None = None
    shift = 1.0
    for index, candle in enumerate(candles):
        ts, o, h, low, c, v = candle
        candle = Candle(ts, o * shift, h * shift, low * shift, c * shift, v)
        r = rng.random()
        if r < 0.01:
            out += [candle, candle]  # identical duplicate
        elif r < 0.02:
            out += [candle, candle._replace(volume=candle.volume + 1.0)]  # conflicting duplicate
        elif r < 0.03 and previous is not None:
            out += [candle, previous]  # out of order
        elif r < 0.04:
            out += [BadRow(index, "unparseable"), candle]
        elif r < 0.045:
            out.append(candle._replace(close=candle.close * 1.4, high=candle.high * 1.4))  # spike
        elif r < 0.05:  # a spike, then the exchange's corrected candle for the same time
            out += [candle._replace(close=candle.close * 1.4, high=candle.high * 1.4), candle]
        elif r < 0.06:
            continue  # a gap
        elif r < 0.065:
            out.append(candle._replace(ts=ts + 1))  # misaligned
        elif r < 0.07:
            out.append(candle._replace(ts=ts + 400 * 86_400_000))  # time jump
        elif r < 0.075:
            out.append(candle._replace(open=math.nan))
        elif r < 0.08:
            shift *= 1.3  # a real level shift from here on
            out.append(Candle(ts, o * shift, h * shift, low * shift, c * shift, v))
        else:
            out.append(candle)
        previous = candle
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gate_fast_branch_equals_general_path(seed: int) -> None:
    items = _with_anomalies(synthetic_candles(6000, seed=seed, interval_ms=INTERVAL), seed)
    fast = DataQualityGate(INTERVAL, window=50)
    general = DataQualityGate(INTERVAL, window=50)
    general.add_custom_check("never", lambda candle: None)  # any custom check sends every candle the long way
    for item in items:
        assert fast.check(item) == general.check(item), item
        assert json.dumps(fast.state()) == json.dumps(general.state()), item
        assert fast.score() == general.score()
    assert vars(fast.counters) == vars(general.counters)
    assert fast.counters.rejected > 100 and fast.counters.suspect > 0 and fast.counters.gaps > 10


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("window", [50, 20])  # 20: shorter than the returns the outlier test needs
def test_gate_runs_equal_a_check_per_candle(seed: int, window: int) -> None:
    """``accept_run`` (the engine's loop without an observer) against ``check`` per candle: after every run and
    the check of the item that ended it, the same state; every candle of a run is OK for check() too."""
    items = _with_anomalies(synthetic_candles(6000, seed=seed, interval_ms=INTERVAL), seed)
    runs = DataQualityGate(INTERVAL, window=window)
    single = DataQualityGate(INTERVAL, window=window)
    index = longest = 0
    while index < len(items):
        run = runs.accept_run(items, index)
        for item in items[index:index + run]:
            assert single.check(item) is OK, item
        index += run
        longest = max(longest, run)
        if index < len(items):  # a run ends before an item for check() (which the engine checks at once)
            assert runs.check(items[index]) == single.check(items[index]), items[index]
            index += 1
        assert json.dumps(runs.state()) == json.dumps(single.state()), index
        assert runs.score() == single.score()
    assert longest > 40  # runs go on through median refreshes (every 20 candles)
    assert single.counters.rejected > 100 and single.counters.gaps > 10


def test_moving_averages_pushed_directly_equal_the_update_path() -> None:
    candles = synthetic_candles(5000, seed=4, interval_ms=INTERVAL)
    direct = FeatureEngine(["sma_10", "sma_30"])
    general = FeatureEngine(["sma_10", "sma_30", "range_pct"])  # another kind of feature: every update() runs
    assert direct._close_pushes is not None and general._close_pushes is None
    for candle in candles:
        values = direct.update(candle)
        expected = general.update(candle)
        assert (values["sma_10"], values["sma_30"]) == (expected["sma_10"], expected["sma_30"]) or (
            math.isnan(values["sma_30"]) and math.isnan(expected["sma_30"]))
    assert json.dumps(direct.state()["indicators"]) == json.dumps(
        {key: value for key, value in general.state()["indicators"].items() if key.startswith("sma")})


@pytest.mark.parametrize("seed", [4, 5])
def test_moving_averages_fed_runs_of_closes_equal_one_update_per_candle(seed: int) -> None:
    """``update_closes`` (the engine's runs of accepted candles) against ``update`` per candle, on runs of random
    lengths (1 to 300, across the lookback and the every-n recomputation): the same values, count and state."""
    rng = random.Random(seed)
    candles = synthetic_candles(8000, seed=seed, interval_ms=INTERVAL)
    runs = FeatureEngine(["sma_10", "sma_30", "sma_7"])
    single = FeatureEngine(["sma_10", "sma_30", "sma_7"])
    assert runs.closes_only and not FeatureEngine(["sma_10", "close_sma_30"]).closes_only
    index = 0
    while index < len(candles):
        run = candles[index:index + rng.randint(1, 300)]
        got = dict(runs.update_closes([candle.close for candle in run]))
        for offset, candle in enumerate(run):
            expected = single.update(candle)
            for key, value in expected.items():
                assert repr(got[key][offset]) == repr(value), (index + offset, key)
        index += len(run)
        assert runs.count == single.count
        assert json.dumps(runs.state()["indicators"]) == json.dumps(single.state()["indicators"])


def _written_out_exit(rules: ExitRules, lot: Lot, candle: Candle) -> tuple[str, float, bool] | None:
    """docs/fill-model.md's exit rules, spelled out one by one."""
    entry, opened = lot.entry_f, lot.entry_ts == candle.ts
    levels = [(entry * (1.0 - rules.emergency_stop_pct), "emergency_stop")]
    if rules.stop_loss_pct:
        levels.append((entry * (1.0 - rules.stop_loss_pct), "stop_loss"))
    if lot.trailing_armed:
        levels.append((lot.peak_f * (1.0 - rules.trailing_stop_pct), "trailing_stop"))
    stop, reason = levels[0]
    for level, name in levels[1:]:
        if level > stop:
            stop, reason = level, name
    if not opened and candle.open <= stop:
        return reason, candle.open, True
    if candle.low <= stop:
        return reason, stop, True
    if rules.take_profit_pct:
        target = entry * (1.0 + rules.take_profit_pct)
        if not opened and candle.open >= target:
            return "take_profit", candle.open, False
        if candle.high >= target:
            return "take_profit", target, False
    lot.peak_f = max(lot.peak_f, candle.high)
    armable = lot.peak_f >= entry * (1.0 + rules.min_profit_for_trailing)
    if rules.trailing_stop_pct and not lot.trailing_armed and armable:
        lot.trailing_armed = True
    return None


@pytest.mark.parametrize("settings", [(0.02, 0.01, 0.005, 0.003, 0.1), (0.0, 0.0, 0.0, 0.0, 0.004),
                                      (0.01, 0.0, 0.004, 0.0, 0.05)])
def test_exit_rules_in_one_call_equal_the_rules_written_out(settings: tuple[float, ...]) -> None:
    rules = ExitRules(*settings)
    candles = synthetic_candles(4000, seed=5, interval_ms=INTERVAL)
    triggers = 0
    for start in range(0, len(candles) - 200, 50):
        entry = candles[start]
        lot = Lot(1, None, None, entry.ts, None, 1.0, entry.open, entry.open)  # type: ignore[arg-type]  # the exit rules read only the float fields
        twin = Lot(1, None, None, entry.ts, None, 1.0, entry.open, entry.open)  # type: ignore[arg-type]  # as above
        for candle in candles[start:start + 200]:
            got = rules.check(lot, candle)
            expected = _written_out_exit(rules, twin, candle)
            assert (tuple(got) if got else None) == expected
            assert (lot.peak_f, lot.trailing_armed) == (twin.peak_f, twin.trailing_armed)
            if got:
                triggers += 1
                break
    assert triggers > 10


def _replay(tmp: Path, name: str, path: Path, listeners: bool) -> dict[str, object]:
    settings = load_settings({"source": "replay", "replay_file": path, "state_dir": tmp / name, "symbol": "BTC-EUR",
                              "candle_interval": "1m", "http_port": 0, "ws_port": 0, "commit_every_candles": 500})
    if not listeners:
        runner = WorkerRunner(settings, console_logs=False)  # no service: the engine sees no listener at all
        summary = asyncio.run(runner.run())
        ticks = None
    else:
        seen: list[int] = []

        class Ticks:
            def on_candle(self, candle: Candle, verdict: object) -> None:
                seen.append(-1)

            def on_prediction(self, prediction: object) -> None: ...

            def on_fill(self, fill: object) -> None: ...

            def on_portfolio(self, snapshot: object) -> None: ...

            def on_ticks_done(self, items: list[Candle], durations: list[float]) -> None:
                assert len(items) == len(durations) and all(d >= 0 for d in durations)
                seen.extend(range(len(items)))

        runner, _ = build_worker(settings, console_logs=False)
        runner.add_listener(Ticks())
        summary = asyncio.run(runner.run())
        ticks = seen
    state = tmp / name
    db = sqlite3.connect(state / "state.db")
    ledger = [db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() for table in ("fills", "marks", "events")]
    db.close()
    summary.pop("duration_s")
    return {"summary": summary, "ledger": ledger, "ticks": ticks,
            "trades": (state / "logs" / "trades.csv").read_bytes(),
            "portfolio": (state / "logs" / "portfolio.csv").read_bytes()}


def test_replay_with_batched_listeners_equals_replay_without_listeners(tmp_path: Path) -> None:
    items = _with_anomalies(synthetic_candles(4000, seed=9, interval_ms=INTERVAL), 9)
    path = write_candle_file(tmp_path / "in.csv", [item for item in items if type(item) is Candle])  # type: ignore[misc]  # the filter keeps Candles only
    heard = _replay(tmp_path, "heard", path, listeners=True)
    quiet = _replay(tmp_path, "quiet", path, listeners=False)
    for key in ("summary", "ledger", "trades", "portfolio"):
        assert heard[key] == quiet[key], key
    ticks = heard["ticks"]
    assert isinstance(ticks, list)
    candle_calls = ticks.count(-1)
    assert len(ticks) - candle_calls == len(items) - sum(1 for item in items if type(item) is not Candle)
    assert 0 < candle_calls <= len(ticks) // 100  # on_candle once per batch, not per candle
    assert heard["summary"]["trades"] > 0  # type: ignore[index]  # set by the listener before the assert


def test_tick_histogram_fed_a_batch_equals_observing_one_by_one() -> None:
    from papertrader.observability.metrics import TICK_BUCKETS, FastHistogram

    rng = random.Random(19)
    one, batched = FastHistogram(TICK_BUCKETS), FastHistogram(TICK_BUCKETS)
    for _ in range(200):
        values = [rng.choice((rng.expovariate(5000.0), rng.choice(TICK_BUCKETS), rng.random() * 20.0))
                  for _ in range(rng.randint(0, 400))]
        for value in values:
            one.observe(value)
        batched.observe_many(values)
        assert (batched.counts, batched.sum, batched.count) == (one.counts, one.sum, one.count)
    assert one.counts[-1] > 0 and one.counts[0] > 0


class _ObservesNothing:
    """A stage observer that asks for no item: the engine then takes its per-candle path for every candle."""

    def item_started(self, item: object) -> bool:
        return False

    def stage_started(self, stage: str) -> None: ...

    def stage_ended(self, stage: str, result: object) -> None: ...

    def item_ended(self, verdict: object) -> None: ...

    def commit_started(self) -> None: ...

    def commit_ended(self) -> None: ...


def _replay_engine(tmp: Path, name: str, path: Path, per_candle: bool, **overrides: object) -> dict[str, object]:
    settings = load_settings({"source": "replay", "replay_file": path, "state_dir": tmp / name, "symbol": "BTC-EUR",
                              "candle_interval": "1m", "http_port": 0, "ws_port": 0, "commit_every_candles": 700,
                              **overrides})
    runner = WorkerRunner(settings, console_logs=False)
    if per_candle:
        runner.engine.set_observer(_ObservesNothing())  # type: ignore[arg-type]  # the protocol's methods, duck-typed
    summary = asyncio.run(runner.run())
    state = runner.engine.state()
    runner.close()
    db = sqlite3.connect(tmp / name / "state.db")
    ledger = [db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
              for table in ("fills", "marks", "events", "prices")]
    db.close()
    summary.pop("duration_s")
    return {"summary": summary, "ledger": ledger, "state": state,
            "trades": (tmp / name / "logs" / "trades.csv").read_bytes(),
            "portfolio": (tmp / name / "logs" / "portfolio.csv").read_bytes()}


@pytest.mark.parametrize("overrides", [
    # every cross trades (the benchmark's settings), portfolio rows often, halts from the guards
    {"take_profit_pct": 0, "stop_loss_pct": 0, "trailing_stop_pct": 0, "min_hold_time_minutes": 0,
     "max_hold_hours": 0, "position_cooldown_minutes": 0, "max_daily_trades_per_symbol": 0, "slippage_pct": 0,
     "portfolio_snapshot_every": 7, "max_daily_loss_pct": 0.004, "max_drawdown_pct": 0.02},
    {},  # the defaults
])
def test_quiet_stretches_equal_the_per_candle_path(tmp_path: Path, overrides: dict[str, object]) -> None:
    """A replay's quiet stretches (no position, the strategy holding: ``Strategy.skip_holds``,
    ``RiskManager.on_steady_equity``) give the per-candle path's ledger, logs, summary and engine state."""
    items = _with_anomalies(synthetic_candles(9000, seed=12, interval_ms=INTERVAL), 12)
    path = write_candle_file(tmp_path / "in.csv", [item for item in items if type(item) is Candle])  # type: ignore[misc]  # the filter keeps Candles only
    fast = _replay_engine(tmp_path, "fast", path, per_candle=False, **overrides)
    slow = _replay_engine(tmp_path, "slow", path, per_candle=True, **overrides)
    for key in ("summary", "ledger", "state", "trades", "portfolio"):
        assert fast[key] == slow[key], key
    assert fast["summary"]["trades"] > 20  # type: ignore[index]  # a summary dict
    if overrides:
        assert any(kind == "halt" for _, _, kind, _ in fast["ledger"][2])  # type: ignore[index]  # the events rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sma_skip_holds_equals_on_candle_per_candle(seed: int) -> None:
    from papertrader.config_groups import SmaSettings
    from papertrader.events import HOLD
    from papertrader.strategy.sma_cross import SmaCross

    rng = random.Random(seed)
    fast_key, slow_key = "sma_10", "sma_30"
    fast = [rng.choice([1.0, 2.0]) if rng.random() < 0.2 else rng.random() for _ in range(3000)]
    slow = [rng.random() if rng.random() < 0.97 else fast[i] for i in range(3000)]
    series = {fast_key: fast, slow_key: slow}
    settings = SmaSettings(sma_fast=10, sma_slow=30)
    skipping, stepping = SmaCross(settings), SmaCross(settings)
    index = 0
    while index < 3000:
        stop = min(3000, index + rng.randrange(1, 400))
        got = skipping.skip_holds(series, index, stop)
        expected = index
        while expected < stop and stepping.on_candle(None, {fast_key: fast[expected], slow_key: slow[expected]},  # type: ignore[arg-type]  # the strategy reads only the features
                                                     None) is HOLD:
            expected += 1
        assert got == expected
        if expected < stop:  # the candle with the signal: the skipper has not seen it yet
            assert skipping.on_candle(None, {fast_key: fast[got], slow_key: slow[got]}, None) is not HOLD  # type: ignore[arg-type]  # as above
            got += 1
        assert skipping.state() == stepping.state()
        index = got


@pytest.mark.parametrize("seed", [1, 2])
def test_steady_equity_run_equals_on_equity_per_candle(seed: int) -> None:
    from papertrader.risk.manager import RiskLimits, RiskManager

    rng = random.Random(seed)
    limits = RiskLimits(max_positions=1, max_positions_per_symbol=1, min_hold_ms=0, max_hold_ms=0, cooldown_ms=0,
                        max_daily_entries=3, max_daily_loss_pct=0.01, max_drawdown_pct=0.03)
    run, step = RiskManager(limits), RiskManager(limits)
    ts = 1_700_000_000_000
    for _ in range(300):
        timestamps = []
        for _ in range(rng.randrange(1, 3000)):
            ts += INTERVAL * rng.choice([1, 1, 1, 7, 900])
            timestamps.append(ts)
        equity = rng.uniform(9_500, 10_500)
        if rng.random() < 0.3:  # an entry decided today, which only the day's change forgets
            run.record_entry_decision()
            step.record_entry_decision()
        got = run.on_steady_equity(timestamps, equity)
        expected = [(t, message) for t in timestamps for message in step.on_equity(t, equity)]
        assert got == expected
        assert run.state_dict() == step.state_dict()
