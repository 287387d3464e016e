"""The chart's PrometheusRule: `promtool check rules` on the rendered rules and `promtool test rules` with
rules_test.yaml, which fires every alert from synthetic series (and keeps it silent for healthy ones)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from chart_helpers import ALL_FEATURES, CHART, by_kind, render, run, tool

HERE = Path(__file__).resolve().parent
UNIT_TESTS = HERE / "rules_test.yaml"


def rule_spec(*extra: str) -> dict:
    (rule,) = by_kind(render("--set", "monitoring.prometheusRule.enabled=true", *extra), "PrometheusRule")
    return rule["spec"]


def alerts(spec: dict) -> list[dict]:
    return [r for g in spec["groups"] for r in g["rules"] if "alert" in r]


def write_rules(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def default_rules() -> dict:
    return rule_spec()


def test_promtool_check_rules(tmp_path, default_rules):
    proc = run([tool("promtool"), "check", "rules", str(write_rules(tmp_path, default_rules))])
    assert f"SUCCESS: {len(alerts(default_rules))} rules found" in proc.stdout


def test_promtool_check_rules_all_features(tmp_path):
    (rule,) = by_kind(render("-f", str(ALL_FEATURES)), "PrometheusRule")
    run([tool("promtool"), "check", "rules", str(write_rules(tmp_path, rule["spec"]))])
    for alert in alerts(rule["spec"]):
        assert alert["labels"]["team"] == "trading"


def test_promtool_check_rules_catches_a_broken_rule(tmp_path, default_rules):
    broken = json.loads(json.dumps(default_rules))
    broken["groups"][0]["rules"][0]["expr"] = "sum by (x (papertrader_equity"
    proc = run([tool("promtool"), "check", "rules", str(write_rules(tmp_path, broken))], check=False)
    assert proc.returncode != 0


def test_promtool_unit_tests_fire_every_alert(tmp_path, default_rules):
    write_rules(tmp_path, default_rules)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    proc = run([tool("promtool"), "test", "rules", str(tmp_path / UNIT_TESTS.name)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_unit_test(default_rules):
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fired = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t.get("exp_alerts")}
    silent = {t["alertname"] for case in tests for t in case["alert_rule_test"] if not t.get("exp_alerts")}
    names = {a["alert"] for a in alerts(default_rules)}
    assert names == fired, f"alerts without a firing unit test: {names - fired}; unknown: {fired - names}"
    assert len(silent) >= len(names) - 2  # nearly every alert also has a case where it must stay silent


def test_alerts_have_severity_and_runbook(default_rules):
    for alert in alerts(default_rules):
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        ann = alert["annotations"]
        assert ann["summary"] and ann["description"] and ann["runbook"]
        assert ann["runbook_url"].endswith("#" + alert["alert"].lower())


def test_runbook_anchors_exist_in_docs(default_rules):
    doc = (CHART.parents[1] / "docs" / "monitoring.md").read_text()
    for alert in alerts(default_rules):
        assert f"### {alert['alert']}" in doc, f"docs/monitoring.md lacks a runbook section for {alert['alert']}"


def test_schema_lists_exactly_the_alerts(default_rules):
    schema = json.loads((CHART / "values.schema.json").read_text())
    enum = schema["properties"]["monitoring"]["properties"]["prometheusRule"]["properties"]["disabled"]["items"]["enum"]
    assert set(enum) == {a["alert"] for a in alerts(default_rules)}


def test_alerts_can_be_disabled_and_thresholds_set():
    spec = rule_spec("--set", "monitoring.prometheusRule.disabled={PapertraderModelTooOld}",
                     "--set", "monitoring.prometheusRule.thresholds.drawdownPct=25")
    names = {a["alert"] for a in alerts(spec)}
    assert "PapertraderModelTooOld" not in names and "PapertraderDrawdownHigh" in names
    (dd,) = [a for a in alerts(spec) if a["alert"] == "PapertraderDrawdownHigh"]
    assert dd["expr"] == "papertrader_drawdown_pct > 25"
