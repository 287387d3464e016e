"""Position sizing from signal confidence and strength.

fraction of available cash = clamp(BASE_POSITION_SIZE x level multiplier x (0.5 + confidence),
MIN_POSITION_SIZE, MAX_POSITION_SIZE), with the seed's strength levels:

| level | strength | multiplier |
|---|---|---|
| WEAK | < 0.2 | 0.5 |
| NEUTRAL | < 0.4 | 0.75 |
| MODERATE | < 0.6 | 1.0 |
| STRONG | < 0.8 | 1.25 |
| VERY_STRONG | >= 0.8 | 1.5 |
"""

from __future__ import annotations

LEVELS: tuple[tuple[float, str, float], ...] = (
    (0.2, "WEAK", 0.5),
    (0.4, "NEUTRAL", 0.75),
    (0.6, "MODERATE", 1.0),
    (0.8, "STRONG", 1.25),
    (float("inf"), "VERY_STRONG", 1.5),
)


def strength_level(strength: float) -> tuple[str, float]:
    """The level name and size multiplier for a strength in [0, 1]."""
    for upper, name, multiplier in LEVELS:
        if strength < upper:
            return name, multiplier
    return LEVELS[-1][1], LEVELS[-1][2]


def position_fraction(confidence: float, strength: float, base: float, minimum: float, maximum: float) -> float:
    """Share of available cash to commit to a new position."""
    _, multiplier = strength_level(strength)
    return min(max(base * multiplier * (0.5 + confidence), minimum), maximum)
