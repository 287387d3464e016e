"""The chart ships the PaperTrader CRD in charts/papertrader/crds/; it must be byte-for-byte the CRD the operator
defines in the top-level crds/ directory (which is generated from operator/papertrader_operator/crd.py)."""
from __future__ import annotations

import kubernetes_validate
import yaml
from chart_helpers import CHART, ROOT

NAME = "papertraders.papertrader.io.yaml"


def test_top_level_crd_exists():
    top = ROOT / "crds" / NAME
    assert top.is_file(), f"{top.relative_to(ROOT)} is missing: the operator's CRD must exist for the chart to copy it"


def test_chart_crd_is_identical_to_top_level_crd():
    top, chart = ROOT / "crds" / NAME, CHART / "crds" / NAME
    assert top.is_file(), f"{top.relative_to(ROOT)} is missing"
    assert chart.is_file(), f"{chart.relative_to(ROOT)} is missing"
    assert chart.read_bytes() == top.read_bytes(), (
        f"{chart.relative_to(ROOT)} differs from {top.relative_to(ROOT)}; refresh it with\n"
        f"  cp crds/{NAME} charts/papertrader/crds/{NAME}")


def test_chart_has_only_that_crd():
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [NAME]


def test_crd_is_valid_and_matches_the_contract():
    doc = yaml.safe_load((CHART / "crds" / NAME).read_text())
    kubernetes_validate.validate(doc, "1.34.0", strict=True)
    spec = doc["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == ("papertrader.io", "Namespaced", "PaperTrader")
    assert "pt" in spec["names"]["shortNames"]
    (version,) = [v for v in spec["versions"] if v["storage"]]
    assert version["name"] == "v1alpha1" and "status" in version["subresources"]
    assert set(version["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"]) >= {"symbols", "source"}
