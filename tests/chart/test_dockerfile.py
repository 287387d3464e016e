"""The Dockerfile: clean under hadolint, and the properties the issue asks for (checked on the text, since no
container engine runs here)."""
from __future__ import annotations

import re

from chart_helpers import ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_clean():
    proc = run([tool("hadolint"), "--no-color", str(DOCKERFILE)], check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_hadolint_catches_a_problem(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    assert run([tool("hadolint"), "--no-color", str(bad)], check=False).returncode != 0


def test_multi_stage_with_pinned_slim_python_base():
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) >= 2
    for base in froms:
        assert re.match(r"python:3\.\d+\.\d+-slim-\w+ AS \w+$", base), base


def test_final_stage_runs_as_numeric_non_root_with_papertrader_entrypoint():
    ins = instructions()
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    final = ins[last_from:]
    users = [rest for w, rest in final if w == "USER"]
    assert users and re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]), users
    assert ("ENTRYPOINT", '["papertrader"]') in final
    labels = " ".join(rest for w, rest in final if w == "LABEL")
    for key in ("title", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    # Nothing is built or installed in the final stage: it only copies the virtualenv.
    assert not [rest for w, rest in final if w == "RUN"]
    assert any(w == "COPY" and rest.startswith("--from=build") for w, rest in final)


def test_cpu_only_torch_and_no_caches_or_secrets():
    text = DOCKERFILE.read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert re.search(r'pip install --no-cache-dir --no-compile torch==[0-9.]+ '
                     r'--index-url "\$\{TORCH_INDEX_URL\}"', text)
    # torch ships a Python 3.12-only file: byte-compiling the venv on 3.11 must skip it
    assert "compileall -q -j 0 -x 'py312_intrinsics'" in text
    # byte code is written once: pip does not compile, compileall runs after the venv is slimmed
    assert len(re.findall(r"pip install --no-cache-dir --no-compile", text)) == 2
    assert text.index("&& slim-venv /opt/venv") < text.index("python -m compileall")
    for w, rest in instructions():
        if w == "RUN" and "pip install" in rest:
            assert "--no-cache-dir" in rest, rest
    assert not re.search(r"(?i)(token|password|secret)\s*=", text)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in ("**/.env", "**/.git", "tests", "charts"):
        assert pattern in ignore, pattern
