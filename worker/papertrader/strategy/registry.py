"""Strategy registry. Built-ins are imported lazily so that ``sma-cross`` never pays for torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from papertrader.config_groups import settings_group
from papertrader.errors import PapertraderError

if TYPE_CHECKING:
    from papertrader.config import Settings
    from papertrader.strategy.base import Strategy

#: name -> "module:Class". Add a strategy by adding a line here (see docs/strategies.md).
BUILTIN: dict[str, str] = {
    "sma-cross": "papertrader.strategy.sma_cross:SmaCross",
    "ml": "papertrader.strategy.ml:MlStrategy",
}


class UnknownStrategyError(PapertraderError, ValueError):
    """No strategy of that name."""

    exit_code = 2


def strategy_names() -> list[str]:
    return sorted(BUILTIN)


def create_strategy(settings: Settings) -> Strategy:
    """Instantiate ``settings.strategy``; a ``module:Class`` path is accepted for strategies outside the package."""
    target = BUILTIN.get(settings.strategy, settings.strategy)
    if ":" not in target:
        raise UnknownStrategyError(
            f"invalid setting STRATEGY={settings.strategy}: allowed values are {', '.join(strategy_names())} "
            "or module:Class"
        )
    module_name, class_name = target.split(":", 1)
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        message = f"invalid setting STRATEGY={settings.strategy}: cannot load {target} ({exc})"
        raise UnknownStrategyError(message) from None
    return cls(settings if cls.settings_type is None else settings_group(cls.settings_type, settings))
