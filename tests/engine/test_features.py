"""Incremental features equal a pandas reference on real candles and never look ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from papertrader.features import FeatureEngine, UnknownFeatureError
from papertrader.features.engine import DEFAULT_FEATURES
from papertrader.market.candle_file import CandleFileReader
from tests.conftest import REAL_SAMPLE


def _reference(frame: pd.DataFrame) -> dict[str, pd.Series]:
    close, high, low, volume = frame["close"], frame["high"], frame["low"], frame["volume"]
    delta = close.diff()
    gain = delta.clip(lower=0).iloc[1:].ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta.clip(upper=0)).iloc[1:].ewm(alpha=1 / 14, adjust=False).mean()
    rsi = (100 - 100 / (1 + gain / loss)).reindex(close.index)
    ema12 = close.ewm(span=12, adjust=False).mean()
    ema26 = close.ewm(span=26, adjust=False).mean()
    macd = ema12 - ema26
    signal = macd.ewm(span=9, adjust=False).mean()
    mean20, std20 = close.rolling(20).mean(), close.rolling(20).std()
    true_range = pd.concat([high - low, (high - close.shift()).abs(), (low - close.shift()).abs()], axis=1).max(axis=1)
    true_range.iloc[0] = high.iloc[0] - low.iloc[0]
    atr = true_range.ewm(alpha=1 / 14, adjust=False).mean()
    log_ret = np.log(close / close.shift())
    return {
        "sma_10": close.rolling(10).mean(),
        "close_sma_30": close / close.rolling(30).mean() - 1,
        "ema_12": ema12,
        "rsi_14": rsi,
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": macd - signal,
        "bb_width_20": 4 * std20 / mean20,
        "bb_pos_20": (close - (mean20 - 2 * std20)) / (4 * std20),
        "atr_pct_14": atr / close,
        "volatility_20": log_ret.rolling(20).std(),
        "volatility_60": log_ret.rolling(60).std(),
        "ret_1": close / close.shift(1) - 1,
        "ret_15": close / close.shift(15) - 1,
        "volume_z_20": (volume - volume.rolling(20).mean()) / volume.rolling(20).std(),
        "range_pct": (high - low) / close,
    }


def _candles():
    reader = CandleFileReader(REAL_SAMPLE)
    candles = reader.read(10_000)
    reader.close()
    return candles


def test_each_feature_equals_pandas_reference_after_warmup():
    candles = _candles()
    frame = pd.read_csv(REAL_SAMPLE)
    reference = _reference(frame)
    engine = FeatureEngine(reference.keys())
    rows = []
    for candle in candles:
        rows.append(dict(engine.update(candle)))
    ours = pd.DataFrame(rows)
    warmup = engine.lookback
    assert warmup >= 60
    for name, expected in reference.items():
        got = ours[name].to_numpy()[warmup:]
        want = expected.to_numpy()[warmup:]
        assert np.all(np.isfinite(got)), name
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=name)


def test_features_at_t_do_not_change_when_later_candles_are_removed():
    candles = _candles()[:800]
    full = FeatureEngine(DEFAULT_FEATURES)
    history = [dict(full.update(candle)) for candle in candles]
    for cut in (150, 433, 799):
        truncated = FeatureEngine(DEFAULT_FEATURES)
        for candle in candles[: cut + 1]:
            values = truncated.update(candle)
        assert values == history[cut]


def test_state_round_trip_continues_bit_for_bit():
    import json

    candles = _candles()[:600]
    straight = FeatureEngine(DEFAULT_FEATURES)
    for candle in candles:
        expected = dict(straight.update(candle))
    first = FeatureEngine(DEFAULT_FEATURES)
    for candle in candles[:317]:
        first.update(candle)
    resumed = FeatureEngine(DEFAULT_FEATURES)
    resumed.load_state(json.loads(json.dumps(first.state())))
    for candle in candles[317:]:
        got = dict(resumed.update(candle))
    assert json.dumps(got) == json.dumps(expected)


def test_unknown_feature_is_a_clear_error():
    with pytest.raises(UnknownFeatureError, match="unknown feature 'smaa_10'"):
        FeatureEngine(["smaa_10"])
