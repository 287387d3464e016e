"""The worker NetworkPolicy, judged the way a CNI judges it: which peers reach which worker port.

A small evaluator of NetworkPolicy ingress semantics (peers by pod and namespace labels with matchLabels and
matchExpressions, ipBlock CIDRs, ports; no rule means no ingress once a policy selects the pod) applied to the
rendered chart, so the test fails if a template change opens control to the cluster or closes it to the operator."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from chart_helpers import NAMESPACE, by_kind, render

WORKER = {"app.kubernetes.io/name": "papertrader-worker", "app.kubernetes.io/managed-by": "papertrader-operator"}


@dataclass
class Peer:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "10.244.1.7"

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def _selects(selector: dict | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        present, value = expr["key"] in labels, labels.get(expr["key"])
        ok = {"In": present and value in expr.get("values", []), "NotIn": value not in expr.get("values", []),
              "Exists": present, "DoesNotExist": not present}[expr["operator"]]
        if not ok:
            return False
    return True


def _peer_matches(rule_peer: dict, peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        return ipaddress.ip_address(peer.ip) in ipaddress.ip_network(rule_peer["ipBlock"]["cidr"])
    if "namespaceSelector" in rule_peer:
        if not _selects(rule_peer["namespaceSelector"], peer.namespace_labels):
            return False
    elif peer.namespace != policy_namespace:  # a podSelector alone means the policy's own namespace
        return False
    return _selects(rule_peer.get("podSelector"), peer.labels)


def allowed(policies: list[dict], namespace: str, peer: Peer, port: int) -> bool:
    mine = [p for p in policies if p["metadata"]["namespace"] == namespace
            and _selects(p["spec"]["podSelector"], WORKER)]
    if not mine:
        return True
    for policy in mine:
        for rule in policy["spec"].get("ingress") or []:
            if rule.get("ports") and not any(p["port"] == port for p in rule["ports"]):
                continue
            if "from" not in rule or any(_peer_matches(r, peer, namespace) for r in rule["from"]):
                return True
    return False


OPERATOR = Peer(NAMESPACE, {"app.kubernetes.io/name": "papertrader-operator", "app.kubernetes.io/instance": "x"})
NOTIFIER = Peer(NAMESPACE, {"app.kubernetes.io/name": "papertrader-notifier"})
PROMETHEUS = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
NEIGHBOUR = Peer(NAMESPACE, {"app": "something-else"})
ELSEWHERE = Peer("default", {"app.kubernetes.io/name": "papertrader-operator"})  # the right name, wrong namespace
NODE = Peer("", ip="10.0.3.4")


def _policies(*args: str) -> list[dict]:
    return by_kind([d for d in render(*args) if d], "NetworkPolicy")


def test_only_operator_notifier_and_prometheus_reach_the_http_port() -> None:
    policies = _policies()
    assert [p["metadata"]["namespace"] for p in policies] == [NAMESPACE]
    for peer in (OPERATOR, NOTIFIER, PROMETHEUS):
        assert allowed(policies, NAMESPACE, peer, 8766), peer
    for peer in (NEIGHBOUR, ELSEWHERE, NODE):
        assert not allowed(policies, NAMESPACE, peer, 8766), peer
    for peer in (NEIGHBOUR, ELSEWHERE, PROMETHEUS):  # the WebSocket feed is open by default
        assert allowed(policies, NAMESPACE, peer, 8765)
    assert not allowed(policies, NAMESPACE, OPERATOR, 9999)


def test_values_open_probes_narrow_the_feed_and_switch_it_off() -> None:
    policies = _policies("--set", "networkPolicy.probeCIDRs={10.0.0.0/16}", "--set",
                         "networkPolicy.websocket.openToAll=false", "--set", "operator.watchNamespaces={trading}")
    assert [p["metadata"]["namespace"] for p in policies] == ["trading"]
    assert allowed(policies, "trading", NODE, 8766) and not allowed(policies, "trading", NODE, 8765)
    assert allowed(policies, "trading", OPERATOR, 8766)  # the operator lives in the release namespace
    assert not allowed(policies, "trading", Peer("trading", {"app": "dashboard"}), 8765)  # feed: nobody
    assert not _policies("--set", "networkPolicy.enabled=false")
