"""docs/deploy.md uses commands that work with this chart: the install command, values that the schema accepts,
files that exist, and object names that the chart and the operator really create."""
from __future__ import annotations

import re

from chart_helpers import CHART, ROOT, by_kind, operator_object, render

DEPLOY = ROOT / "docs" / "deploy.md"


def shell_blocks() -> list[str]:
    text = DEPLOY.read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [re.sub(r"\\\n\s*", "", b) for b in blocks]


def commands(prefix: str) -> list[str]:
    return [line.strip() for b in shell_blocks() for line in b.splitlines() if line.strip().startswith(prefix)]


def test_install_command_is_the_charts():
    installs = commands("helm install papertrader")
    assert installs and all(c.startswith("helm install papertrader ./charts/papertrader -n papertrader "
                                         "--create-namespace") for c in installs)


def test_every_set_in_the_docs_renders():
    for cmd in commands("helm install papertrader") + commands("helm upgrade papertrader"):
        sets = re.findall(r"--set (\S+)", cmd)
        docs = render(*[a for s in sets for a in ("--set", s)])
        assert by_kind(docs, "Deployment")
        if "monitoring.grafanaDashboards.namespace=monitoring" in sets:
            assert {cm["metadata"]["namespace"] for cm in by_kind(docs, "ConfigMap")} == {"monitoring"}


def test_referenced_files_exist():
    text = DEPLOY.read_text()
    for path in set(re.findall(r"\b((?:examples|charts/papertrader)/[\w./-]+\.ya?ml)\b", text)):
        assert (ROOT / path).is_file(), path
    assert (CHART / "crds").is_dir()


def test_names_in_the_docs_match_the_chart(default_docs):
    text = DEPLOY.read_text()
    dep = operator_object(default_docs, "Deployment")
    assert f"deployment/{dep['metadata']['name']}" in text
    assert "kubectl get pt" in text or "get pt" in text
    crd = by_kind(default_docs, "CustomResourceDefinition")[0]["metadata"]["name"]
    assert f"kubectl delete crd {crd}" in text
    assert "kubectl apply --server-side -f charts/papertrader/crds/" in text
