"""The real kopf operator against kmock: children, drift repair, status, restarts, risk halt, pause, deletion."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
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
    runner = await start_operator()
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
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8766, "scheme": "HTTP"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8766, "scheme": "HTTP"}
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
    assert {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") or e["value"] for e in container["env"]} == {
        "CONTROL_TOKEN_FILE": "/var/run/secrets/papertrader/control/token",
        "TELEGRAM_BOT_TOKEN": {"name": "tg", "key": "token"}, "TELEGRAM_CHAT_ID": {"name": "tg", "key": "chatId"}}
    # the trader's control credential: a Secret of its own, owned by it, mounted read-only into every worker
    secret = cluster.get("Secret", "demo-control")
    assert secret["metadata"]["ownerReferences"][0]["uid"] == uid
    assert len(base64.b64decode(secret["data"]["token"])) >= 32
    assert {"name": "control", "mountPath": "/var/run/secrets/papertrader/control", "readOnly": True} in \
        container["volumeMounts"]
    assert {"name": "control", "secret": {"secretName": "demo-control", "defaultMode": 0o440}} in pod["volumes"]

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

    port = runner.operator.http_port  # the running operator's own HTTP endpoint
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200 and (await response.json())["status"] == "ok"
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    assert 'papertrader_operator_reconcile_total{result="ok"}' in text
    assert 'papertrader_operator_child_changes_total{action="create",kind="StatefulSet"}' in text


async def test_symbols_added_and_removed_children_follow(cluster: Cluster, start_operator: OperatorFactory) -> None:
    await start_operator()
    await cluster.apply("demo", {"symbols": ["BTC-EUR", "ETH-EUR"], "source": "synthetic"})
    await eventually(lambda: children_of(cluster, {"demo-btc-eur", "demo-eth-eur"}))

    await cluster.patch("PaperTrader", "demo", {"spec": {"symbols": ["BTC-EUR", "SOL-EUR"]}})
    for kind in KINDS:
        await eventually(lambda kind=kind: cluster.names(kind) == {"demo-btc-eur", "demo-sol-eur"})
    trader = await eventually(lambda: (t := cluster.get("PaperTrader", "demo"))
                              and t["status"].get("observedGeneration") == 2 and t)
    assert [e["symbol"] for e in trader["status"]["symbols"]] == ["BTC-EUR", "SOL-EUR"]
    await eventually(lambda: any("deleted StatefulSet demo-eth-eur" in e["message"]
                                 for e in cluster.events("Reconciled")))


async def test_deleted_and_hand_edited_children_are_repaired(cluster: Cluster, start_operator: OperatorFactory) -> None:
    await start_operator()
    await cluster.apply("demo", {"symbols": ["BTC-EUR"], "source": "synthetic"})
    await eventually(lambda: children_of(cluster, {"demo-btc-eur"}))
    original = cluster.get("StatefulSet", "demo-btc-eur")

    await cluster.delete("StatefulSet", "demo-btc-eur")
    await cluster.delete("ConfigMap", "demo-btc-eur")
    await eventually(lambda: cluster.get("StatefulSet", "demo-btc-eur") and cluster.get("ConfigMap", "demo-btc-eur"))
    assert cluster.get("StatefulSet", "demo-btc-eur")["spec"] == original["spec"]

    await cluster.patch("StatefulSet", "demo-btc-eur", {"spec": {"replicas": 3, "template": {"spec": {
        "containers": [{"name": "worker", "image": "evil:latest"}]}}}})
    await cluster.patch("Service", "demo-btc-eur", {"metadata": {"labels": {"app.kubernetes.io/instance": None}}})
    await eventually(lambda: cluster.get("StatefulSet", "demo-btc-eur")["spec"] == original["spec"])
    await eventually(lambda: cluster.get("Service", "demo-btc-eur")["metadata"]["labels"]
                     .get("app.kubernetes.io/instance") == "demo")


async def test_restart_duplicates_nothing(cluster: Cluster, start_operator: OperatorFactory) -> None:
    import kmock

    runner = await start_operator()
    await cluster.apply("demo", {"symbols": ["BTC-EUR", "ETH-EUR"], "source": "synthetic"})
    await eventually(lambda: children_of(cluster, {"demo-btc-eur", "demo-eth-eur"}))
    await eventually(lambda: (cluster.get("PaperTrader", "demo").get("status") or {}).get("observedGeneration"))
    await stop_operator(runner)
    creates = {kind: cluster.count(kmock.action.CREATE, kind) for kind in KINDS}
    assert creates == {"StatefulSet": 2, "Service": 2, "ConfigMap": 2}
    before = {kind: cluster.get(kind, "demo-btc-eur") for kind in KINDS}

    await start_operator()
    await eventually(lambda: cluster.count(kmock.action.UPDATE, "PaperTrader") > 0 and
                     any(r for r in cluster.events("Reconciled")) is not None, timeout=5)
    await asyncio.sleep(2)  # several resync passes
    assert {kind: cluster.count(kmock.action.CREATE, kind) for kind in KINDS} == creates
    assert {kind: cluster.get(kind, "demo-btc-eur") for kind in KINDS} == before
    assert cluster.names("StatefulSet") == {"demo-btc-eur", "demo-eth-eur"}


async def test_portfolio_drawdown_halts_entries(cluster: Cluster, workers: FakeWorkers,
                                                start_operator: OperatorFactory) -> None:
    workers.report("demo-btc-eur")
    workers.report("demo-eth-eur")
    await start_operator()
    await cluster.apply("demo", {"symbols": ["BTC-EUR", "ETH-EUR"], "source": "synthetic",
                                 "risk": {"maxDrawdownPct": 0.1}})
    trader = await eventually(lambda: (t := cluster.get("PaperTrader", "demo"))
                              and (t.get("status") or {}).get("portfolio") and t)
    assert condition(trader, "RiskHalted")["status"] == "False"
    assert trader["status"]["portfolio"]["equity"] == "20000.00"
    halted_since = condition(trader, "RiskHalted")["lastTransitionTime"]

    workers.report("demo-btc-eur", equity="7000.00", drawdown_pct=30.0)  # portfolio: 3000 / 20000 = 15 %
    trader = await eventually(lambda: (t := cluster.get("PaperTrader", "demo"))
                              and condition(t, "RiskHalted")["status"] == "True" and t)
    halt = condition(trader, "RiskHalted")
    assert halt["reason"] == "PortfolioDrawdownBreached" and "15.00%" in halt["message"]
    assert trader["status"]["risk"]["halted"] is True
    assert trader["status"]["portfolio"]["drawdownPct"] == 15.0
    await eventually(lambda: {name for name, action, _ in workers.controls if action == "halt"}
                     == {"demo-btc-eur", "demo-eth-eur"})
    await eventually(lambda: any("15.00%" in e["message"] for e in cluster.events("RiskHalted")))
    assert halt["lastTransitionTime"] >= halted_since

    # Latched: recovering equity alone does not lift the halt; a spec change below the limit does.
    workers.report("demo-btc-eur", equity="10000.00")
    await asyncio.sleep(1.5)
    assert condition(cluster.get("PaperTrader", "demo"), "RiskHalted")["status"] == "True"
    await cluster.patch("PaperTrader", "demo", {"spec": {"risk": {"maxDrawdownPct": 0.2}}})
    await eventually(lambda: condition(cluster.get("PaperTrader", "demo"), "RiskHalted")["status"] == "False")
    await eventually(lambda: any(action == "resume" for _, action, _ in workers.controls))
    # every halt and resume presented the trader's control credential, read from its Secret
    token = base64.b64decode(cluster.get("Secret", "demo-control")["data"]["token"]).decode()
    assert workers.authorizations and set(workers.authorizations) == {f"Bearer {token}"}


async def test_paused_scales_to_zero_keeping_state(cluster: Cluster, start_operator: OperatorFactory) -> None:
    await start_operator()
    await cluster.apply("demo", {"symbols": ["BTC-EUR"], "source": "synthetic"})
    await eventually(lambda: children_of(cluster, {"demo-btc-eur"}))
    claim_before = cluster.get("StatefulSet", "demo-btc-eur")["spec"]["volumeClaimTemplates"]

    await cluster.patch("PaperTrader", "demo", {"spec": {"paused": True}})
    await eventually(lambda: cluster.get("StatefulSet", "demo-btc-eur")["spec"]["replicas"] == 0)
    sts = cluster.get("StatefulSet", "demo-btc-eur")["spec"]
    assert sts["volumeClaimTemplates"] == claim_before
    assert sts["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    trader = await eventually(lambda: (t := cluster.get("PaperTrader", "demo"))
                              and condition(t, "Ready")["reason"] == "Paused" and t)
    assert trader["status"]["workers"] == "0/0"


async def test_ready_worker_status_and_restarts(cluster: Cluster, workers: FakeWorkers,
                                                start_operator: OperatorFactory) -> None:
    workers.report("demo-btc-eur", level="critical", ready=False)
    await start_operator("--resync-interval", "60")  # readiness must arrive through the StatefulSet watch
    await cluster.apply("demo", {"symbols": ["BTC-EUR"], "source": "synthetic"})
    await eventually(lambda: children_of(cluster, {"demo-btc-eur"}))
    await cluster.mock.post("/api/v1/namespaces/default/pods", json={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo-btc-eur-0", "namespace": "default",
                                                        "labels": {**LABELS, "papertrader.io/symbol": "btc-eur"}},
        "status": {"containerStatuses": [{"name": "worker", "restartCount": 3}]}})
    await cluster.patch("StatefulSet", "demo-btc-eur", {"status": {"replicas": 1, "readyReplicas": 1}},
                        subresource="status")
    trader = await eventually(lambda: (t := cluster.get("PaperTrader", "demo"))
                              and t["status"]["symbols"][0].get("restarts") == 3
                              and t["status"]["symbols"][0]["ready"] and t)
    entry = trader["status"]["symbols"][0]
    assert entry["ready"] is True and entry["healthLevel"] == "critical"
    assert condition(trader, "Ready")["status"] == "True"
    degraded = condition(trader, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "WorkersUnhealthy"
    ready_since = condition(trader, "Ready")["lastTransitionTime"]
    await asyncio.sleep(1.1)  # timestamps have 1 s resolution: a rewritten transition time would differ
    await cluster.patch("ConfigMap", "demo-btc-eur", {"data": {"config.yaml": "SYMBOL: XRP-EUR"}})  # drift: a pass
    await eventually(lambda: "XRP" not in cluster.get("ConfigMap", "demo-btc-eur")["data"]["config.yaml"])
    await asyncio.sleep(0.3)
    assert condition(cluster.get("PaperTrader", "demo"), "Ready")["lastTransitionTime"] == ready_since

    # A restart reaches the status through the pod watch; no pod is ever read with GET.
    await cluster.patch("Pod", "demo-btc-eur-0", {"status": {"containerStatuses": [
        {"name": "worker", "restartCount": 4}]}})
    await eventually(lambda: cluster.get("PaperTrader", "demo")["status"]["symbols"][0]["restarts"] == 4)
    assert cluster.mock.counts[("get", "pods")] == 0 and cluster.mock.counts[("watch", "pods")] >= 1


async def test_invalid_spec_is_rejected_with_event(cluster: Cluster, start_operator: OperatorFactory) -> None:
    await start_operator()
    await cluster.apply("bad", {"symbols": ["btc-eur"], "source": "synthetic"})
    trader = await eventually(lambda: (t := cluster.get("PaperTrader", "bad")) and t.get("status") and t)
    degraded = condition(trader, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
    assert "spec.symbols[0]" in degraded["message"]
    await eventually(lambda: any("spec.symbols[0]" in e["message"] for e in cluster.events("InvalidSpec")))
    assert not cluster.names("StatefulSet")


async def test_deleting_the_trader_leaves_nothing_behind(cluster: Cluster, start_operator: OperatorFactory) -> None:
    await start_operator()
    await cluster.apply("demo", {"symbols": ["BTC-EUR", "ETH-EUR"], "source": "synthetic"})
    await eventually(lambda: children_of(cluster, {"demo-btc-eur", "demo-eth-eur"}))
    await eventually(lambda: (cluster.get("PaperTrader", "demo").get("status") or {}).get("observedGeneration"))
    assert not cluster.get("PaperTrader", "demo")["metadata"].get("finalizers")

    await cluster.delete("PaperTrader", "demo")
    assert cluster.get("PaperTrader", "demo") is None  # no finalizer holds it
    for kind in KINDS:
        await eventually(lambda kind=kind: not cluster.names(kind))


async def test_many_traders_converge(cluster: Cluster, start_operator: OperatorFactory) -> None:
    await start_operator()
    symbols = ["BTC-EUR", "ETH-EUR", "SOL-EUR"]
    for index in range(5):
        await cluster.apply(f"t{index}", {"symbols": symbols, "source": "synthetic"})
    expected = {f"t{i}-{sym.lower()}" for i in range(5) for sym in symbols}
    await eventually(lambda: children_of(cluster, expected), timeout=20)
    await eventually(lambda: all((cluster.get("PaperTrader", f"t{i}").get("status") or {}).get("symbols")
                                 for i in range(5)))
    assert all(cluster.names(kind) == expected for kind in KINDS)


async def test_cli_process_reconciles_and_stops_cleanly(cluster: Cluster) -> None:
    """`python -m papertrader_operator` (what `papertrader operator` runs) as a real process."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "papertrader_operator", "-A", "--http-port", "0",
                             "--worker-url-template", "http://127.0.0.1:9/{name}", "--log-format", "json"],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        await cluster.apply("cli", {"symbols": ["BTC-EUR"], "source": "synthetic"})
        await eventually(lambda: cluster.get("StatefulSet", "cli-btc-eur"))
        await eventually(lambda: (cluster.get("PaperTrader", "cli").get("status") or {}).get("observedGeneration"))
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 0, output[-2000:]
    assert '"message": "papertrader operator started' in output  # structured (JSON) logs


async def test_an_existing_control_secret_is_kept_and_a_broken_one_reported(cluster: Cluster, workers: FakeWorkers,
                                                                            start_operator: OperatorFactory) -> None:
    """The credential outlives operator restarts (it is read back, never replaced); a Secret without a usable
    token stops the reconcile with a clear status message and Event instead of opening control."""
    for name, token in (("kept", base64.b64encode(b"preset-token").decode()), ("broken", None)):
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-control", "namespace": "default"},
                "data": {"token": token} if token else {"other": "eA=="}}
        await cluster.mock.post("/api/v1/namespaces/default/secrets", json=body)
    workers.report("kept-btc-eur", equity="8000.00", drawdown_pct=20.0)
    await start_operator()
    await cluster.apply("kept", {"symbols": ["BTC-EUR"], "source": "synthetic", "risk": {"maxDrawdownPct": 0.1}})
    await cluster.apply("broken", {"symbols": ["BTC-EUR"], "source": "synthetic"})
    await eventually(lambda: any(name == "kept-btc-eur" and action == "halt" for name, action, _ in workers.controls))
    assert set(workers.authorizations) == {"Bearer preset-token"}
    assert base64.b64decode(cluster.get("Secret", "kept-control")["data"]["token"]) == b"preset-token"
    event = await eventually(lambda: next((e for e in cluster.events("ReconcileFailed")
                                           if e["involvedObject"]["name"] == "broken"), None))
    assert "Secret default/broken-control has no usable key 'token'" in event["message"]
    assert cluster.get("StatefulSet", "broken-btc-eur") is None  # no worker started with an unusable credential
