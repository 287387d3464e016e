"""The CRD file, the examples and the invalid manifests, validated the way an API server would."""

from __future__ import annotations

import glob
import io
import os
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from papertrader_operator.children import render_children
from papertrader_operator.crd import crd_yaml
from papertrader_operator.main import run_operator
from papertrader_operator.validation import cel_errors, validate_spec

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "papertraders.papertrader.io.yaml"
EXAMPLES = sorted(glob.glob(str(ROOT / "examples" / "*.yaml")))
INVALID = sorted(glob.glob(str(Path(__file__).parent / "invalid" / "*.yaml")))
K8S_VERSION = "1.30.0"


def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_FILE.read_text())


def spec_schema() -> dict[str, Any]:
    """The spec schema as written in the CRD file (not the Python module it was generated from)."""
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_crd_file_is_generated_from_the_package() -> None:
    assert CRD_FILE.read_text() == crd_yaml()
    out = io.StringIO()
    with redirect_stdout(out):
        assert run_operator(["crd"]) == 0
    assert out.getvalue() == crd_yaml()


def test_crd_is_a_valid_custom_resource_definition() -> None:
    document = crd()
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    spec = document["spec"]
    assert spec["group"] == "papertrader.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "PaperTrader" and spec["names"]["shortNames"] == ["pt"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Symbols", "Ready", "Equity", "Return %", "Halted", "Entries", "Age"]
    assert spec_schema()["required"] == ["symbols", "source"]


def _structural_violations(schema: Any, path: str = "") -> list[str]:
    """Every node of a structural schema has a type (or int-or-string / preserve-unknown-fields)."""
    if not isinstance(schema, dict):
        return []
    problems = []
    if not ({"type", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields"} & schema.keys()):
        problems.append(path or "<root>")
    for name, prop in (schema.get("properties") or {}).items():
        problems += _structural_violations(prop, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            problems += _structural_violations(schema[key], f"{path}[{key}]")
    return problems


def test_schema_is_structural() -> None:
    assert _structural_violations(crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_examples_validate_against_the_crd(path: str) -> None:
    document = yaml.safe_load(Path(path).read_text())
    assert document["apiVersion"] == "papertrader.io/v1alpha1" and document["kind"] == "PaperTrader"
    defaulted, errors = validate_spec(document["spec"], schema=spec_schema())
    assert errors == []
    assert defaulted["risk"]["maxDrawdownPct"] > 0 and defaulted["storage"]["size"]


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_rendered_children_validate_as_builtin_kinds(path: str) -> None:
    trader = yaml.safe_load(Path(path).read_text())
    trader["metadata"].update(namespace="default", uid="0b0e6f9e-8d7c-4c1b-9d59-3c1f5d1e0a11")
    children = render_children(trader)
    assert [c["kind"] for c in children[:3]] == ["ConfigMap", "Service", "StatefulSet"]
    for child in children:
        kubernetes_validate.validate(child, K8S_VERSION, strict=True)


def _expected(path: str) -> str:
    first = Path(path).read_text().splitlines()[0]
    assert first.startswith("# expect: ")
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", INVALID, ids=os.path.basename)
def test_invalid_manifests_are_rejected_naming_the_field(path: str) -> None:
    document = yaml.safe_load(Path(path).read_text())
    _, errors = validate_spec(document["spec"], schema=spec_schema())
    assert errors, "accepted an invalid manifest"
    assert any(error.startswith(_expected(path)) for error in errors), errors


def test_storage_is_immutable_through_a_transition_rule() -> None:
    old = {"symbols": ["BTC-EUR"], "source": "synthetic", "storage": {"size": "1Gi"}}
    new = {**old, "storage": {"size": "5Gi"}}
    _, errors = validate_spec(new, old_spec=old, schema=spec_schema())
    assert errors == ["spec.storage.size: storage.size is immutable (volumeClaimTemplates cannot change)"]
    assert validate_spec(old, old_spec=old, schema=spec_schema())[1] == []
    assert cel_errors(validate_spec(new)[0]) == []  # transition rules only apply to updates


def test_defaults_fill_a_minimal_spec() -> None:
    defaulted, errors = validate_spec({"symbols": ["BTC-EUR"], "source": "synthetic"}, schema=spec_schema())
    assert errors == []
    assert defaulted["capital"] == {"initial": 10000, "maxPositions": 5, "feeTaker": 0.0025, "slippagePct": 0.0005}
    assert defaulted["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert defaulted["strategy"] == {"name": "sma-cross"} and defaulted["paused"] is False
