"""Property-based fuzzing (Hypothesis) of the Bitvavo wire-format parsers (:mod:`papertrader.market.bitvavo.parse`).

Whatever a WebSocket frame or a REST body contains (any bytes, any JSON, rows of the wrong shape, numbers too large
for a float, NaN, booleans, nested objects), the parsers either return typed values or raise ``ParseError`` with a
one-line message; nothing else escapes, and the source's frame handler never raises. Candles that come out have
integer timestamps and float fields (the data-quality gate judges them later).

CI runs the "ci" profile (derandomized, bounded); ``HYPOTHESIS_PROFILE=full python -m pytest tests/fuzz`` tries
many more inputs (docs/proof.md).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from papertrader.market.bitvavo.parse import (
    ApiError,
    MarketInfo,
    ParseError,
    api_error,
    parse_candle_row,
    parse_market,
    parse_rest_candles,
    parse_ws_message,
    ws_candles,
)
from papertrader.market.candle import Candle
from tests.conftest import synthetic_candles

from . import test_fuzz_engine  # noqa: F401  (registers and loads the "ci" / "full" profiles)

SCALAR = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-10**30, max_value=10**30),
    st.integers(min_value=10**300, max_value=10**400),  # too large for a float
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e400", "-0", "0", "abc", "1.5", "١٢", " 7 ", "0x1f",
                     "9" * 5000, "1704067200000", "1_000"]),
    st.text(max_size=10),
)
JSON = st.recursive(SCALAR, lambda children: st.one_of(
    st.lists(children, max_size=7), st.dictionaries(st.text(max_size=8), children, max_size=5)), max_leaves=30)
ROW = st.one_of(st.lists(SCALAR, min_size=0, max_size=8), JSON)
GOOD_ROW = st.tuples(
    st.integers(min_value=0, max_value=2**53), *[st.floats(min_value=0, max_value=1e9, allow_nan=False)] * 5
).map(lambda t: [t[0], *map(repr, t[1:])])


def _check_candle(candle: Candle) -> None:
    assert type(candle.ts) is int
    assert all(type(v) is float for v in candle[1:])


def _one_line(exc: Exception) -> None:
    message = str(exc)
    assert message and "\n" not in message and len(message) < 400, message


@given(row=ROW)
def test_candle_row_parses_or_raises_parse_error(row: Any) -> None:
    try:
        candle = parse_candle_row(row)
    except ParseError as exc:
        _one_line(exc)
        return
    _check_candle(candle)


@given(row=GOOD_ROW)
def test_well_formed_rows_round_trip(row: list[Any]) -> None:
    candle = parse_candle_row(row)
    assert candle == Candle(row[0], *(float(v) for v in row[1:]))
    assert parse_candle_row([str(row[0]), *row[1:]]) == candle  # ts as a numeric string


MESSAGE = st.one_of(
    JSON,
    st.fixed_dictionaries({"event": st.sampled_from(["candle", "candles", "subscribed", "error", "x"])},
                          optional={"market": SCALAR, "interval": SCALAR, "candle": st.lists(ROW, max_size=6),
                                    "candles": JSON, "errorCode": SCALAR, "error": SCALAR}),
)


def _frames() -> st.SearchStrategy[str | bytes]:
    def dumps(value: Any) -> str:
        return json.dumps(value, allow_nan=True, default=str)

    as_text = MESSAGE.map(dumps)
    truncated = st.tuples(as_text, st.integers(min_value=0, max_value=200)).map(lambda t: t[0][: t[1]])
    return st.one_of(as_text, truncated, st.binary(max_size=200), st.text(max_size=200),
                     as_text.map(lambda t: t.encode("utf-8")))


@given(frame=_frames())
def test_ws_frames_parse_or_raise_parse_error(frame: str | bytes) -> None:
    try:
        message = parse_ws_message(frame)
    except ParseError as exc:
        _one_line(exc)
        return
    assert isinstance(message, dict)
    try:
        batch = ws_candles(message)
    except ParseError as exc:
        _one_line(exc)
        batch = None
    if batch is not None:
        for candle in batch.candles:
            _check_candle(candle)
        assert batch.bad_rows >= 0
    error = api_error(message)
    if error is not None:
        assert isinstance(error, ApiError) and isinstance(error.message, str)
        assert isinstance(error.rate_limited, bool)
        expiry = error.ban_expiry_ms()
        assert expiry is None or expiry > 0


@given(payload=st.one_of(JSON, st.lists(ROW, max_size=12), st.lists(GOOD_ROW, max_size=12)))
def test_rest_candle_pages_parse_or_raise_parse_error(payload: Any) -> None:
    try:
        candles = parse_rest_candles(payload)
    except ParseError as exc:
        _one_line(exc)
        return
    stamps = [c.ts for c in candles]
    assert stamps == sorted(set(stamps))  # ascending, no duplicates
    for candle in candles:
        _check_candle(candle)


MARKET_ENTRY = st.fixed_dictionaries({"market": st.sampled_from(["BTC-EUR", "ETH-EUR"])}, optional={
    "status": SCALAR, "tickSize": SCALAR, "pricePrecision": SCALAR, "quantityDecimals": SCALAR,
    "minOrderInQuoteAsset": SCALAR, "minOrderInBaseAsset": SCALAR})


@given(payload=st.one_of(JSON, MARKET_ENTRY, st.lists(st.one_of(MARKET_ENTRY, JSON), max_size=4)))
def test_markets_parse_or_raise_parse_error(payload: Any) -> None:
    try:
        market = parse_market(payload, "BTC-EUR")
    except ParseError as exc:
        _one_line(exc)
        return
    assert market.market == "BTC-EUR"
    for value in (market.tick_size, market.min_order_quote, market.min_order_base):
        assert value is None or (value.is_finite() and value >= 0)
    assert market.quantity_decimals is None or isinstance(market.quantity_decimals, int)
    assert MarketInfo.from_dict(json.loads(json.dumps(market.as_dict()))) == market  # the cursor round trip


def _real_frame(minute: int, row: list[Any]) -> str:
    """A well-formed Bitvavo candle event for the source's own market and interval."""
    return json.dumps({"event": "candle", "market": "BTC-EUR", "interval": "1m",
                       "candle": [[1704067200000 + minute * 60_000, *row[1:]]]})


REAL_FRAME = st.tuples(st.integers(min_value=0, max_value=5), GOOD_ROW).map(lambda t: _real_frame(*t))


def _live_settings(rest_url: str) -> Any:
    from papertrader.config import load_settings

    return load_settings({"source": "bitvavo", "symbol": "BTC-EUR", "bitvavo_rest_url": rest_url})


#: REST history behind the frames' minutes 0..5 (a bar after a skipped one is gap-filled from REST)
HISTORY = synthetic_candles(8, start_ms=1704067200000)


@settings(max_examples=60 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else 2000)
@given(frames=st.lists(st.one_of(_frames(), REAL_FRAME), max_size=12))
def test_the_live_source_survives_any_frame(frames: list[str | bytes]) -> None:
    """The source's own frame handler (what the stream loop calls) never raises on any frame, and whatever it
    queues is in strictly increasing time order (real bars, out of order and repeated, mixed into the junk)."""
    stamps = [c.ts for c in _feed_live_source(frames)]
    assert stamps == sorted(set(stamps))


def _feed_live_source(frames: list[str | bytes]) -> list[Candle]:
    """Feed the frames to a live source whose REST is a local fake exchange (never the internet: a bar after a
    skipped one makes the source gap-fill, which retries until REST answers)."""
    from papertrader.market.fake_exchange import FakeBitvavo
    from tests.bitvavo.helpers import bitvavo_source

    async def feed() -> list[Candle]:
        async with FakeBitvavo(HISTORY, start_index=len(HISTORY) - 1) as fake:
            source = bitvavo_source(_live_settings(fake.rest_url))
            source._need_fill = False  # a connection in progress (no REST catch-up of the forming bar)
            try:
                for frame in frames:
                    await asyncio.wait_for(source._on_frame(frame), 10)
                return list(source._ready)
            finally:
                await source.close()

    return asyncio.run(feed())


def test_real_bars_are_queued_once_a_newer_bar_closes_them() -> None:
    """The property above is not vacuous: real frames do reach the queue, closed by their successor."""
    row = [0, "100.0", "101.0", "99.0", "100.5", "3.0"]
    frames = [_real_frame(0, row), "junk", _real_frame(1, row), _real_frame(0, row), _real_frame(2, row)]
    assert [c.ts for c in _feed_live_source(frames)] == [1704067200000, 1704067260000]
    # a bar after skipped ones: the skipped bars come from REST (the local fake's history), in order
    frames = [_real_frame(0, row), _real_frame(1, row), _real_frame(4, row), _real_frame(5, row)]
    queued = _feed_live_source(frames)
    assert [c.ts for c in queued] == [1704067200000 + m * 60_000 for m in range(5)]
    assert queued[2:4] == HISTORY[2:4]
