"""Wire-format parsing: the quirks listed in shared/reference/bitvavo_api.md (shipped as literal samples)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from papertrader.market.bitvavo.parse import (
    ParseError,
    api_error,
    parse_candle_row,
    parse_market,
    parse_rest_candles,
    parse_ws_message,
    ws_candles,
)


def test_rest_candles_newest_first_become_ascending() -> None:
    body = [[1545210000000, "3308.2", "3500.1", "3308.2", "3500.1", "0.07684055"],
            [1545138000000, "3158.2", "3199.6", "3158.2", "3199.6", "0.02477561"],
            [1545134400000, "3154.8", "3158.2", "3154.8", "3158.2", "0.003"]]
    candles = parse_rest_candles(body)
    assert [c.ts for c in candles] == [1545134400000, 1545138000000, 1545210000000]
    assert candles[-1].close == 3500.1 and candles[0].volume == 0.003


def test_string_timestamp_and_nan_negative_parse_but_text_does_not() -> None:
    assert parse_candle_row(["1538784000000", "4999", "5012", "4999", "5012", "0.45"]).ts == 1538784000000
    assert math.isnan(parse_candle_row([1, "nan", "1", "1", "1", "1"]).open)
    assert parse_candle_row([1, "-5", "1", "1", "1", "1"]).open == -5.0
    for bad in ([1, "abc", "1", "1", "1", "1"], [1, "1"], "x", [True, "1", "1", "1", "1", "1"]):
        with pytest.raises(ParseError):
            parse_candle_row(bad)


def test_ws_candle_event_singular_plural_and_multiple_rows() -> None:
    msg = parse_ws_message('{"event":"candle","market":"BTC-EUR","interval":"1h",'
                           '"candle":[[1548676800000,"2999.3","2999.3","2990.5","2999.3","11.15058838"]]}')
    batch = ws_candles(msg)
    assert batch is not None and batch.market == "BTC-EUR" and batch.candles[0].close == 2999.3
    docs = parse_ws_message('{"event":"candles","market":"BTC-EUR","interval":"1h","candle":'
                            '[["1538784000000","4999","5012","4999","5012","0.45"],[1538787600000,"1","x","1","1","1"]]}')
    batch = ws_candles(docs)
    assert batch is not None and len(batch.candles) == 1 and batch.bad_rows == 1
    assert ws_candles({"event": "subscribed", "subscriptions": {}}) is None


def test_malformed_frames() -> None:
    for text in ('{"event":"candle","candle":[[', "[1,2]", b"\xff\xfe"):
        with pytest.raises(ParseError):
            parse_ws_message(text)


def test_errors_and_rate_limit_codes() -> None:
    assert api_error({"errorCode": 205, "error": "Invalid parameter: price"}).code == 205  # type: ignore[union-attr]  # an error payload: not None
    error = api_error({"errorCode": 105, "error": "Your IP or API key has been banned for not respecting the rate "
                                                  "limit. The ban expires at 1625097600000."})
    assert error is not None and error.rate_limited and error.ban_expiry_ms() == 1625097600000
    assert api_error({"event": "error", "errorCode": "110", "error": "x"}).rate_limited  # type: ignore[union-attr]  # as above
    assert api_error([1, 2]) is None and api_error({"time": 1}) is None


def test_markets_object_or_array_and_legacy_shape() -> None:
    entry = {"market": "BTC-EUR", "status": "trading", "pricePrecision": None, "minOrderInBaseAsset": "0.0001",
             "minOrderInQuoteAsset": "5", "quantityDecimals": 8, "tickSize": "1"}
    for body in (entry, [{"market": "ETH-EUR"}, entry]):
        info = parse_market(body, "BTC-EUR")
        assert info.tick_size == Decimal(1) and info.quantity_decimals == 8
        assert info.min_order_quote == Decimal(5) and info.min_order_base == Decimal("0.0001")
    legacy = parse_market({"market": "ADA-EUR", "status": "trading", "pricePrecision": 5,
                           "minOrderInBaseAsset": "100", "minOrderInQuoteAsset": "10"}, "ADA-EUR")
    assert legacy.tick_size is None and legacy.quantity_decimals is None
    with pytest.raises(ParseError):
        parse_market([], "BTC-EUR")
