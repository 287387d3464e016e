"""Structural JSON schemas for the Prometheus Operator kinds the chart renders.

kubernetes-validate only knows built-in kinds, so these cover the fields this chart uses (a subset of
monitoring.coreos.com/v1), with additionalProperties: false so that a misspelt field fails."""
from __future__ import annotations

DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                          r"(([0-9]+)s)?(([0-9]+)ms)?)$"}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
LABEL_NAME = {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}
METADATA = {
    "type": "object", "required": ["name", "namespace"],
    "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                   "namespace": {"type": "string", "minLength": 1},
                   "labels": STRMAP, "annotations": STRMAP},
    "additionalProperties": False,
}
RELABEL = {
    "type": "object", "additionalProperties": False,
    "properties": {"sourceLabels": {"type": "array", "items": {"type": "string"}}, "separator": {"type": "string"},
                   "targetLabel": {"type": "string"}, "regex": {"type": "string"}, "modulus": {"type": "integer"},
                   "replacement": {"type": "string"},
                   "action": {"enum": ["replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
                                       "lowercase", "uppercase", "keepequal", "dropequal"]}},
}
NAMESPACE_SELECTOR = {
    "type": "object", "additionalProperties": False,
    "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "minItems": 1,
                                                               "items": {"type": "string"}}},
}
SELECTOR = {
    "type": "object", "additionalProperties": False, "required": ["matchLabels"],
    "properties": {"matchLabels": {**STRMAP, "minProperties": 1}},
}
ENDPOINT_PROPS = {"path": {"type": "string", "pattern": "^/"}, "interval": DURATION, "scrapeTimeout": DURATION,
                  "scheme": {"enum": ["http", "https"]}, "honorLabels": {"type": "boolean"},
                  "relabelings": {"type": "array", "items": RELABEL},
                  "metricRelabelings": {"type": "array", "items": RELABEL}}


def _kind(kind: str, spec: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
                           "metadata": METADATA, "spec": spec}}


SERVICE_MONITOR = _kind("ServiceMonitor", {
    "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
    "properties": {"selector": SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR, "jobLabel": {"type": "string"},
                   "endpoints": {"type": "array", "minItems": 1, "items": {
                       "type": "object", "additionalProperties": False, "required": ["port"],
                       "properties": {"port": {"type": "string", "minLength": 1}, **ENDPOINT_PROPS}}}},
})
POD_MONITOR = _kind("PodMonitor", {
    "type": "object", "additionalProperties": False, "required": ["selector", "podMetricsEndpoints"],
    "properties": {"selector": SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR, "jobLabel": {"type": "string"},
                   "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                       "type": "object", "additionalProperties": False, "required": ["port"],
                       "properties": {"port": {"type": "string", "minLength": 1}, **ENDPOINT_PROPS}}}},
})
RULE = {
    "type": "object", "additionalProperties": False, "required": ["alert", "expr"],
    "properties": {"alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                   "expr": {"type": "string", "minLength": 1}, "for": DURATION,
                   "labels": {**STRMAP, "required": ["severity"],
                              "properties": {"severity": {"enum": ["critical", "warning", "info"]}}},
                   "annotations": {**STRMAP, "required": ["summary", "description", "runbook", "runbook_url"]}},
}
PROMETHEUS_RULE = _kind("PrometheusRule", {
    "type": "object", "additionalProperties": False, "required": ["groups"],
    "properties": {"groups": {"type": "array", "minItems": 1, "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "rules"],
        "properties": {"name": {"type": "string", "minLength": 1}, "interval": DURATION,
                       "rules": {"type": "array", "minItems": 1, "items": RULE}}}}},
})
SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR, "PodMonitor": POD_MONITOR, "PrometheusRule": PROMETHEUS_RULE}
