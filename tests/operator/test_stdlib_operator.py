"""`operator/` holds a namespace for `papertrader_operator` only: `import operator` must stay the stdlib module."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_directory_has_no_init() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_import_operator_is_the_stdlib_from_the_repo_root() -> None:
    stdlib = sysconfig.get_paths()["stdlib"]
    code = ("import operator, sys; assert hasattr(operator, 'itemgetter'), operator; "
            f"assert operator.__file__.startswith({stdlib!r}), operator.__file__; print(operator.__file__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(stdlib)
