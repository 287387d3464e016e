"""helm lint / helm template of charts/papertrader with the default and the all-features values, every rendered
object validated (kubernetes-validate for built-in kinds, structural schemas for Prometheus Operator kinds, the
CRD's own schema for the example PaperTrader), and the chart's promises about the operator, RBAC and values."""
from __future__ import annotations

import re

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_helpers import ALL_FEATURES, CHART, NAMESPACE, by_kind, helm_template, operator_object, render, run, tool
from monitoring_schemas import SCHEMAS

K8S_VERSION = "1.34.0"
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


# --- helm lint ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [None, ALL_FEATURES], ids=["default", "all-features"])
def test_helm_lint_strict(values):
    args = [tool("helm"), "lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if values:
        args += ["-f", str(values)]
    proc = run(args)
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


# --- what renders ---------------------------------------------------------------------------------------------------

def test_default_render_has_operator_and_no_optional_objects(default_docs):
    kinds = sorted(d["kind"] for d in default_docs)
    assert kinds == sorted(["CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                            "Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy",
                            "Deployment", "Service"]), kinds  # the second Deployment/Service: the market gateway


def test_all_features_render_has_every_optional_object(all_docs):
    kinds = {d["kind"] for d in all_docs}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "PaperTrader", "Role", "RoleBinding",
            "ConfigMap"} <= kinds
    assert len(by_kind(all_docs, "ConfigMap")) == 3  # three dashboards


def test_names_are_unique_per_kind_and_namespace(rendered):
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in rendered]
    assert len(keys) == len(set(keys)), keys


# --- validation -----------------------------------------------------------------------------------------------------

def test_builtin_kinds_validate_with_kubernetes_validate(rendered):
    checked = 0
    for doc in rendered:
        if doc["kind"] in MONITORING_KINDS or doc["apiVersion"].startswith("papertrader.io/"):
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 6


def test_kubernetes_validate_catches_a_bad_object(default_docs):
    deployment = yaml.safe_load(yaml.safe_dump(by_kind(default_docs, "Deployment")[0]))
    deployment["spec"]["replicas"] = "one"
    deployment["spec"]["strategy"]["typo"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_monitoring_objects_validate_structurally(all_docs):
    found = set()
    for doc in all_docs:
        if doc["kind"] in MONITORING_KINDS:
            jsonschema.validate(doc, SCHEMAS[doc["kind"]])
            found.add(doc["kind"])
    assert found == MONITORING_KINDS


def test_structural_schema_catches_a_typo(all_docs):
    monitor = yaml.safe_load(yaml.safe_dump(by_kind(all_docs, "PodMonitor")[0]))
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SCHEMAS["PodMonitor"])


def test_example_papertrader_matches_the_crd_schema(all_docs):
    crd = by_kind(all_docs, "CustomResourceDefinition")[0]
    version = next(v for v in crd["spec"]["versions"] if v["served"] and v["storage"])
    example = by_kind(all_docs, "PaperTrader")[0]
    assert example["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
    assert example["kind"] == crd["spec"]["names"]["kind"]
    # OpenAPI v3 schemas of CRDs are draft-4 flavoured (boolean exclusiveMinimum); x-kubernetes-* are ignored.
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    jsonschema.Draft4Validator(schema).validate(example["spec"])


# --- the operator Deployment ----------------------------------------------------------------------------------------

def test_operator_deployment(rendered):
    dep = operator_object(rendered, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "operator"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # Restricted Pod Security Standard.
    psc, csc = pod["securityContext"], container["securityContext"]
    assert psc["runAsNonRoot"] is True and isinstance(psc["runAsUser"], int) and psc["runAsUser"] > 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PAPERTRADER_WORKER_IMAGE"]
    assert pod["serviceAccountName"] == by_kind(rendered, "ServiceAccount")[0]["metadata"]["name"]


def _operator_config(docs):
    """Parse the rendered operator command line and environment with the operator's own argument parser."""
    from papertrader_operator import main
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        args = main.build_parser().parse_args(container["args"][1:])  # argparse exits on an unknown flag
        return args, main.config_from_args(args), main.kopf_options(args)


def test_operator_accepts_the_rendered_command_line(rendered):
    args, config, kopf_options = _operator_config(rendered)
    assert config.http_port == 8080
    assert config.worker_image == {e["name"]: e.get("value") for e in by_kind(rendered, "Deployment")[0]["spec"][
        "template"]["spec"]["containers"][0]["env"]}["PAPERTRADER_WORKER_IMAGE"]
    assert kopf_options.standalone


def test_operator_settings_reach_the_operator(all_docs):
    args, config, _ = _operator_config(all_docs)
    assert args.namespace == ["papertrader", "trading-lab"] and args.verbose and args.log_format == "plain"
    assert (config.resync_interval, config.health_timeout, config.max_concurrent_reconciles) == (15, 1.5, 10)


def test_watch_namespaces_become_flags_and_roles(default_docs, all_docs):
    dep = operator_object(default_docs, "Deployment")
    assert "--all-namespaces" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    dep = operator_object(all_docs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" not in args
    assert {"--namespace=papertrader", "--namespace=trading-lab"} <= set(args)
    assert sorted(r["metadata"]["namespace"] for r in by_kind(all_docs, "Role")) == ["papertrader", "trading-lab"]


def test_image_tag_and_digest(default_docs, all_docs):
    def image(docs):
        return by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert image(default_docs) == f"ghcr.io/papertrader/papertrader:{chart['appVersion']}"
    assert image(all_docs) == "registry.example.com/papertrader/papertrader:0.1.0"
    env = {e["name"]: e.get("value")
           for e in by_kind(all_docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PAPERTRADER_WORKER_IMAGE"].startswith("registry.example.com/papertrader/papertrader-worker@sha256:")


# --- RBAC -----------------------------------------------------------------------------------------------------------

# Everything the operator may do, and nothing else (see the comment in templates/rbac.yaml).
ALLOWED = {
    ("papertrader.io", "papertraders"): {"get", "list", "watch", "patch"},
    ("papertrader.io", "papertraders/status"): {"get", "patch"},
    ("apps", "statefulsets"): {"create", "get", "list", "watch", "patch", "update", "delete"},
    ("", "services"): {"create", "get", "list", "watch", "patch", "update", "delete"},
    ("", "configmaps"): {"create", "get", "list", "watch", "patch", "update", "delete"},
    ("", "secrets"): {"get", "create"},  # the per-trader control credential only: no list, watch or update
    ("", "events"): {"create", "patch"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "namespaces"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
}


def _grants(docs):
    grants: dict[tuple[str, str], set[str]] = {}
    for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def test_rbac_is_least_privilege(rendered):
    for role in by_kind(rendered, "ClusterRole") + by_kind(rendered, "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"wildcard in {role['metadata']['name']}: {rule}"
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
    grants = _grants(rendered)
    for key, verbs in grants.items():
        assert key in ALLOWED, f"unexpected grant on {key}"
        assert verbs <= ALLOWED[key], f"{key}: {verbs - ALLOWED[key]} not needed"
    assert not grants.get(("", "secrets"), set()) & {"list", "watch", "update", "patch", "delete"}


def test_rbac_covers_what_the_operator_needs(default_docs):
    assert _grants(default_docs) == ALLOWED


def test_namespaced_mode_keeps_cluster_role_minimal(all_docs):
    (cluster_role,) = by_kind(all_docs, "ClusterRole")
    assert [r["resources"] for r in cluster_role["rules"]] == [["customresourcedefinitions"]]
    for role in by_kind(all_docs, "Role"):
        assert {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]} == {
            k for k in ALLOWED if k[1] not in ("namespaces", "customresourcedefinitions")}
    subjects = [s for b in by_kind(all_docs, "RoleBinding") + by_kind(all_docs, "ClusterRoleBinding")
                for s in b["subjects"]]
    assert {(s["kind"], s["name"], s["namespace"]) for s in subjects} == {
        ("ServiceAccount", "papertrader-operator", NAMESPACE)}


def test_rbac_template_explains_every_rule():
    text = (CHART / "templates" / "rbac.yaml").read_text()
    rules = re.findall(r"^(\s*)- apiGroups:", text, re.M)
    comments = re.findall(r"^\s*#[^\n]*\n(?:\s*#[^\n]*\n)*\s*- apiGroups:", text, re.M)
    assert len(rules) == len(comments) >= 8


# --- monitoring objects ---------------------------------------------------------------------------------------------

def test_monitoring_objects_carry_the_prometheus_selector_label(all_docs):
    for doc in all_docs:
        if doc["kind"] in MONITORING_KINDS:
            assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
            assert doc["metadata"]["namespace"] == "monitoring"


def test_selector_label_is_configurable():
    docs = render("--set", "monitoring.podMonitor.enabled=true", "--set", "monitoring.selectorLabels.release=prom",
                  "--set", "monitoring.selectorLabels.team=trading")
    (pm,) = by_kind(docs, "PodMonitor")
    assert pm["metadata"]["labels"]["release"] == "prom" and pm["metadata"]["labels"]["team"] == "trading"
    assert pm["spec"]["namespaceSelector"] == {"any": True}


def test_pod_monitor_targets_worker_pods_and_adds_trader_label(all_docs):
    (pm,) = by_kind(all_docs, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "papertrader-worker"
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    assert relabel["trader"]["sourceLabels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"]
    assert relabel["worker_symbol"]["sourceLabels"] == ["__meta_kubernetes_pod_label_papertrader_io_symbol"]
    assert relabel["job"]["replacement"] == "papertrader-worker"


def test_service_monitors_select_the_operator_and_the_gateway_service(all_docs):
    monitors = {sm["spec"]["endpoints"][0]["relabelings"][0]["replacement"]: sm
                for sm in by_kind(all_docs, "ServiceMonitor")}
    assert set(monitors) == {"papertrader-operator", "papertrader-market-gateway"}
    gateway_service = next(d for d in by_kind(all_docs, "Service") if d["metadata"]["name"].endswith("market-gateway"))
    for job, svc in (("papertrader-operator", operator_object(all_docs, "Service")),
                     ("papertrader-market-gateway", gateway_service)):
        sm = monitors[job]
        assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(), job
        assert sm["spec"]["namespaceSelector"] == {"matchNames": [svc["metadata"]["namespace"]]}
        assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    no_gateway = render("--set", "monitoring.serviceMonitor.enabled=true", "--set", "marketGateway.enabled=false")
    assert len(by_kind([d for d in no_gateway if d], "ServiceMonitor")) == 1


def test_each_monitoring_feature_switches_independently():
    for key, kind in [("serviceMonitor", "ServiceMonitor"), ("podMonitor", "PodMonitor"),
                      ("prometheusRule", "PrometheusRule"), ("grafanaDashboards", "ConfigMap")]:
        kinds = [d["kind"] for d in render("--set", f"monitoring.{key}.enabled=true")]
        assert kind in kinds
        assert not (MONITORING_KINDS - {kind}) & set(kinds)


# --- values and schema ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, named", [
    ("bogus=1", "bogus"),
    ("operator.bogus=1", "bogus"),
    ("monitoring.podMonitor.enabeld=true", "enabeld"),
    ("operator.httpPort=abc", "httpPort"),
    ("monitoring.prometheusRule.thresholds.drawdownPct=high", "drawdownPct"),
    ("monitoring.serviceMonitor.interval=30 seconds", "interval"),
    ("image.pullPolicy=Sometimes", "pullPolicy"),
    ("operator.logFormat=loud", "logFormat"),
    ("operator.resyncIntervalSeconds=often", "resyncIntervalSeconds"),
    ("example.spec.symbols[0]=btc", "symbols"),
    ("monitoring.prometheusRule.disabled[0]=NoSuchAlert", "disabled"),
])
def test_schema_rejects_unknown_and_mistyped_values(setting, named):
    proc = helm_template("--set", setting, check=False)
    assert proc.returncode != 0, f"--set {setting} was accepted"
    assert named in proc.stderr, proc.stderr


def test_every_value_is_commented():
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9_]*):", line)
        if not m:
            continue
        j = i - 1
        while j >= 0 and lines[j].strip() and not lines[j].lstrip().startswith("#") \
                and len(lines[j]) - len(lines[j].lstrip()) > len(m.group(1)):
            j -= 1
        prev = lines[j].strip() if j >= 0 else ""
        if not prev.startswith("#") and "#" not in line.split(":", 1)[1]:
            missing.append(m.group(2))
    # Keys that are themselves groups may go without a comment if every leaf under them has one.
    groups = {"image", "serviceAccount", "rbac", "operator", "livenessProbe", "readinessProbe", "service",
              "monitoring", "serviceMonitor", "podMonitor", "prometheusRule", "thresholds", "grafanaDashboards",
              "requests", "limits", "seccompProfile", "capabilities", "cpu", "memory", "type", "runAsNonRoot",
              "runAsUser", "runAsGroup", "fsGroup", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "drop",
              "symbols", "source", "release", "grafana_dashboard", "grafana_folder"}
    assert not [k for k in missing if k not in groups], missing


def test_notes_tell_the_user_what_to_do_next():
    proc = run([tool("helm"), "install", "--dry-run=client", "papertrader", str(CHART), "-n", NAMESPACE])
    notes = proc.stdout.split("NOTES:", 1)[1]
    for phrase in ("kubectl -n papertrader rollout status deployment/papertrader-operator", "get pt",
                   "examples/btc-eth.yaml", "create secret generic", "kubectl apply --server-side -f"):
        assert phrase in notes, phrase


def test_worker_pod_disruption_budget_per_namespace():
    from tests.chart.chart_helpers import render

    pdbs = [d for d in render("--set", "operator.watchNamespaces={trading,research}")
            if d and d.get("kind") == "PodDisruptionBudget"]
    assert sorted(p["metadata"]["namespace"] for p in pdbs) == ["research", "trading"]
    for pdb in pdbs:
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "papertrader-worker",
                                                          "app.kubernetes.io/managed-by": "papertrader-operator"}
    assert not [d for d in render("--set", "podDisruptionBudget.enabled=false")
                if d and d.get("kind") == "PodDisruptionBudget"]


def test_market_gateway_runs_locked_down_and_the_operator_points_workers_at_it():
    from tests.chart.chart_helpers import render

    docs = [d for d in render() if d]
    gateway = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "papertrader-market-gateway")
    pod = gateway["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["market-gateway"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GATEWAY_REST_BUDGET"] == "600" and env["BITVAVO_WS_URL"] == "wss://ws.bitvavo.com/v2/"
    service = next(d for d in by_kind(docs, "Service") if d["metadata"]["name"] == "papertrader-market-gateway")
    assert service["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    operator = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "papertrader-operator")
    operator_env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert operator_env["PAPERTRADER_MARKET_GATEWAY_URL"] == "http://papertrader-market-gateway.papertrader.svc:8080"

    off = [d for d in render("--set", "marketGateway.enabled=false") if d]
    assert [d["metadata"]["name"] for d in by_kind(off, "Deployment")] == ["papertrader-operator"]
    off_env = by_kind(off, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "PAPERTRADER_MARKET_GATEWAY_URL" not in {e["name"] for e in off_env}


def test_notifier_is_one_locked_down_replica_with_least_rbac_and_the_operator_points_workers_at_it():
    secret = ("--set", "notifier.enabled=true", "--set", "notifier.telegram.existingSecret=tg")
    docs = [d for d in render(*secret) if d]
    name = "papertrader-notifier"
    ours = [d for d in docs if d["metadata"]["name"] == name]
    assert sorted(d["kind"] for d in ours) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
                                               "ServiceAccount"]
    for doc in ours:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    notifier = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == name)
    assert notifier["spec"]["replicas"] == 1 and notifier["spec"]["strategy"] == {"type": "Recreate"}
    pod = notifier["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["notifier"] and pod["serviceAccountName"] == name
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    # the token is a mounted file, never an environment value; the chat id comes from the same Secret
    assert "TELEGRAM_BOT_TOKEN" not in env and env["TELEGRAM_BOT_TOKEN_FILE"]["value"].endswith("/token")
    assert env["TELEGRAM_CHAT_ID"]["valueFrom"]["secretKeyRef"] == {"name": "tg", "key": "chatId"}
    assert env["ERROR_NOTIFICATIONS_PER_HOUR"]["value"] == "30"
    assert {"name": "telegram", "secret": {"secretName": "tg", "items": [{"key": "token", "path": "token"}]}} \
        in pod["volumes"]
    service = next(d for d in by_kind(docs, "Service") if d["metadata"]["name"] == name)
    assert service["spec"]["selector"] == notifier["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 8767
    # the NetworkPolicy lets exactly these pods reach the workers' 8766
    assert notifier["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "papertrader-notifier"
    (role,) = [d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"] == name]
    assert role["rules"] == [{"apiGroups": ["papertrader.io"], "resources": ["papertraders"],
                              "verbs": ["get", "list", "patch"]}]
    (binding,) = [d for d in by_kind(docs, "ClusterRoleBinding") if d["metadata"]["name"] == name]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "papertrader"}]
    operator = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "papertrader-operator")
    operator_env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert operator_env["PAPERTRADER_NOTIFIER_URL"] == "http://papertrader-notifier.papertrader.svc:8767"

    # watched namespaces: a Role per namespace instead of the ClusterRole
    scoped = [d for d in render(*secret, "--set", "operator.watchNamespaces={a,b}") if d]
    assert sorted(d["metadata"]["namespace"] for d in by_kind(scoped, "Role") if d["metadata"]["name"] == name) \
        == ["a", "b"]
    assert not [d for d in by_kind(scoped, "ClusterRole") if d["metadata"]["name"] == name]

    off = [d for d in render() if d]
    assert name not in {d["metadata"]["name"] for d in off}
    off_env = operator_object(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "PAPERTRADER_NOTIFIER_URL" not in {e["name"] for e in off_env}
    monitored = [d for d in render(*secret, "--set", "monitoring.serviceMonitor.enabled=true") if d]
    (monitor,) = [d for d in by_kind(monitored, "ServiceMonitor") if d["metadata"]["name"] == name]
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["relabelings"][0]["replacement"] == "papertrader-notifier"
    missing = helm_template("--set", "notifier.enabled=true", check=False)
    assert missing.returncode != 0 and "existingSecret" in missing.stderr
