"""Fixtures for the chart checks; the helpers live in chart_helpers.py (a unique module name, so that the other
test directories' conftest.py files cannot shadow them)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chart_helpers import ALL_FEATURES, render  # noqa: E402 - after the sys.path set-up above


@pytest.fixture(scope="session")
def default_docs() -> list[dict]:
    return render()


@pytest.fixture(scope="session")
def all_docs() -> list[dict]:
    return render("-f", str(ALL_FEATURES))


@pytest.fixture(scope="session", params=["default", "all-features"])
def rendered(request, default_docs, all_docs) -> list[dict]:
    return default_docs if request.param == "default" else all_docs
