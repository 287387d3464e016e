"""Bitvavo wire formats -> typed values (reference: shared/reference/bitvavo_api.md).

Prices and volumes arrive as JSON strings; timestamps as integers or numeric strings. REST candles are newest
first; WS candle events carry ``candle`` as a list of rows (``event`` may be ``candle`` or ``candles``).
Everything here is pure and fast; nothing raises on bad input except :class:`ParseError`.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from papertrader.errors import PapertraderError
from papertrader.market.candle import Candle

RATE_LIMIT_CODES = frozenset({103, 105, 110})
_EXPIRY = re.compile(r"\bat (\d{10,})")


class ParseError(PapertraderError, ValueError):
    """An unparseable payload; the message says what was wrong (one line)."""


class ApiError(NamedTuple):
    """An error payload: ``{"errorCode": 205, "error": "..."}`` (REST or WS)."""

    code: int | None
    message: str

    @property
    def rate_limited(self) -> bool:
        """errorCode 103/105, or 110 in its current meaning (rate limit; its older meaning was "invalid
        endpoint", recognised by the message)."""
        if self.code == 110:
            return "endpoint" not in self.message.lower()
        return self.code in RATE_LIMIT_CODES

    def ban_expiry_ms(self) -> int | None:
        """Epoch ms at the end of an errorCode 105 message (``... The ban expires at 1625097600000.``)."""
        match = _EXPIRY.search(self.message)
        return int(match.group(1)) if match else None


def parse_candle_row(row: Any) -> Candle:
    """``[ts, "open", "high", "low", "close", "volume"]`` -> Candle. ts may be an int or a numeric string.

    NaN and negative values parse fine (the data-quality gate rejects them); text that is not a number does not.
    """
    if not isinstance(row, (list, tuple)) or len(row) < 6:
        raise ParseError(f"candle row is not a 6-element array: {str(row)[:80]}")
    ts = _timestamp(row[0])
    try:
        values = [float(row[i]) for i in range(1, 6) if not isinstance(row[i], bool)]
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer too large for a float
        values = []
    if len(values) < 5:
        values = []
    if ts is None or not values:
        raise ParseError(f"candle row has a non-numeric field: {str(row)[:80]}")
    return Candle(ts, values[0], values[1], values[2], values[3], values[4])


def _timestamp(value: Any) -> int | None:
    """An int, an integral float or a numeric string; None otherwise (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_rest_candles(payload: Any) -> list[Candle]:
    """A REST ``/candles`` body (newest first) -> candles in ascending time order, duplicates removed."""
    if not isinstance(payload, list):
        raise ParseError(f"expected a JSON array of candles, got {type(payload).__name__}")
    by_ts: dict[int, Candle] = {}
    for row in payload:
        candle = parse_candle_row(row)
        by_ts.setdefault(candle.ts, candle)  # newest-first body: the first row for a ts wins
    return [by_ts[ts] for ts in sorted(by_ts)]


def api_error(payload: Any) -> ApiError | None:
    """The error in a payload, if it is one (any object with ``error`` or ``errorCode``)."""
    if isinstance(payload, dict) and ("error" in payload or "errorCode" in payload):
        code = payload.get("errorCode")
        try:
            code = int(code) if code is not None else None
        except (TypeError, ValueError, OverflowError):  # OverflowError: errorCode 1e400 (JSON) is infinite
            code = None
        return ApiError(code, str(payload.get("error", "")))
    return None


class WsCandles(NamedTuple):
    """The rows of one WS candle event, for one market and interval."""

    market: str
    interval: str
    candles: list[Candle]
    bad_rows: int


def parse_ws_message(text: str | bytes) -> dict[str, Any]:
    """Decode one WS frame into a JSON object; raises ParseError for malformed JSON or a non-object."""
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"malformed JSON frame ({exc.__class__.__name__}: {str(exc)[:60]})") from None
    if not isinstance(message, dict):
        raise ParseError(f"frame is not a JSON object: {str(message)[:60]}")
    return message


def ws_candles(message: dict[str, Any]) -> WsCandles | None:
    """The candle rows of a ``candle``/``candles`` event, or None for other events."""
    if message.get("event") not in ("candle", "candles"):
        return None
    rows = message.get("candle")
    if rows is None:
        rows = message.get("candles")
    if isinstance(rows, list) and rows and not isinstance(rows[0], (list, tuple)):
        rows = [rows]  # a single row not wrapped in a list
    if not isinstance(rows, list):
        raise ParseError("candle event without a candle array")
    candles: list[Candle] = []
    bad = 0
    for row in rows:
        try:
            candles.append(parse_candle_row(row))
        except ParseError:
            bad += 1
    return WsCandles(str(message.get("market", "")), str(message.get("interval", "")), candles, bad)


class MarketInfo(NamedTuple):
    """The ``/markets`` fields the paper broker needs."""

    market: str
    status: str
    tick_size: Decimal | None
    quantity_decimals: int | None
    min_order_quote: Decimal | None
    min_order_base: Decimal | None

    def as_dict(self) -> dict[str, Any]:
        return {"market": self.market, "status": self.status,
                "tick_size": None if self.tick_size is None else str(self.tick_size),
                "quantity_decimals": self.quantity_decimals,
                "min_order_quote": None if self.min_order_quote is None else str(self.min_order_quote),
                "min_order_base": None if self.min_order_base is None else str(self.min_order_base)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarketInfo:
        return cls(str(data.get("market", "")), str(data.get("status", "")), _dec(data.get("tick_size")),
                   _int(data.get("quantity_decimals")), _dec(data.get("min_order_quote")),
                   _dec(data.get("min_order_base")))


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() and result >= 0 else None


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float (JSON 1e400)
        return None


def parse_market(payload: Any, market: str) -> MarketInfo:
    """The entry for ``market`` in a ``/markets`` body (an array, or one object for ``?market=``).

    ``tickSize`` is preferred; the deprecated ``pricePrecision`` (significant digits) is not a tick and is ignored.
    """
    entries = payload if isinstance(payload, list) else [payload]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("market") == market:
            tick = _dec(entry.get("tickSize"))
            return MarketInfo(market, str(entry.get("status", "")), tick if tick else None,
                              _int(entry.get("quantityDecimals")), _dec(entry.get("minOrderInQuoteAsset")),
                              _dec(entry.get("minOrderInBaseAsset")))
    raise ParseError(f"/markets has no entry for {market}")
