"""The feature engine: builds the indicators that a list of feature names needs and updates them per candle."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from papertrader.errors import PapertraderError
from papertrader.features import indicators as ind
from papertrader.market.candle import Candle


class UnknownFeatureError(PapertraderError, ValueError):
    """A feature name that the engine cannot compute."""


_PARAMETRIC: dict[str, tuple[Callable[[int], ind.Indicator], Callable[[int], str]]] = {
    "sma": (ind.Sma, lambda n: f"sma:{n}"),
    "close_sma": (ind.CloseToSma, lambda n: f"close_sma:{n}"),
    "ema": (ind.EmaOfClose, lambda n: f"ema:{n}"),
    "rsi": (ind.Rsi, lambda n: f"rsi:{n}"),
    "bb_width": (ind.Bollinger, lambda n: f"bb:{n}"),
    "bb_pos": (ind.Bollinger, lambda n: f"bb:{n}"),
    "atr": (ind.Atr, lambda n: f"atr:{n}"),
    "atr_pct": (ind.Atr, lambda n: f"atr:{n}"),
    "volatility": (ind.Volatility, lambda n: f"vol:{n}"),
    "ret": (ind.Return, lambda n: f"ret:{n}"),
    "volume_z": (ind.VolumeZ, lambda n: f"volz:{n}"),
}
_FIXED: dict[str, tuple[Callable[[], ind.Indicator], str]] = {
    "macd": (ind.Macd, "macd"),
    "macd_signal": (ind.Macd, "macd"),
    "macd_hist": (ind.Macd, "macd"),
    "range_pct": (ind.RangePct, "range"),
}
_NAME = re.compile(r"^([a-z_]+?)_(\d+)$")

#: A broad default set (used by the ML pipeline unless its config names others).
DEFAULT_FEATURES: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_15", "ret_60",
    "close_sma_10", "close_sma_30",
    "ema_12", "rsi_14", "macd", "macd_signal", "macd_hist",
    "bb_width_20", "bb_pos_20", "atr_pct_14", "volatility_20", "volatility_60",
    "volume_z_20", "range_pct",
)


def parse_feature(name: str) -> tuple[str, Callable[[], ind.Indicator]]:
    """The shared-indicator key and a factory for a feature name; raises :class:`UnknownFeatureError`."""
    if name in _FIXED:
        factory, key = _FIXED[name]
        return key, factory
    match = _NAME.match(name)
    if match and match.group(1) in _PARAMETRIC and int(match.group(2)) >= 1:
        kind, n = match.group(1), int(match.group(2))
        cls, key_of = _PARAMETRIC[kind]
        if kind in ("volatility", "volume_z", "bb_width", "bb_pos") and n < 2:
            raise UnknownFeatureError(f"feature {name!r}: window must be >= 2")
        return key_of(n), lambda: cls(n)
    known = ", ".join(sorted([f"{k}_<n>" for k in _PARAMETRIC] + list(_FIXED)))
    raise UnknownFeatureError(f"unknown feature {name!r}; known: {known}")


class FeatureEngine:
    """Computes the requested features incrementally. ``values`` always holds the latest value of every feature."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names: tuple[str, ...] = tuple(dict.fromkeys(names))
        self._indicators: dict[str, ind.Indicator] = {}
        for name in self.names:
            key, factory = parse_feature(name)
            if key not in self._indicators:
                self._indicators[key] = factory()
        indicators = list(self._indicators.values())
        self._update_calls = [indicator.update for indicator in indicators]
        #: when every indicator is a function of the close alone (moving averages, as sma-cross needs): their
        #: ``(output, close_push)`` pairs, called directly; otherwise None and every indicator's ``update`` runs
        self._close_pushes: list[tuple[str, Callable[[float], float]]] | None = (
            [(indicator.outputs[0], indicator.close_push) for indicator in indicators]  # type: ignore[misc]  # close_push not None: checked
            if indicators and all(indicator.close_push is not None for indicator in indicators) else None)
        #: the same indicators' ``(output, close_push_many)`` pairs (:meth:`update_closes`)
        self._close_runs: list[tuple[str, Callable[[list[float]], list[float]]]] | None = (
            [(indicator.outputs[0], indicator.close_push_many) for indicator in indicators]  # type: ignore[misc]  # close_push_many not None: checked
            if indicators and all(indicator.close_push_many is not None for indicator in indicators) else None)
        self.values: dict[str, float] = {}
        self.count = 0
        self.lookback = max((i.lookback for i in self._indicators.values()), default=0)

    def update(self, candle: Candle) -> dict[str, float]:
        """Feed one accepted closed candle; returns the (shared, mutable) values dict."""
        values = self.values
        close_pushes = self._close_pushes
        if close_pushes is not None:
            close = candle[4]
            for key, push in close_pushes:
                values[key] = push(close)
        else:
            for update in self._update_calls:
                update(candle, values)
        self.count += 1
        return values

    @property
    def closes_only(self) -> bool:
        """Whether every indicator is a function of the close alone (then :meth:`update_closes` works)."""
        return self._close_runs is not None

    def update_closes(self, closes: list[float]) -> list[tuple[str, list[float]]]:
        """Feed the closes of many accepted candles at once (only when :attr:`closes_only`); returns each feature
        with its value at each of those candles: what :meth:`update` would return candle by candle (the same
        floats, the same state after). :attr:`values` is left to the caller, who writes each candle's values
        before anything reads them, and :attr:`count` counts every candle at once."""
        assert self._close_runs is not None, "update_closes needs indicators of the close alone"
        self.count += len(closes)
        return [(key, push_many(closes)) for key, push_many in self._close_runs]

    def vector(self) -> list[float]:
        """The requested features in order (for models)."""
        values = self.values
        return [values[name] for name in self.names]

    @property
    def ready(self) -> bool:
        return self.count >= self.lookback

    def state(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "values": dict(self.values),
            "indicators": {key: indicator.state() for key, indicator in self._indicators.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.count = state["count"]
        self.values.clear()
        self.values.update(state["values"])
        for key, indicator in self._indicators.items():
            indicator.load_state(state["indicators"][key])
