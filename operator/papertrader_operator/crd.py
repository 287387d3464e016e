"""The PaperTrader CustomResourceDefinition, defined once in Python.

`crds/papertraders.papertrader.io.yaml` is rendered from `crd_manifest()` (`python -m papertrader_operator crd`);
a test keeps the two identical. The operator uses the same schema to default and validate specs itself, so a
cluster (or an emulator) that skips admission still never gets children built from a malformed spec.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from papertrader_operator.settings import GROUP, KIND, PLURAL, VERSION
from papertrader_operator.spec import TraderSpec

SYMBOL_PATTERN = r"^[A-Z0-9]+-[A-Z0-9]+$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CANDLE_INTERVALS = ["1m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"]
# Settings the operator itself owns in every worker's config; `extraConfig` may not override them.
MANAGED_SETTINGS = ["SYMBOL", "SYMBOLS", "SOURCE", "STATE_DIR", "HTTP_PORT", "WS_PORT", "TELEGRAM_BOT_TOKEN",
                    "TELEGRAM_CHAT_ID", "REPLAY_FILE", "MODEL"]


def _quantity(default: str | None = None, description: str = "") -> dict[str, Any]:
    prop: dict[str, Any] = {"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN,
                            "description": description or "a Kubernetes quantity, e.g. 500m, 1, 256Mi"}
    if default is not None:
        prop["default"] = default
    return prop


def _fraction(default: float, description: str, maximum: float = 1.0) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": maximum, "default": default, "description": description}


def _compute(cpu: str, memory: str) -> dict[str, Any]:
    return {"type": "object", "default": {"cpu": cpu, "memory": memory},
            "properties": {"cpu": _quantity(cpu), "memory": _quantity(memory)}}


SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["symbols", "source"],
    "description": "One paper-trading portfolio: one worker per symbol.",
    "properties": {
        "symbols": {
            "type": "array", "minItems": 1, "maxItems": 50, "x-kubernetes-list-type": "set",
            "description": "Markets to trade, BASE-QUOTE in upper case (e.g. BTC-EUR); one worker each.",
            "items": {"type": "string", "pattern": SYMBOL_PATTERN, "maxLength": 24},
        },
        "source": {"type": "string", "enum": ["synthetic", "replay", "bitvavo"],
                   "description": "Candle source: synthetic (seeded, offline), replay (a candle file) or bitvavo."},
        "replayFile": {"type": "string", "minLength": 1, "maxLength": 1024,
                       "description": "Candle CSV path inside the worker container; required with source replay."},
        "speed": {"type": "string", "default": "realtime",
                  "pattern": r"^(max|realtime|[0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)$",
                  "description": "Replay/synthetic pace: max, realtime or a positive factor."},
        "candleInterval": {"type": "string", "enum": CANDLE_INTERVALS, "default": "1m"},
        "strategy": {
            "type": "object", "default": {},
            "properties": {
                "name": {"type": "string", "default": "sma-cross", "maxLength": 253,
                         "pattern": r"^([a-z][a-z0-9-]*|[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*)$",
                         "description": "A built-in strategy (sma-cross, ml) or module:Class."},
                "model": {
                    "type": "object", "required": ["path"],
                    "description": "Model for the ml strategy: a path, optionally on a read-only mounted claim.",
                    "properties": {
                        "path": {"type": "string", "pattern": r"^/", "maxLength": 1024},
                        "claimName": {"type": "string", "pattern": DNS_SUBDOMAIN_PATTERN, "maxLength": 253,
                                      "description": "PVC mounted read-only at /models."},
                        "version": {"type": "string", "maxLength": 128},
                    },
                },
            },
            "x-kubernetes-validations": [
                {"rule": "self.name != 'ml' || has(self.model)",
                 "message": "strategy.model is required when strategy.name is ml", "fieldPath": ".model"},
            ],
        },
        "capital": {
            "type": "object", "default": {},
            "properties": {
                "initial": {"type": "number", "minimum": 1, "maximum": 1e12, "default": 10000,
                            "description": "Starting paper capital of each symbol's worker (quote currency)."},
                "maxPositions": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
                "feeTaker": _fraction(0.0025, "Taker fee as a fraction of notional.", 0.1),
                "slippagePct": _fraction(0.0005, "Slippage as a fraction of price.", 0.1),
            },
        },
        "risk": {
            "type": "object", "default": {},
            "properties": {
                "maxDrawdownPct": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1,
                                   "default": 0.2,
                                   "description": "Portfolio drawdown (fraction, across all symbols) at which the "
                                                  "operator halts new entries on every worker."},
                "symbolMaxDrawdownPct": _fraction(0.10, "Per-worker MAX_DRAWDOWN_PCT; 0 disables."),
                "maxDailyLossPct": _fraction(0.05, "Per-worker MAX_DAILY_LOSS_PCT; 0 disables."),
                "takeProfitPct": _fraction(0.015, "TAKE_PROFIT_PCT; 0 disables.", 10.0),
                "stopLossPct": {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": True,
                                "default": 0.008, "description": "STOP_LOSS_PCT; 0 disables."},
                "trailingStopPct": {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": True,
                                    "default": 0.006, "description": "TRAILING_STOP_PCT; 0 disables."},
            },
        },
        "extraConfig": {
            "type": "object", "maxProperties": 64,
            "description": "More worker settings (upper-case names, string values) for the worker's config file.",
            "additionalProperties": {"type": "string", "maxLength": 1024},
            "x-kubernetes-validations": [
                {"rule": "self.all(k, k.matches('^[A-Z][A-Z0-9_]*$'))",
                 "message": "extraConfig keys must be upper-case worker setting names"},
                {"rule": "!self.exists(k, k in " + str(MANAGED_SETTINGS) + ")",
                 "message": "extraConfig may not set operator-managed settings or secrets"},
            ],
        },
        "image": {"type": "string", "minLength": 1, "maxLength": 512, "pattern": r"^\S+$",
                  "description": "Worker image; default: the operator's PAPERTRADER_WORKER_IMAGE."},
        "imagePullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"], "default": "IfNotPresent"},
        "paused": {"type": "boolean", "default": False,
                   "description": "Scale every worker to zero; state volumes are kept."},
        "resources": {
            "type": "object", "default": {},
            "properties": {"requests": _compute("100m", "256Mi"), "limits": _compute("1", "1Gi")},
        },
        "telegram": {
            "type": "object", "required": ["secretName"],
            "description": "Secret holding the Telegram bot token and chat id; referenced, never copied.",
            "properties": {
                "secretName": {"type": "string", "pattern": DNS_SUBDOMAIN_PATTERN, "maxLength": 253},
                "tokenKey": {"type": "string", "default": "token", "maxLength": 253},
                "chatIdKey": {"type": "string", "default": "chatId", "maxLength": 253},
                "notificationsPerHour": {
                    "type": "object",
                    "description": "with the fleet notifier: this trader's own hourly limits per category, on top "
                                   "of the fleet's (critical messages ignore both)",
                    "properties": {category: {"type": "integer", "minimum": 0, "maximum": 100000}
                                   for category in ("error", "trade", "status", "system")},
                },
            },
        },
        "storage": {
            "type": "object", "default": {},
            "properties": {
                "size": {**_quantity("1Gi", "state volume size per worker"),
                         "x-kubernetes-validations": [
                             {"rule": "self == oldSelf",
                              "message": "storage.size is immutable (volumeClaimTemplates cannot change)"}]},
                "storageClassName": {"type": "string", "maxLength": 253,
                                     "x-kubernetes-validations": [
                                         {"rule": "self == oldSelf",
                                          "message": "storage.storageClassName is immutable"}]},
                "retainOnDelete": {"type": "boolean", "default": True,
                                   "description": "Keep the state volumes (the paper ledgers) when a symbol is "
                                                  "removed or the PaperTrader is deleted (default). Re-adding "
                                                  "the symbol resumes its ledger. false deletes them with the "
                                                  "StatefulSet; to delete kept ones: kubectl delete pvc -l "
                                                  "app.kubernetes.io/instance=<trader>,"
                                                  "papertrader.io/symbol=<symbol, lower case>."},
            },
        },
    },
    "x-kubernetes-validations": [
        {"rule": "self.source != 'replay' || has(self.replayFile)",
         "message": "replayFile is required when source is replay", "fieldPath": ".replayFile"},
        {"rule": "!has(self.replayFile) || self.source == 'replay'",
         "message": "replayFile is only allowed when source is replay", "fieldPath": ".replayFile"},
    ],
}

_CONDITION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["type", "status"],
    "properties": {
        "type": {"type": "string"},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "observedGeneration": {"type": "integer"},
    },
}

_SYMBOL_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["symbol"],
    "properties": {
        "symbol": {"type": "string"},
        "workload": {"type": "string"},
        "ready": {"type": "boolean"},
        "restarts": {"type": "integer"},
        "equity": {"type": "string"},
        "returnPct": {"type": "number"},
        "drawdownPct": {"type": "number"},
        "openPositions": {"type": "integer"},
        "trades": {"type": "integer"},
        "lastCandleTime": {"type": "string"},
        "healthLevel": {"type": "string"},
        "healthScore": {"type": "number"},
        "modelVersion": {"type": "string"},
        "entriesHalted": {"type": "boolean"},
        "stale": {"type": "boolean", "description": "the worker cannot be reached: its last reported results"},
        "lastSeen": {"type": "string", "format": "date-time"},
        "message": {"type": "string"},
    },
}

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "observedGeneration": {"type": "integer"},
        "workers": {"type": "string", "description": "ready/desired, e.g. 2/2"},
        "readyWorkers": {"type": "integer"},
        "symbolList": {"type": "string", "description": "the symbols, comma-separated (for kubectl get)"},
        "conditions": {"type": "array", "items": _CONDITION_SCHEMA,
                       "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        "symbols": {"type": "array", "items": _SYMBOL_STATUS_SCHEMA},
        "portfolio": {
            "type": "object",
            "properties": {
                "initialCapital": {"type": "string"},
                "equity": {"type": "string"},
                "returnPct": {"type": "number"},
                "drawdownPct": {"type": "number"},
                "openPositions": {"type": "integer"},
                "reportingWorkers": {"type": "integer"},
                "staleWorkers": {"type": "integer",
                                 "description": "unreachable workers counted at their last known equity"},
            },
        },
        "risk": {
            "type": "object",
            "properties": {
                "halted": {"type": "boolean"},
                "reason": {"type": "string"},
                "haltedAt": {"type": "string", "format": "date-time"},
                "haltedGeneration": {"type": "integer"},
            },
        },
        "entries": {"type": "string", "enum": ["open", "halted"],
                    "description": "halted: the papertrader.io/halt-entries annotation (the notifier's /pause) "
                                   "stops new entries on every worker"},
        "entriesHaltReason": {"type": "string"},
    },
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Symbols", "type": "string", "jsonPath": ".status.symbolList"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.workers"},
    {"name": "Equity", "type": "string", "jsonPath": ".status.portfolio.equity"},
    {"name": "Return %", "type": "number", "jsonPath": ".status.portfolio.returnPct"},
    {"name": "Halted", "type": "boolean", "jsonPath": ".status.risk.halted"},
    {"name": "Entries", "type": "string", "jsonPath": ".status.entries"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd_manifest() -> dict[str, Any]:
    """The full CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": "papertrader",
                      "shortNames": ["pt"], "categories": ["papertrader"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": SPEC_SCHEMA,
                        "status": STATUS_SCHEMA,
                    },
                }},
            }],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML document kept in `crds/`."""
    header = "# Generated by `python -m papertrader_operator crd`; edit operator/papertrader_operator/crd.py instead.\n"
    return header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=120)


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill schema defaults into a copy of `value`, the way the API server's structural defaulting does."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for key, prop in schema.get("properties", {}).items():
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
            if key in value:
                value[key] = apply_defaults(prop, value[key])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def default_spec(spec: dict[str, Any]) -> TraderSpec:
    """A spec with every default of the CRD applied, parsed into its typed form."""
    return TraderSpec.from_defaulted(apply_defaults(SPEC_SCHEMA, spec))
