"""Market rules from ``/markets`` for the paper broker, and the copy kept next to a ``--record`` file.

A live worker trades with the exchange's tick size and minimum order sizes. A recording of that run replays
byte for byte only if the replay uses the same rules, so ``--record FILE.csv`` also writes ``FILE.csv.market.json``
and ``--source replay --replay-file FILE.csv`` picks it up when it exists (otherwise the offline defaults apply).
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path

from papertrader.broker.market_rules import MarketRules

log = logging.getLogger("papertrader.market.bitvavo")

SIDECAR_SUFFIX = ".market.json"


def sidecar_path(candle_file: Path | str) -> Path:
    return Path(str(candle_file) + SIDECAR_SUFFIX)


def write_rules_sidecar(candle_file: Path | str, rules: MarketRules) -> None:
    path = sidecar_path(candle_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"tick_size": str(rules.tick_size), "quantity_decimals": rules.quantity_decimals,
            "min_order_quote": str(rules.min_order_quote), "min_order_base": str(rules.min_order_base)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def load_rules_sidecar(candle_file: Path | str) -> MarketRules | None:
    path = sidecar_path(candle_file)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rules = MarketRules(Decimal(data["tick_size"]), int(data["quantity_decimals"]),
                            Decimal(data["min_order_quote"]), Decimal(data["min_order_base"]))
    except (OSError, ValueError, KeyError, ArithmeticError) as exc:
        log.warning("%s: ignored (%s); using the offline market defaults", path, exc)
        return None
    log.info("market rules from %s: tick %s, quantity decimals %d", path, rules.tick_size, rules.quantity_decimals)
    return rules
