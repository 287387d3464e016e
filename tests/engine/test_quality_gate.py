"""Every candle gets a verdict; the rolling score reflects what the gate saw."""

from __future__ import annotations

import math
import random

from papertrader.market.candle import Candle
from papertrader.market.candle_file import BadRow
from papertrader.quality import DataQualityGate

MIN = 60_000


def _walk(n: int, start: int = 0, price: float = 100.0) -> list[Candle]:
    rng = random.Random(5)
    candles = []
    for i in range(n):
        move = rng.gauss(0.0, 0.001)
        close = price * (1 + move)
        candles.append(Candle(start + i * MIN, price, max(price, close) * 1.0005, min(price, close) * 0.9995,
                              close, 10.0 + i % 7))
        price = close
    return candles


def _gate() -> DataQualityGate:
    return DataQualityGate(MIN, window=50, outlier_z=8, reject_z=200)


def test_valid_candles_pass_and_score_is_perfect():
    gate = _gate()
    verdicts = [gate.check(c).status for c in _walk(60)]
    assert verdicts == ["ok"] * 60
    score, components = gate.score()
    assert score == 100.0 and set(components) == {"validity", "completeness", "normality", "ordering"}


def test_each_kind_of_bad_candle_is_rejected_with_a_reason():
    gate = _gate()
    for candle in _walk(5):
        gate.check(candle)
    last = _walk(5)[-1]
    cases = {
        "nan close": Candle(last.ts + MIN, 100.0, 101.0, 99.0, math.nan, 1.0),
        "negative price": Candle(last.ts + MIN, -1.0, 101.0, 99.0, 100.0, 1.0),
        "zero price": Candle(last.ts + MIN, 100.0, 101.0, 0.0, 100.0, 1.0),
        "high below low": Candle(last.ts + MIN, 100.0, 98.0, 99.0, 99.0, 1.0),
        "open above high": Candle(last.ts + MIN, 102.0, 101.0, 99.0, 100.0, 1.0),
        "negative volume": Candle(last.ts + MIN, 100.0, 101.0, 99.0, 100.0, -5.0),
        "infinite high": Candle(last.ts + MIN, 100.0, math.inf, 99.0, 100.0, 1.0),
        "misaligned": Candle(last.ts + MIN + 7, 100.0, 101.0, 99.0, 100.0, 1.0),
        "out of order": Candle(last.ts - MIN, 100.0, 101.0, 99.0, 100.0, 1.0),
        "conflicting duplicate": last._replace(close=last.close * 1.0001, high=last.high * 1.001),
    }
    for name, candle in cases.items():
        verdict = gate.check(candle)
        assert verdict.status == "rejected", name
        assert verdict.reasons and verdict.reasons[0], name
    assert gate.check(BadRow(12, "open='abc' is not a number")).reasons == ("line 12: open='abc' is not a number",)
    assert gate.counters.rejected == len(cases) + 1
    assert gate.counters.reasons["invalid_price"] == 4
    assert gate.counters.reasons["malformed"] == 1
    assert gate.last_accepted == last  # nothing rejected became the reference candle
    assert gate.score()[0] < 100.0


def test_identical_duplicate_is_ignored_not_rejected():
    gate = _gate()
    candles = _walk(3)
    for candle in candles:
        gate.check(candle)
    verdict = gate.check(candles[-1])
    assert verdict.status == "duplicate" and verdict.accepted
    assert gate.counters.duplicates_ignored == 1 and gate.counters.rejected == 0


def test_gaps_are_counted_never_filled():
    gate = _gate()
    candles = _walk(10)
    for candle in candles[:4] + candles[7:]:
        assert gate.check(candle).status == "ok"
    assert gate.counters.gaps == 1 and gate.counters.missing_candles == 3
    assert gate.counters.accepted == 7
    assert gate.score()[1]["completeness"] < 100.0


def test_outliers_are_suspect_and_bad_ticks_rejected_but_level_shifts_pass():
    gate = _gate()
    candles = _walk(80)
    for candle in candles:
        gate.check(candle)
    last = candles[-1]
    jump = Candle(last.ts + MIN, last.close, last.close * 1.03, last.close, last.close * 1.03, 5.0)
    assert gate.check(jump).status == "suspect"  # a 3 % move among 0.1 % moves: flagged, still traded
    tick = Candle(jump.ts + MIN, jump.close * 50, jump.close * 50, jump.close * 50, jump.close * 50, 1.0)
    assert gate.check(tick).status == "rejected"  # 50x: a bad tick
    back = Candle(tick.ts + MIN, jump.close, jump.close * 1.001, jump.close * 0.999, jump.close, 3.0)
    assert gate.check(back).status == "ok"
    shift = [Candle(back.ts + (k + 1) * MIN, back.close * 40, back.close * 40.1, back.close * 39.9,
                    back.close * 40, 3.0) for k in range(3)]
    assert gate.check(shift[0]).status == "rejected"
    assert gate.check(shift[1]).accepted  # confirms the new level: the feed is not frozen
    assert gate.check(shift[2]).accepted


def test_custom_checks_flag_or_reject():
    gate = _gate()
    gate.add_custom_check("volume_threshold", lambda c: None if c.volume >= 12 else f"volume {c.volume} < 12")
    gate.add_custom_check("sunday", lambda c: "weekend" if c.ts == 5 * MIN else None, reject=True)
    verdicts = [gate.check(c) for c in _walk(8)]
    assert [v.status for v in verdicts] == ["suspect", "suspect", "ok", "ok", "ok", "rejected", "ok", "suspect"]
    assert "volume_threshold" in verdicts[0].reasons[0]


def test_state_round_trip():
    import json

    candles = _walk(120)
    gate = _gate()
    for candle in candles[:70]:
        gate.check(candle)
    copy = _gate()
    copy.load_state(json.loads(json.dumps(gate.state())))
    for candle in candles[70:]:
        assert copy.check(candle) == gate.check(candle)
    assert copy.score() == gate.score() and vars(copy.counters) == vars(gate.counters)


def test_middle_deviations_equal_sorting_the_deviations():
    """The gate's MAD (binary search over the two sorted runs of deviations) gives exactly the floats of sorting
    every |r - median|, with ties, repeated values and one-sided windows."""
    import random

    from papertrader.quality import middle_deviations

    rng = random.Random(19)
    for case in range(3000):
        n = rng.randint(2, 120)
        kind = case % 4
        if kind == 0:
            values = [rng.gauss(0.0, 1e-3) for _ in range(n)]
        elif kind == 1:  # few distinct values: ties everywhere
            values = [rng.choice((-2e-3, -1e-3, 0.0, 1e-3, 3e-3)) for _ in range(n)]
        elif kind == 2:  # one-sided, skewed
            values = [abs(rng.gauss(0.0, 1e-3)) ** 3 for _ in range(n)]
        else:  # a level shift: two clusters
            values = [rng.gauss(0.05 if rng.random() < 0.3 else 0.0, 1e-4) for _ in range(n)]
        ordered = sorted(values)
        half = n // 2
        median = ordered[half] if n % 2 else 0.5 * (ordered[half - 1] + ordered[half])
        deviations = sorted(abs(r - median) for r in ordered)
        assert middle_deviations(ordered, median) == (deviations[half - 1], deviations[half]), (values, median)
