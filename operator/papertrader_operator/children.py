"""Pure functions: a PaperTrader -> the StatefulSet, Service and ConfigMap of each of its symbols.

Nothing here talks to Kubernetes, so tests and the Helm chart's checks can render children from a plain dict.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from papertrader_operator import settings as s
from papertrader_operator.crd import default_spec
from papertrader_operator.spec import Source, TraderSpec

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the C emitter when libyaml is there: same output
CHILD_KINDS = ("ConfigMap", "Service", "StatefulSet")  # creation order: config and service before the workload


def child_name(trader: str, symbol: str) -> str:
    """`<trader>-<symbol lowercased>`, e.g. `demo-btc-eur`."""
    return f"{trader}-{symbol.lower()}"


def child_labels(trader: str, symbol: str) -> dict[str, str]:
    """The labels of CONTRACT.md, carried by every child and by the worker pods."""
    return {
        s.LABEL_NAME: s.WORKER_APP,
        s.LABEL_INSTANCE: trader,
        s.LABEL_MANAGED_BY: s.MANAGED_BY,
        s.LABEL_SYMBOL: symbol.lower(),
    }


def owner_reference(trader: dict[str, Any]) -> dict[str, Any]:
    """The controller ownerReference that makes the PaperTrader own (and garbage-collect) a child."""
    meta = trader["metadata"]
    return {"apiVersion": s.API_VERSION, "kind": s.KIND, "name": meta["name"], "uid": meta.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def _metadata(trader: dict[str, Any], symbol: str) -> dict[str, Any]:
    meta = trader["metadata"]
    result = {"name": child_name(meta["name"], symbol), "labels": child_labels(meta["name"], symbol),
              "ownerReferences": [owner_reference(trader)]}
    if meta.get("namespace"):
        result["namespace"] = meta["namespace"]
    return result


def worker_config(spec: TraderSpec, symbol: str) -> dict[str, Any]:
    """The worker's settings (upper-case names) for one symbol."""
    capital, risk = spec.capital, spec.risk
    config: dict[str, Any] = {
        "SYMBOL": symbol,
        "SOURCE": spec.source.value,
        "SPEED": spec.speed,
        "CANDLE_INTERVAL": spec.candle_interval,
        "STRATEGY": spec.strategy.name,
        "INITIAL_CAPITAL": capital.initial,
        "MAX_POSITIONS": capital.max_positions,
        "FEE_TAKER": capital.fee_taker,
        "SLIPPAGE_PCT": capital.slippage_pct,
        "TAKE_PROFIT_PCT": risk.take_profit_pct,
        "STOP_LOSS_PCT": risk.stop_loss_pct,
        "TRAILING_STOP_PCT": risk.trailing_stop_pct,
        "MAX_DRAWDOWN_PCT": risk.symbol_max_drawdown_pct,
        "MAX_DAILY_LOSS_PCT": risk.max_daily_loss_pct,
        # a spec change that decides results (fees, exits, strategy parameters...) starts a new run: the worker
        # archives the old one on its volume (archive/<UTC>/) instead of refusing to start (a crash loop)
        "RESET_STATE": True,
    }
    config.update(spec.extra_config)
    return config


def _args(spec: TraderSpec, symbol: str) -> list[str]:
    args = ["run", "--symbol", symbol, "--source", spec.source.value, "--state-dir", s.STATE_DIR,
            "--config", f"{s.CONFIG_DIR}/{s.CONFIG_FILE}", "--http-port", str(s.HTTP_PORT),
            "--ws-port", str(s.WS_PORT), "--speed", spec.speed, "--strategy", spec.strategy.name]
    if spec.replay_file is not None:
        args += ["--replay-file", spec.replay_file]
    if spec.strategy.model is not None:
        args += ["--model", spec.strategy.model.path]
    return args


def control_secret_name(trader: str) -> str:
    """`<trader>-control`: the Secret holding the trader's control credential (key `token`)."""
    return f"{trader}-control"


def render_control_secret(trader: dict[str, Any], token: str) -> dict[str, Any]:
    """The trader's control credential: mounted into each of its workers, presented by the operator."""
    meta = trader["metadata"]
    metadata: dict[str, Any] = {
        "name": control_secret_name(meta["name"]),
        "labels": {s.LABEL_INSTANCE: meta["name"], s.LABEL_MANAGED_BY: s.MANAGED_BY},
        "ownerReferences": [owner_reference(trader)],
    }
    if meta.get("namespace"):
        metadata["namespace"] = meta["namespace"]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata,
            "stringData": {s.CONTROL_SECRET_KEY: token}}


def _env() -> list[dict[str, Any]]:
    return [{"name": "CONTROL_TOKEN_FILE", "value": f"{s.CONTROL_DIR}/{s.CONTROL_SECRET_KEY}"}]


def telegram_env(trader: str, spec: TraderSpec, notifier_url: str = "") -> list[dict[str, Any]]:
    """Telegram for a trader with ``spec.telegram``: with a fleet notifier, its address, the trader's name, its own
    chat (optional key of the Secret) and limits, never the token; without one, the token and chat id."""
    telegram = spec.telegram
    if telegram is None:
        return []

    def secret_key(env_name: str, key: str, optional: bool = False) -> dict[str, Any]:
        ref: dict[str, Any] = {"name": telegram.secret_name, "key": key}
        if optional:
            ref["optional"] = True
        return {"name": env_name, "valueFrom": {"secretKeyRef": ref}}

    if not notifier_url:
        return [secret_key("TELEGRAM_BOT_TOKEN", telegram.token_key),
                secret_key("TELEGRAM_CHAT_ID", telegram.chat_id_key)]
    env = [{"name": "NOTIFIER_URL", "value": notifier_url.rstrip("/")}, {"name": "NOTIFIER_TRADER", "value": trader},
           secret_key("NOTIFIER_CHAT_ID", telegram.chat_id_key, optional=True)]
    if telegram.notifications_per_hour:
        env.append({"name": "NOTIFIER_LIMITS",
                    "value": json.dumps(dict(telegram.notifications_per_hour), sort_keys=True,
                                        separators=(",", ":"))})
    return env


def gateway_env(spec: TraderSpec, gateway_url: str) -> list[dict[str, Any]]:
    """Point a bitvavo worker at the market gateway (``http://host:port``), unless extraConfig names an endpoint."""
    if (not gateway_url or spec.source is not Source.BITVAVO
            or {"BITVAVO_REST_URL", "BITVAVO_WS_URL"} & set(spec.extra_config)):
        return []
    base = gateway_url.rstrip("/")
    ws_base = "ws" + base[4:] if base.startswith("http") else base
    return [{"name": "BITVAVO_REST_URL", "value": f"{base}/v2"}, {"name": "BITVAVO_WS_URL", "value": f"{ws_base}/v2/"}]


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": s.HTTP_PORT}, "periodSeconds": period, "timeoutSeconds": 3,
            "failureThreshold": failures}


def render_configmap(trader: dict[str, Any], spec: TraderSpec, symbol: str) -> dict[str, Any]:
    """The ConfigMap holding the worker's `config.yaml`."""
    text = yaml.dump(worker_config(spec, symbol), Dumper=_DUMPER, sort_keys=True)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(trader, symbol),
            "data": {s.CONFIG_FILE: text}}


def render_service(trader: dict[str, Any], symbol: str) -> dict[str, Any]:
    """The headless Service that names the worker pod (and lets the operator reach its /health)."""
    meta = _metadata(trader, symbol)
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": meta["labels"],
            "ports": [{"name": "http", "port": s.HTTP_PORT, "targetPort": s.HTTP_PORT, "protocol": "TCP"},
                      {"name": "ws", "port": s.WS_PORT, "targetPort": s.WS_PORT, "protocol": "TCP"}],
        },
    }


def render_statefulset(trader: dict[str, Any], spec: TraderSpec, symbol: str,
                       default_image: str = s.DEFAULT_IMAGE, config_hash: str = "",
                       gateway_url: str = "", notifier_url: str = "") -> dict[str, Any]:
    """The one-replica StatefulSet running the worker for `symbol`, with its state on a claim template."""
    meta = _metadata(trader, symbol)
    labels = meta["labels"]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": meta["name"]}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "control", "secret": {"secretName": control_secret_name(trader["metadata"]["name"]),
                                       "defaultMode": 0o440}},  # group-readable: fsGroup is the worker's
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "state", "mountPath": s.STATE_DIR},
        {"name": "config", "mountPath": s.CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "control", "mountPath": s.CONTROL_DIR, "readOnly": True},
    ]
    model = spec.strategy.model
    if model is not None and model.claim_name:
        volumes.append({"name": "model", "persistentVolumeClaim": {"claimName": model.claim_name, "readOnly": True}})
        mounts.append({"name": "model", "mountPath": s.MODEL_DIR, "readOnly": True})
    storage = spec.storage
    claim_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": storage.size}}}
    if storage.storage_class_name:
        claim_spec["storageClassName"] = storage.storage_class_name
    retention = "Retain" if storage.retain_on_delete else "Delete"
    container = {
        "name": "worker",
        "image": spec.image or default_image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["papertrader"],
        "args": _args(spec, symbol),
        "env": (_env() + telegram_env(trader["metadata"]["name"], spec, notifier_url)
                + gateway_env(spec, gateway_url)),  # never empty (the API server would drop an empty list)
        "ports": [{"name": "http", "containerPort": s.HTTP_PORT, "protocol": "TCP"},
                  {"name": "ws", "containerPort": s.WS_PORT, "protocol": "TCP"}],
        "livenessProbe": _probe("/healthz", 10, 3),
        "readinessProbe": _probe("/readyz", 5, 3),
        "startupProbe": _probe("/healthz", 5, 60),
        "resources": {kind: dict(values) for kind, values in spec.resources.items()},
        "volumeMounts": mounts,
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
        "spec": {
            "replicas": 0 if spec.paused else 1,
            "serviceName": meta["name"],
            "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": retention, "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": labels, "annotations": {s.ANNOTATION_CONFIG_HASH: config_hash}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": s.WORKER_UID,
                        "runAsGroup": s.WORKER_UID,
                        "fsGroup": s.WORKER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [{
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "state", "labels": labels},
                "spec": claim_spec,
            }],
        },
    }


def _hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def render_symbol(trader: dict[str, Any], spec: TraderSpec, symbol: str,
                  default_image: str = s.DEFAULT_IMAGE, gateway_url: str = "",
                  notifier_url: str = "") -> list[dict[str, Any]]:
    """The three children of one symbol, in creation order."""
    configmap = render_configmap(trader, spec, symbol)
    return [configmap, render_service(trader, symbol),
            render_statefulset(trader, spec, symbol, default_image, _hash(configmap["data"]), gateway_url,
                               notifier_url)]


def render_children(trader: dict[str, Any], default_image: str = s.DEFAULT_IMAGE) -> list[dict[str, Any]]:
    """Every child a PaperTrader should have, in creation order (ConfigMap, Service, StatefulSet per symbol).

    `trader` is a PaperTrader object (`metadata.name`, `metadata.uid`, `spec`); defaults of the CRD are applied.
    """
    spec = default_spec(trader.get("spec") or {})
    return [child for symbol in spec.symbols for child in render_symbol(trader, spec, symbol, default_image)]
