"""Property-based fuzzing (Hypothesis) of the engine's input surfaces and money invariants.

CI runs a bounded, derandomized number of examples per property; ``HYPOTHESIS_PROFILE=full python -m pytest
tests/fuzz`` tries many more."""

from __future__ import annotations

import math
import os
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from papertrader.broker.market_rules import MarketRules
from papertrader.broker.paper import OrderRejected, PaperBroker
from papertrader.config import ConfigError, Settings, load_settings
from papertrader.ledger.portfolio import Portfolio
from papertrader.market.candle import Candle
from papertrader.market.candle_file import BadRow, CandleFileError, CandleFileReader
from papertrader.quality import DataQualityGate

settings.register_profile("ci", max_examples=150, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("full", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FIELD = st.one_of(
    st.integers(min_value=-10**15, max_value=10**15).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-0", "1e400", "abc", "1,2", " 5 ", "0x10", "١٢", "\x00"]),
    st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=12),
)
ROW = st.lists(FIELD, min_size=0, max_size=8).map(lambda fields: ",".join(fields))


@given(rows=st.lists(ROW, max_size=40), header=st.sampled_from(
    ["timestamp_ms,open,high,low,close,volume", "volume,close,low,high,open,timestamp_ms", "a,b", ""]))
def test_candle_file_parsing_never_crashes(tmp_path_factory, rows, header):
    path: Path = tmp_path_factory.mktemp("fuzz") / "f.csv"
    path.write_bytes((header + "\n" + "\n".join(rows) + ("\n" if rows else "")).encode("utf-8", "surrogatepass"))
    try:
        reader = CandleFileReader(path)
    except CandleFileError as exc:
        assert "line 1" in str(exc)
        return
    items = []
    while batch := reader.read(7):
        items.extend(batch)
    reader.close()
    assert len(items) == len(rows)
    gate = DataQualityGate(60_000)
    for line_no, item in enumerate(items, start=2):
        assert isinstance(item, (Candle, BadRow))
        if isinstance(item, BadRow):
            assert item.line_no == line_no and item.reason
        verdict = gate.check(item)
        if verdict.accepted:
            assert isinstance(item, Candle)
            assert all(math.isfinite(v) for v in item[1:]) and 0 < item.low <= min(item.open, item.close)
    score, _ = gate.score()
    assert 0.0 <= score <= 100.0


SETTING_NAMES = sorted(Settings.model_fields)


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(values=st.dictionaries(st.sampled_from(SETTING_NAMES), FIELD, max_size=6))
def test_settings_loader_accepts_or_explains_in_one_line(values):
    env_backup = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.lower() in Settings.model_fields:
                del os.environ[key]
        for key, value in values.items():
            if "\x00" in value or not value.isascii() and not _encodable(value):
                continue  # an environment cannot hold NUL or lone surrogates
            os.environ[key.upper()] = value
        try:
            load_settings({})
        except ConfigError as exc:
            message = str(exc)
            assert "\n" not in message and message
            assert message.startswith(("invalid setting ", "invalid configuration: "))
    finally:
        os.environ.clear()
        os.environ.update(env_backup)


PRICE = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("100000"), places=4)
ACTION = st.tuples(st.sampled_from(["buy", "sell"]), PRICE, st.floats(min_value=0.0, max_value=1.0))


@given(actions=st.lists(ACTION, max_size=60), capital=st.decimals(min_value=1, max_value=10**7, places=2),
       fee=st.sampled_from([Decimal("0"), Decimal("0.0015"), Decimal("0.0025"), Decimal("0.01")]),
       slippage=st.sampled_from([Decimal("0"), Decimal("0.0005"), Decimal("0.01")]))
def test_any_sequence_of_fills_keeps_money_exact(actions, capital, fee, slippage):
    portfolio = Portfolio("FUZZ-EUR", capital)
    broker = PaperBroker(portfolio, MarketRules(Decimal("0.0001"), 8, Decimal("5"), Decimal("0")), fee, slippage)
    buys = sells = fees = Decimal(0)
    for ts, (side, price, fraction) in enumerate(actions):
        if side == "buy":
            result = broker.buy(ts, broker.slipped(float(price), "buy"), fraction, "fuzz")
            if isinstance(result, OrderRejected):
                continue
            buys += result.notional
        else:
            if not portfolio.lots:
                continue
            result = broker.sell(ts, portfolio.lots[0], broker.slipped(float(price), "sell"), "fuzz")
            sells += result.notional
        fees += result.fill.fee
        assert portfolio.cash >= 0
        assert result.cash_after == portfolio.cash
        assert result.fill.fee == (result.notional * fee).quantize(Decimal("0.01"), rounding="ROUND_CEILING")
        mark = float(price)
        snapshot = portfolio.snapshot(ts, mark)
        assert snapshot.cash + snapshot.position_value == snapshot.equity
        for value in (snapshot.cash, snapshot.position_value, snapshot.equity):
            assert value == value.quantize(Decimal("0.01"))
    assert portfolio.cash == capital.quantize(Decimal("0.01")) - buys - fees + sells
    assert portfolio.fees == fees
