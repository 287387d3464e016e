"""The linter and the type checker, as part of the test suite (so `bash .ci/run` runs them).

Their configuration is in pyproject.toml (``[tool.ruff]``, ``[tool.mypy]``); both are pinned in the ``dev`` extra
that ``.ci/install.sh`` installs. Locally: ``ruff check`` and ``mypy`` from the repository root.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing_in_worker_operator_and_tests():
    result = _run("ruff", "check", "--no-cache", "worker", "operator", "tests")
    assert result.returncode == 0, f"ruff check failed:\n{result.stdout}{result.stderr}"


def test_mypy_finds_no_type_errors_in_worker_and_operator():
    result = _run("mypy")  # files, search path and options: [tool.mypy]
    assert result.returncode == 0, f"mypy failed:\n{result.stdout}{result.stderr}"
    assert "Success: no issues found" in result.stdout, result.stdout
