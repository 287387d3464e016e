"""Shared helpers for the chart checks: the real `helm`, `promtool` and `hadolint` binaries (installed by
.ci/install.sh), the chart rendered with the default and with the all-features values."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "papertrader"
ALL_FEATURES = CHART / "ci" / "all-features-values.yaml"
RELEASE, NAMESPACE = "papertrader", "papertrader"

sys.path.insert(0, str(Path(__file__).resolve().parent))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH; install it with .ci/install.sh", pytrace=False)
    return path


def run(args: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}",
                    pytrace=False)
    return proc


def helm_template(*extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra], check=check)


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(*extra: str) -> list[dict]:
    return documents(helm_template("--include-crds", *extra).stdout)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def operator_object(docs: list[dict], kind: str) -> dict:
    """The operator's Deployment or Service (the market gateway has one of each too)."""
    (found,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == f"{RELEASE}-operator"]
    return found
