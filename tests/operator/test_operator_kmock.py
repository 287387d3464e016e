"""The real kopf operator against kmock: children, drift repair, status, restarts, risk halt, pause, deletion."""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.conftest import Cluster, FakeWorkers, OperatorFactory, eventually, stop_operator

pytestmark = pytest.mark.timeout(90)

KINDS = ("StatefulSet", "Service", "ConfigMap")
LABELS = {
    "app.kubernetes.io/name": "papertrader-worker",
    "app.kubernetes.io/instance": "demo",
    "app.kubernetes.io/managed-by": "papertrader-operator",
}


def children_of(cluster: Cluster, names: set[str]) -> bool:
    return all(names <= cluster.names(kind) for kind in KINDS)


def condition(trader: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(item for item in trader["status"]["conditions"] if item["type"] == kind)


async def test_create_renders_contract_children_and_status(cluster: Cluster, workers: FakeWorkers,
                                                           start_operator: OperatorFactory) -> None:
    workers.report("demo-btc-eur", equity="10100.00")
    await start_operator()
    created = await cluster.apply("demo", {"symbols": ["BTC-EUR", "ETH-EUR"], "source": "synthetic",
                                           "telegram": {"secretName": "tg"}})
    uid = created["metadata"]["uid"]
    await eventually(lambda: children_of(cluster, {"demo-btc-eur", "demo-eth-eur"}))

    for kind in KINDS:
        for symbol in ("btc-eur", "eth-eur"):
            child = cluster.get(kind, f"demo-{symbol}")
            assert child["metadata"]["labels"] == {**LABELS, "papertrader.io/symbol": symbol}
            assert child["metadata"]["ownerReferences"] == [{
                "apiVersion": "papertrader.io/v1alpha1", "kind": "PaperTrader", "name": "demo", "uid": uid,
                "controller": True, "blockOwnerDeletion": True}]
            assert not child["metadata"].get("finalizers")

    sts = cluster.get("StatefulSet", "demo-btc-eur")["spec"]
    assert sts["replicas"] == 1 and sts["serviceName"] == "demo-btc-eur"
    pod = sts["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:4] == ["run", "--symbol", "BTC-EUR", "--source"]
    assert {"--state-dir", "/var/lib/papertrader", "--http-port", "8766", "--ws-port", "8765"} <= set(container["args"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8766}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8766}
    assert container["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True, "privileged": False,
                                            "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}}
    assert {"name": "state", "mountPath": "/var/lib/papertrader"} in container["volumeMounts"]
    claim = sts["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]} == {
        "TELEGRAM_BOT_TOKEN": {"name": "tg", "key": "token"}, "TELEGRAM_CHAT_ID": {"name": "tg", "key": "chatId"}}

    config = cluster.get("ConfigMap", "demo-btc-eur")["data"]["config.yaml"]
    assert "SYMBOL: BTC-EUR" in config and "INITIAL_CAPITAL: 10000" in config and "TAKE_PROFIT_PCT: 0.015" in config
    assert "tg" not in config and "TELEGRAM" not in config
    service = cluster.get("Service", "demo-btc-eur")["spec"]
    assert service["clusterIP"] == "None" and {p["port"] for p in service["ports"]} == {8765, 8766}

    trader = await eventually(lambda: (t := cluster.get("PaperTrader", "demo")) and
                              any(e.get("equity") == "10100.00" for e in t["status"].get("symbols", [])) and t)
    status = trader["status"]
    assert status["observedGeneration"] == 1
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "Progressing", "Degraded", "RiskHalted"}
    btc = next(e for e in status["symbols"] if e["symbol"] == "BTC-EUR")
    assert btc["ready"] is True and btc["healthLevel"] == "excellent" and btc["modelVersion"] == "v7"
    assert btc["returnPct"] == 1.0 and btc["lastCandleTime"] == "2023-11-14T22:13:20Z"
    eth = next(e for e in status["symbols"] if e["symbol"] == "ETH-EUR")
    assert eth["ready"] is False and eth["healthLevel"] == "unknown"
    assert condition(trader, "Ready")["status"] == "False"
    assert "ETH-EUR" in condition(trader, "Ready")["message"]
    assert status["workers"] == "1/2"
    await eventually(lambda: any("created StatefulSet demo-btc-eur" in e["message"]
                                 for e in cluster.events("Reconciled")))
    assert not trader["metadata"].get("finalizers")
