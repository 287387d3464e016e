"""The PaperTrader spec as typed values, parsed once from a document the CRD's defaults were applied to.

`crd.default_spec(raw)` applies the defaults and returns a `TraderSpec`; the operator hands that object to the
render functions (children.py), the status and the risk latch instead of reading string keys. The values keep
the types the document had (an `initial` of `10000` stays an int), so rendered children are byte for byte the
same as before.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

Quantity = str | int | float  # a Kubernetes quantity as written in the spec (`1Gi`, `500m`, 1)


class Source(enum.StrEnum):
    """Where a worker's candles come from (`spec.source`)."""

    SYNTHETIC = "synthetic"
    REPLAY = "replay"
    BITVAVO = "bitvavo"


@dataclasses.dataclass(frozen=True)
class Model:
    """`spec.strategy.model`: the ml strategy's model file, optionally on a claim mounted read-only."""

    path: str
    claim_name: str | None = None
    version: str | None = None


@dataclasses.dataclass(frozen=True)
class Strategy:
    name: str
    model: Model | None = None


@dataclasses.dataclass(frozen=True)
class Capital:
    initial: float
    max_positions: int
    fee_taker: float
    slippage_pct: float


@dataclasses.dataclass(frozen=True)
class Risk:
    max_drawdown_pct: float  # portfolio-wide, enforced by the operator (a fraction)
    symbol_max_drawdown_pct: float
    max_daily_loss_pct: float
    take_profit_pct: float
    stop_loss_pct: float
    trailing_stop_pct: float


@dataclasses.dataclass(frozen=True)
class Telegram:
    secret_name: str
    token_key: str
    chat_id_key: str
    notifications_per_hour: Mapping[str, int] | None = None


@dataclasses.dataclass(frozen=True)
class Storage:
    size: Quantity
    retain_on_delete: bool
    storage_class_name: str | None = None


@dataclasses.dataclass(frozen=True)
class TraderSpec:
    """A defaulted PaperTrader spec (see docs/operator.md, "The PaperTrader spec")."""

    symbols: tuple[str, ...]
    source: Source
    speed: str
    candle_interval: str
    strategy: Strategy
    capital: Capital
    risk: Risk
    image_pull_policy: str
    paused: bool
    resources: Mapping[str, Mapping[str, Quantity]]  # requests / limits, as the container takes them
    storage: Storage
    replay_file: str | None = None
    extra_config: Mapping[str, str] = dataclasses.field(default_factory=dict)
    image: str | None = None
    telegram: Telegram | None = None

    @classmethod
    def from_defaulted(cls, spec: Mapping[str, Any]) -> TraderSpec:
        """Parse a spec that the CRD's defaults were applied to (`crd.apply_defaults`); KeyError when a required
        field is missing (validation reports those first)."""
        strategy, capital, risk = spec["strategy"], spec["capital"], spec["risk"]
        model, telegram, storage = strategy.get("model"), spec.get("telegram"), spec["storage"]
        return cls(
            symbols=tuple(spec["symbols"]),
            source=Source(spec["source"]),
            speed=spec["speed"],
            candle_interval=spec["candleInterval"],
            strategy=Strategy(name=strategy["name"], model=None if not model else Model(
                path=model["path"], claim_name=model.get("claimName"), version=model.get("version"))),
            capital=Capital(initial=capital["initial"], max_positions=capital["maxPositions"],
                            fee_taker=capital["feeTaker"], slippage_pct=capital["slippagePct"]),
            risk=Risk(max_drawdown_pct=risk["maxDrawdownPct"], symbol_max_drawdown_pct=risk["symbolMaxDrawdownPct"],
                      max_daily_loss_pct=risk["maxDailyLossPct"], take_profit_pct=risk["takeProfitPct"],
                      stop_loss_pct=risk["stopLossPct"], trailing_stop_pct=risk["trailingStopPct"]),
            image_pull_policy=spec["imagePullPolicy"],
            paused=bool(spec["paused"]),
            resources={kind: dict(values) for kind, values in spec["resources"].items()},
            storage=Storage(size=storage["size"], retain_on_delete=storage["retainOnDelete"],
                            storage_class_name=storage.get("storageClassName") or None),
            replay_file=spec.get("replayFile"),
            extra_config=dict(spec.get("extraConfig") or {}),
            image=spec.get("image") or None,
            telegram=None if not telegram else Telegram(
                secret_name=telegram["secretName"], token_key=telegram["tokenKey"],
                chat_id_key=telegram["chatIdKey"],
                notifications_per_hour=dict(telegram["notificationsPerHour"])
                if telegram.get("notificationsPerHour") else None),
        )
