"""Fixtures for fleet tests with running workers: the operator tests' kmock emulator and real operator, plus the pod
runner (tests/pods/runner.py) and the real kubectl binary."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.operator.conftest import cluster, kmock_options, start_operator, workers  # noqa: F401  (fixtures)
from tests.pods.backends import Backend, PodmanBackend, ProcessBackend
from tests.pods.runner import PodRunner


def real_kubectl() -> str:
    """The kubectl binary (.ci/install.sh puts the real one, from the npm package that carries helm, first on PATH)."""
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    version = subprocess.run([path, "version", "--client"], capture_output=True, text=True) if path else None
    if version is None or version.returncode != 0 or "dispatcher" in version.stdout:
        pytest.fail(f"no real kubectl at {path!r} (run .ci/install.sh or set KUBECTL)")
    return path


@pytest.fixture()
def kubectl() -> str:
    return real_kubectl()


@pytest.fixture()
def backend() -> Backend:
    """The process backend; container tests override this fixture with `PodmanBackend`."""
    return ProcessBackend()


@pytest.fixture()
async def pod_runner(cluster, backend: Backend, tmp_path: Path) -> AsyncIterator[PodRunner]:  # noqa: F811 - overrides the imported fixture of that name
    async with PodRunner(cluster.mock, backend, tmp_path / "nodes") as runner:
        yield runner


@pytest.fixture()
def podman_backend() -> PodmanBackend:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (the container tests need it: see README, 'Container tests')")
    return PodmanBackend(prefix=f"pt{os.getpid()}")
