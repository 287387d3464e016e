"""Compare a desired child with the live object, and compute status merge patches.

The API server adds defaults (and some fields the operator never sets), so a child has drifted when the
desired document is not contained in the live one. Resource quantities compare by value (`0.5` == `500m`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

QUANTITY_KEYS = frozenset({"cpu", "memory", "storage", "ephemeral-storage"})
# StatefulSet fields the API server refuses to change: drift there means delete (orphaning pods) and create.
IMMUTABLE_STATEFULSET_FIELDS = ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy")


# Kubernetes quantity suffixes (apimachinery resource.Quantity): binary, then decimal SI.
_SUFFIXES = {"Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
             "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60, "n": Decimal("1e-9"), "u": Decimal("1e-6"),
             "m": Decimal("1e-3"), "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
             "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18")}


def parse_quantity(quantity: Any) -> Decimal:
    """The value of a Kubernetes quantity (`500m`, `1Gi`, `2e3`, 0.5); ValueError when it is not one."""
    if isinstance(quantity, bool) or not isinstance(quantity, (str, int, float)):
        raise ValueError(f"not a quantity: {quantity!r}")
    text = str(quantity).strip()
    number, factor = text, Decimal(1)
    for suffix, multiple in _SUFFIXES.items():
        if text.endswith(suffix) and len(text) > len(suffix):
            number, factor = text[:-len(suffix)], multiple
            break
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"not a quantity: {quantity!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a quantity: {quantity!r}")
    return value * factor


def _same_quantity(desired: Any, actual: Any) -> bool:
    try:
        return bool(parse_quantity(desired) == parse_quantity(actual))
    except ValueError:
        return False


def contains(desired: Any, actual: Any, key: str = "") -> bool:
    """Whether every field of `desired` is present with the same value in `actual` (lists: same length).

    An empty list or map in `desired` matches an absent field: the API server does not store empty ones."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            contains(value, actual[name], name) if name in actual else value in ([], {})
            for name, value in desired.items())
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(desired) == len(actual)
                and all(contains(d, a) for d, a in zip(desired, actual, strict=True)))
    if desired == actual:
        return True
    return key in QUANTITY_KEYS and _same_quantity(desired, actual)


def drifted_fields(desired: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Top-level paths (`metadata.labels`, `spec.replicas`, `data`) whose live value differs from the desired one."""
    paths = []
    for section in ("metadata", "spec", "data"):
        if section not in desired:
            continue
        live = actual.get(section) or {}
        for name, value in desired[section].items():
            if name in ("name", "namespace"):
                continue
            if not contains(value, live.get(name), name):
                paths.append(f"{section}.{name}")
    return paths


def repair_patch(desired: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """A merge patch that puts the drifted fields back to their desired values."""
    patch: dict[str, Any] = {}
    for path in fields:
        section, name = path.split(".", 1)
        patch.setdefault(section, {})[name] = desired[section][name]
    return patch


def needs_recreate(kind: str, fields: list[str]) -> bool:
    """Whether the drift touches fields the API server will not patch."""
    return kind == "StatefulSet" and any(f"spec.{name}" in fields for name in IMMUTABLE_STATEFULSET_FIELDS)


def merge_patch_diff(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch turning `old` into `new` (removed keys become None); {} when equal."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch_diff(old[key], value)
    return patch
