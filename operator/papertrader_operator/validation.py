"""Validate a PaperTrader spec against the CRD's own schema and CEL rules.

Every message starts with the path of the offending field (`spec.symbols[1]: ...`), as the API server's do.
CEL rules run when a CEL evaluator (`celpy`, PyPI `cel-python`) is importable; a real API server runs them too.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema

from papertrader_operator.children import child_name, worker_config
from papertrader_operator.crd import SPEC_SCHEMA, apply_defaults
from papertrader_operator.spec import TraderSpec

try:  # the CEL evaluator is optional at run time: the API server enforces the same rules
    import celpy
except ImportError:  # pragma: no cover - depends on the installation
    celpy = None  # type: ignore[assignment]  # the module's stand-in when cel-python is not installed


def _field_path(base: str, parts: Any) -> str:
    path = base
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _jsonschema_view(schema: Any) -> Any:
    """Translate the Kubernetes extensions jsonschema does not know into plain JSON Schema."""
    if isinstance(schema, list):
        return [_jsonschema_view(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    view = {key: _jsonschema_view(value) for key, value in schema.items() if key != "default"}
    if schema.get("x-kubernetes-list-type") == "set":
        view["uniqueItems"] = True
    if schema.get("x-kubernetes-int-or-string"):
        view["type"] = ["integer", "string"]
    return view


@functools.cache
def _validator(schema_json: str) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(_jsonschema_view(json.loads(schema_json)))


def schema_errors(spec: Any, schema: dict[str, Any] = SPEC_SCHEMA) -> list[str]:
    """OpenAPI schema violations of an already defaulted spec."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(spec), key=lambda err: list(map(str, err.absolute_path)))
    return [f"{_field_path('spec', err.absolute_path)}: {err.message}" for err in errors]


@functools.cache
def _cel_program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _walk_rules(schema: dict[str, Any], value: Any, old: Any,
                path: str) -> Iterator[tuple[str, dict[str, Any], Any, Any]]:
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule, value, old
    if isinstance(value, dict):
        for key, prop in schema.get("properties", {}).items():
            if key in value:
                old_child = old.get(key) if isinstance(old, dict) else None
                yield from _walk_rules(prop, value[key], old_child, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _walk_rules(schema["items"], item, None, f"{path}[{index}]")


def cel_errors(spec: Any, old_spec: Any = None, schema: dict[str, Any] = SPEC_SCHEMA) -> list[str]:
    """Failed `x-kubernetes-validations` rules; transition rules (`oldSelf`) only run when an old spec is given."""
    if celpy is None:  # pragma: no cover - depends on the installation
        return []
    errors = []
    for path, rule, value, old in _walk_rules(schema, spec, old_spec, "spec"):
        uses_old = "oldSelf" in rule["rule"]
        if uses_old and old is None:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if uses_old:
            activation["oldSelf"] = celpy.json_to_cel(old)
        try:
            ok = bool(_cel_program(rule["rule"]).evaluate(activation))
        except celpy.CELEvalError as exc:
            ok, rule = False, {**rule, "message": f"{rule.get('message', rule['rule'])} ({exc.args[0]})"}
        if not ok:
            errors.append(f"{path}{rule.get('fieldPath', '')}: {rule.get('message', rule['rule'])}")
    return errors


def validate_spec(spec: Any, old_spec: Any = None,
                  schema: dict[str, Any] = SPEC_SCHEMA) -> tuple[dict[str, Any], list[str]]:
    """Default the spec and validate it against `schema` (the CRD's spec schema); returns the defaulted spec
    and every error found."""
    if not isinstance(spec, dict):
        return {}, ["spec: Required value"]
    defaulted, errors = _validate_json(json.dumps(spec, sort_keys=True), json.dumps(old_spec, sort_keys=True),
                                       json.dumps(schema, sort_keys=True))
    return copy.deepcopy(defaulted), list(errors)


@functools.lru_cache(maxsize=512)  # every resync pass re-validates unchanged specs
def _validate_json(spec_json: str, old_json: str, schema_json: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    schema, old_spec = json.loads(schema_json), json.loads(old_json)
    defaulted = apply_defaults(schema, json.loads(spec_json))
    errors = schema_errors(defaulted, schema)
    if not errors:  # CEL runs on schema-valid objects only, as in the API server
        old = apply_defaults(schema, old_spec) if isinstance(old_spec, dict) else None
        errors = cel_errors(defaulted, old, schema)
    if not errors:
        errors = worker_config_errors(defaulted)
    return defaulted, tuple(errors)


def worker_config_errors(spec: dict[str, Any]) -> list[str]:
    """The worker's own settings check on the configuration the operator would render (extraConfig included), so
    that a spec is refused here rather than by crash-looping workers. Skipped when the worker package is absent."""
    try:
        from papertrader.config import ConfigError, check_settings
    except ImportError:  # pragma: no cover - the operator installed without the worker
        return []
    typed = TraderSpec.from_defaulted(spec)
    values = worker_config(typed, typed.symbols[0])
    if typed.replay_file is not None:
        values["REPLAY_FILE"] = typed.replay_file
    try:
        check_settings(values)
    except ConfigError as exc:
        field = "spec.extraConfig" if spec.get("extraConfig") else "spec"
        return [f"{field}: the worker would refuse this configuration: {exc}"]
    return []


CHILD_NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_CHILD_NAME = 52  # a StatefulSet's pods carry a controller-revision-hash label of `<name>-<10 chars>` (<= 63)


def name_errors(trader: str, symbols: list[str]) -> list[str]:
    """Child names (`<trader>-<symbol>`) must be DNS-1035 labels (Services) short enough for a StatefulSet."""
    errors = []
    for symbol in symbols:
        name = child_name(trader, symbol)
        if not CHILD_NAME_PATTERN.match(name):
            errors.append(f"metadata.name: child name {name!r} must start with a letter and contain only "
                          "lower-case letters, digits and '-'")
        elif len(name) > MAX_CHILD_NAME:
            errors.append(f"metadata.name: child name {name!r} is {len(name)} characters; "
                          f"'<name>-<symbol>' may have at most {MAX_CHILD_NAME}")
    return errors
