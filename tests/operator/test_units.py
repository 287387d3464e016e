"""Pure parts of the operator: rendering, drift, portfolio risk, conditions, metrics, CLI flags."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest

from papertrader_operator import metrics
from papertrader_operator.children import child_name, render_children, worker_config
from papertrader_operator.crd import default_spec
from papertrader_operator.drift import contains, drifted_fields, merge_patch_diff, needs_recreate, repair_patch
from papertrader_operator.main import KopfOptions, build_parser, config_from_args, kopf_options
from papertrader_operator.risk import breached, portfolio
from papertrader_operator.status import merge_conditions
from papertrader_operator.validation import name_errors


def trader(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "papertrader.io/v1alpha1", "kind": "PaperTrader",
            "metadata": {"name": "demo", "namespace": "ns", "uid": "u-1"},
            "spec": {"symbols": ["BTC-EUR"], "source": "synthetic", **spec}}


def statefulset(children: list[dict[str, Any]]) -> dict[str, Any]:
    return next(c for c in children if c["kind"] == "StatefulSet")


def test_names_follow_the_contract() -> None:
    assert child_name("demo", "BTC-EUR") == "demo-btc-eur"
    names = [(c["kind"], c["metadata"]["name"]) for c in render_children(trader(symbols=["BTC-EUR", "ETH-EUR"]))]
    assert names == [("ConfigMap", "demo-btc-eur"), ("Service", "demo-btc-eur"), ("StatefulSet", "demo-btc-eur"),
                     ("ConfigMap", "demo-eth-eur"), ("Service", "demo-eth-eur"), ("StatefulSet", "demo-eth-eur")]


def test_replay_model_and_image_reach_the_container() -> None:
    sts = statefulset(render_children(trader(
        source="replay", replayFile="/data/btc.csv", speed="max", image="registry/pt:9",
        strategy={"name": "ml", "model": {"path": "/models/m1", "claimName": "models"}})))
    container = sts["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--replay-file") + 1] == "/data/btc.csv"
    assert args[args.index("--model") + 1] == "/models/m1" and args[args.index("--strategy") + 1] == "ml"
    assert args[args.index("--speed") + 1] == "max"
    assert container["image"] == "registry/pt:9"
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]


def test_default_image_comes_from_the_operator() -> None:
    sts = statefulset(render_children(trader(), default_image="mirror/pt:1"))
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror/pt:1"


def test_config_change_rolls_the_pod_template() -> None:
    a = statefulset(render_children(trader()))["spec"]["template"]["metadata"]["annotations"]
    b = statefulset(render_children(trader(capital={"initial": 500})))["spec"]["template"]["metadata"]["annotations"]
    assert a["papertrader.io/config-hash"] != b["papertrader.io/config-hash"]


def test_worker_config_uses_worker_setting_names() -> None:
    config = worker_config(default_spec(trader(extraConfig={"SMA_FAST": "7"})["spec"]), "BTC-EUR")
    assert config["SYMBOL"] == "BTC-EUR" and config["INITIAL_CAPITAL"] == 10000
    assert config["MAX_DRAWDOWN_PCT"] == 0.10 and config["SMA_FAST"] == "7" and config["STRATEGY"] == "sma-cross"


def test_storage_retention_follows_the_spec() -> None:
    keep = statefulset(render_children(trader(storage={"retainOnDelete": True, "size": "3Gi",
                                                       "storageClassName": "fast"})))["spec"]
    assert keep["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert keep["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast"
    default = statefulset(render_children(trader()))["spec"]  # ledgers are kept unless asked otherwise
    assert default["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    drop = statefulset(render_children(trader(storage={"retainOnDelete": False})))["spec"]
    assert drop["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"


def test_child_names_must_fit_dns_and_statefulset_limits() -> None:
    assert name_errors("demo", ["BTC-EUR"]) == []
    assert "at most 52" in name_errors("x" * 50, ["BTC-EUR"])[0]
    assert "start with a letter" in name_errors("1demo", ["BTC-EUR"])[0]
    assert "start with a letter" in name_errors("a.b", ["BTC-EUR"])[0]


def test_drift_ignores_server_defaults_and_equal_quantities() -> None:
    container = {"name": "w", "resources": {"limits": {"cpu": "1"}}}
    desired = {"spec": {"replicas": 1, "template": {"containers": [container]}}}
    live = {"spec": {"replicas": 1, "revisionHistoryLimit": 10, "template": {"containers": [
        {"name": "w", "imagePullPolicy": "IfNotPresent", "resources": {"limits": {"cpu": "1000m"}}}]}}}
    assert contains(desired, live) and drifted_fields(desired, live) == []
    live["spec"]["replicas"] = 3
    assert drifted_fields(desired, live) == ["spec.replicas"]
    assert repair_patch(desired, ["spec.replicas"]) == {"spec": {"replicas": 1}}
    assert not contains({"a": ["x", "y"]}, {"a": ["x"]})
    assert needs_recreate("StatefulSet", ["spec.volumeClaimTemplates"]) and not needs_recreate("Service", ["spec.x"])


def test_merge_patch_diff_removes_and_replaces() -> None:
    assert merge_patch_diff({"a": 1, "b": {"c": 1, "d": 2}}, {"a": 1, "b": {"c": 2}}) == {"b": {"c": 2, "d": None}}
    assert merge_patch_diff({"a": [1]}, {"a": [1]}) == {}


def health(equity: str, drawdown: float, initial: str = "10000") -> dict[str, Any]:
    return {"portfolio": {"equity": equity, "initial_capital": initial, "drawdown_pct": drawdown,
                          "open_positions": 1}}


def test_portfolio_drawdown_is_summed_over_symbol_peaks() -> None:
    port = portfolio([health("7000", 30.0), health("10000", 0.0)])
    assert port is not None
    assert port.equity == Decimal("17000") and port.initial_capital == Decimal("20000")
    assert port.drawdown_pct == 15.0 and port.return_pct == -15.0 and port.open_positions == 2
    assert breached(port, 0.15) and not breached(port, 0.2)
    # a symbol that peaked above its start: drawdown from peak, not from the initial capital
    grown = portfolio([health("11000", 0.0), health("9900", 10.0)])
    assert grown is not None and grown.drawdown_pct == pytest.approx(100 * 1100 / 22000, abs=1e-3)
    assert portfolio([{"status": "starting"}]) is None and not breached(None, 0.1)


def test_conditions_keep_transition_time_until_status_changes() -> None:
    old = [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    same = merge_conditions(old, [{"type": "Ready", "status": "True", "reason": "x", "message": "m"}], "NOW")
    assert same[0]["lastTransitionTime"] == "2024-01-01T00:00:00Z"
    flipped = merge_conditions(old, [{"type": "Ready", "status": "False", "reason": "y", "message": "m"}], "NOW")
    assert flipped[0]["lastTransitionTime"] == "NOW"


def test_exported_metric_names() -> None:
    names = metrics.exported_metric_names()
    assert {"papertrader_operator_reconcile_total", "papertrader_operator_reconcile_duration_seconds_bucket",
            "papertrader_operator_errors_total", "papertrader_operator_traders",
            "papertrader_operator_workers_ready"} <= names


def test_cli_flags_map_to_kopf_and_config() -> None:
    args = build_parser().parse_args(["-n", "trading", "--worker-image", "x/y:1", "--resync-interval", "5",
                                      "--worker-url-template", "http://127.0.0.1:9/{name}"])
    assert kopf_options(args) == KopfOptions(namespaces=("trading",), log_format="json", verbose=False,
                                             standalone=True)
    assert not kopf_options(args).clusterwide
    config = config_from_args(args)
    assert config.worker_image == "x/y:1" and config.resync_interval == 5 and config.namespaces == ("trading",)
    assert kopf_options(build_parser().parse_args([])).clusterwide


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "papertrader_operator", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--worker-url-template" in result.stdout


@pytest.mark.parametrize("example", ["btc-eth.yaml", "live-bitvavo.yaml", "replay-ml.yaml"])
def test_rendered_config_is_accepted_by_the_worker(example: str, tmp_path: Any) -> None:
    """The ConfigMap's config.yaml loads through the worker's own settings loader (unknown keys are errors)."""
    from pathlib import Path

    import yaml

    config_module = pytest.importorskip("papertrader.config")
    document = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / example).read_text())
    document["metadata"].update(namespace="ns", uid="u")
    configmap = render_children(document)[0]
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"]["config.yaml"])
    symbol, spec = document["spec"]["symbols"][0], document["spec"]
    flags = {"symbol": symbol, "replay_file": spec.get("replayFile"),
             "model": spec.get("strategy", {}).get("model", {}).get("path")}  # as the container's arguments
    settings = config_module.load_settings(flags={k: v for k, v in flags.items() if v}, config_file=path)
    assert settings.symbol == symbol and settings.source == document["spec"]["source"]
    assert float(settings.initial_capital) == document["spec"].get("capital", {}).get("initial", 10000)
