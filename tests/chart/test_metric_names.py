"""Every metric name an alert or a dashboard panel queries must be one that a process of the product exports.

The names come from the exporters themselves: `exported_metric_names()` of `papertrader.observability.metrics`
(worker), `papertrader.market.gateway.metrics` (market gateway), `papertrader.notify.fleet.server` (fleet notifier)
and `papertrader_operator.metrics` (operator), plus `up`, which Prometheus writes for every scrape target. Names in
queries are found with the small scanner in chart_promql.py."""
from __future__ import annotations

import importlib
import json

import pytest
from chart_helpers import CHART, by_kind, render
from chart_promql import base_names, grafana_query_metric_names, label_names, metric_names

# Series Prometheus itself adds for every target (https://prometheus.io/docs/concepts/jobs_instances/).
PROMETHEUS_SYNTHETIC = {"up"}


def _exported(module_name: str) -> set[str]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.fail(f"{module_name} cannot be imported ({exc}); the chart's alerts and dashboards are checked "
                    f"against its exported_metric_names()", pytrace=False)
    return set(module.exported_metric_names())


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return (_exported("papertrader.observability.metrics") | _exported("papertrader.market.gateway.metrics")
            | _exported("papertrader_operator.metrics") | _exported("papertrader.notify.fleet.server")
            | PROMETHEUS_SYNTHETIC)


def unknown_names(queried: set[str], exported: set[str]) -> set[str]:
    return {name for name in queried if not base_names(name) & exported}


def dashboard_queries() -> dict[str, list[str]]:
    """{"<file>: <panel title>": [expr, ...]} plus the variable queries, for every dashboard."""
    out: dict[str, list[str]] = {}
    for path in sorted((CHART / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            exprs = [t["expr"] for t in panel.get("targets", [])]
            if exprs:
                out[f"{path.name}: {panel['title']}"] = exprs
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                out[f"{path.name}: variable {var['name']}"] = [q]
    return out


def alert_queries() -> dict[str, str]:
    (rule,) = by_kind(render("--set", "monitoring.prometheusRule.enabled=true"), "PrometheusRule")
    return {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}


def test_every_dashboard_panel_queries_exported_metrics(exported):
    problems = {}
    for where, exprs in dashboard_queries().items():
        queried = set().union(*(grafana_query_metric_names(e) if "variable" in where else metric_names(e)
                                for e in exprs))
        assert queried, f"{where}: no metric name found in {exprs}"
        missing = unknown_names(queried, exported)
        if missing:
            problems[where] = sorted(missing)
    assert not problems, "dashboard queries use metrics nobody exports:\n" + json.dumps(problems, indent=1)


def test_every_alert_queries_exported_metrics(exported):
    problems = {}
    for alert, expr in alert_queries().items():
        queried = metric_names(expr)
        assert queried, f"{alert}: no metric name found in {expr}"
        missing = unknown_names(queried, exported)
        if missing:
            problems[alert] = sorted(missing)
    assert not problems, "alerts use metrics nobody exports:\n" + json.dumps(problems, indent=1)


def test_the_check_catches_a_bogus_name():
    exported = _exported("papertrader_operator.metrics") | {"papertrader_equity"}
    expr = ('sum by (trader) (rate(papertrader_bogus_candles_total{trader=~"$trader"}[$__rate_interval]))'
            ' / papertrader_equity')
    assert unknown_names(metric_names(expr), exported) == {"papertrader_bogus_candles_total"}
    assert unknown_names({"papertrader_tick_duration_seconds_bucket"}, {"papertrader_tick_duration_seconds"}) == set()
    assert unknown_names({"papertrader_equity_bucket"}, {"papertrader_trades_total"}) == {"papertrader_equity_bucket"}


@pytest.mark.parametrize("expr, names", [
    ('histogram_quantile(0.95, sum by (le) (rate(a_bucket{x=~"$y"}[$__rate_interval])))', {"a_bucket"}),
    ("time() - b > 600", {"b"}),
    ('sum by (namespace, kind) (increase(c_total[10m])) >= 1', {"c_total"}),
    ("count(count by (namespace, trader) (d{a=\"b\"}))", {"d"}),
    ("sum(e) or vector(0)", {"e"}),
    ("f / on(pod) group_left(symbol) g offset 5m", {"f", "g"}),
    ('max by (breaker) (h{worker_symbol=~"(?i)$symbol"}) * 1e3 > bool 0.5', {"h"}),
    ("sum without (le) (rate(i_sum[5m])) / sum(rate(i_count[5m]))", {"i_sum", "i_count"}),
    ('up{job="x"} == 0 unless on (pod) j', {"up", "j"}),
    ("rate(k[5m:30s])", {"k"}),
    ("sum by (a) (l) * on (a) group_right (b) m", {"l", "m"}),
])
def test_promql_scanner(expr, names):
    assert metric_names(expr) == names


def test_promql_scanner_rejects_garbage():
    with pytest.raises(ValueError):
        metric_names("sum(rate(a[5m])")
    with pytest.raises(ValueError):
        metric_names("a{b=\"c\"")


def test_grafana_variable_queries():
    assert grafana_query_metric_names('label_values(papertrader_equity{namespace=~"$namespace"}, trader)') == {
        "papertrader_equity"}
    assert grafana_query_metric_names("label_values(namespace)") == set()
    assert grafana_query_metric_names("query_result(topk(5, papertrader_equity))") == {"papertrader_equity"}


# Labels every scraped series carries: the Prometheus Operator's target labels plus the PodMonitor's relabelings.
TARGET_LABELS = {"job", "namespace", "pod", "container", "endpoint", "instance", "service", "trader", "worker_symbol"}


@pytest.fixture(scope="module")
def metric_labels() -> dict[str, set[str]]:
    """Metric family name -> its own label names, from the worker's, the gateway's and the notifier's METRICS
    tables and the
    operator's metrics."""
    from prometheus_client.metrics import MetricWrapperBase

    worker = importlib.import_module("papertrader.observability.metrics")
    operator = importlib.import_module("papertrader_operator.metrics")
    gateway = importlib.import_module("papertrader.market.gateway.metrics")
    labels = {name: set(spec[2]) for table in (worker.METRICS, gateway.METRICS) for name, spec in table.items()}
    notifier = importlib.import_module("papertrader.notify.fleet.server")
    for name, (kind, _, names) in notifier.METRICS.items():
        labels[f"{name}_total" if kind == "counter" else name] = set(names)
    for obj in vars(operator.OperatorMetrics()).values():  # the collectors of one running operator
        if isinstance(obj, MetricWrapperBase):
            names = {obj._name, obj._name + "_total"} if obj._type == "counter" else {obj._name}
            for name in names:
                labels[name] = set(obj._labelnames)
    return labels


def unknown_labels(expr: str, metric_labels: dict[str, set[str]]) -> set[str]:
    allowed = set(TARGET_LABELS)
    for name in metric_names(expr):
        for base in base_names(name):
            allowed |= metric_labels.get(base, set())
        if name.endswith("_bucket"):
            allowed.add("le")
    return label_names(expr) - allowed


def test_queries_use_labels_the_metrics_have(metric_labels):
    problems = {}
    exprs = {f"alert {a}": [e] for a, e in alert_queries().items()}
    exprs.update({w: e for w, e in dashboard_queries().items() if "variable" not in w})
    for where, items in exprs.items():
        bad = set().union(*(unknown_labels(e, metric_labels) for e in items))
        if bad:
            problems[where] = sorted(bad)
    assert not problems, "queries use labels their metrics do not have:\n" + json.dumps(problems, indent=1)


def test_the_label_check_catches_a_wrong_label(metric_labels):
    assert unknown_labels("sum by (kind) (papertrader_notifications_dropped_total)", metric_labels) == {"kind"}
    assert unknown_labels('sum by (le) (rate(papertrader_tick_duration_seconds_bucket{trader="x"}[5m]))',
                          metric_labels) == set()
