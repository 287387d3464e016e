"""The built image (`-m slow`, needs podman; built by hack/build-image.sh, cached): it runs read-only as uid 10001
with the sma-cross and ml strategies, writes nothing outside /tmp and its state volume, exits 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.pods.backends import free_port, podman_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "ghcr.io/papertrader/papertrader:0.1.0"
STATE = "/var/lib/papertrader"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, env=podman_env())


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (see README, 'Container tests')")
    subprocess.run(["bash", str(ROOT / "hack" / "build-image.sh")], check=True, env={**os.environ, "IMAGE": IMAGE})
    return IMAGE


def run_flags(name: str, state: Path) -> list[str]:
    """As the pod spec runs it: read-only root, uid/gid 10001, /tmp and the state volume the only writable places."""
    state.mkdir(exist_ok=True)
    os.chown(state, 10001, 10001)
    return ["--name", name, "--read-only", "--read-only-tmpfs=false", "--user", "10001:10001", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", "/tmp", "-v", f"{state}:{STATE}"]


def changes(name: str) -> set[str]:
    return set(podman("diff", name).stdout.split("\n")) - {""}


@pytest.mark.parametrize("strategy", ["sma-cross", "ml"])
def test_runs_read_only_as_10001_and_writes_only_its_volume(image: str, tmp_path: Path, strategy: str) -> None:
    name = f"pt-image-{os.getpid()}-{strategy}"
    # what podman itself changes in any container with these flags (mount points, /etc/hosts): the baseline
    podman("rm", "-f", name, f"{name}-base", check=False)
    podman("run", *run_flags(f"{name}-base", tmp_path / "base"), "--entrypoint", "true", image)
    baseline = changes(f"{name}-base")
    proc = podman("run", *run_flags(name, tmp_path / "state"), image, "run", "--strategy", strategy,
                  "--source", "synthetic", "--max-candles", "300", "--state-dir", STATE, "--http-port", "0",
                  "--ws-port", "0", check=False)
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert summary["candles"] == 300 and summary["finished"] is True
        assert changes(name) == baseline  # nothing written to the image's filesystem
        files = {p.relative_to(tmp_path / "state").as_posix() for p in (tmp_path / "state").rglob("*")}
        assert {"state.db", "summary.json", "logs/trades.csv"} <= files
        assert not [f for f in files if f.endswith(("-wal", "-shm"))]  # the ledger was closed
        assert {p.stat().st_uid for p in (tmp_path / "state").rglob("*")} == {10001}
    finally:
        podman("rm", "-f", name, f"{name}-base", check=False)


def test_sigterm_exits_0_within_a_second(image: str, tmp_path: Path) -> None:
    name, port = f"pt-image-{os.getpid()}-term", free_port()
    podman("rm", "-f", name, check=False)
    podman("run", "-d", *run_flags(name, tmp_path / "state"), "--network", "slirp4netns",
           "-p", f"127.0.0.1:{port}:8766", image, "run", "--source", "synthetic", "--speed", "60",
           "--state-dir", STATE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert json.load(response)["alive"] is True
                    break
            except OSError:
                assert time.monotonic() < deadline, podman("logs", name, check=False).stderr[-2000:]
                time.sleep(0.5)
        start = time.monotonic()
        podman("kill", "--signal", "TERM", name)
        code = int(podman("wait", name).stdout.strip())
        assert code == 0 and time.monotonic() - start < 3
        assert podman("inspect", "--format", "{{.Config.User}}", name).stdout.strip() == "10001:10001"
    finally:
        podman("rm", "-f", name, check=False)


def test_operator_starts_without_the_kubernetes_client(image: str) -> None:
    proc = podman("run", "--rm", "--read-only", "--user", "10001:10001", "--entrypoint", "python", image, "-c",
                  "import importlib.util, papertrader_operator.main, kopf;"
                  "print(importlib.util.find_spec('kubernetes') is None)")
    assert proc.stdout.strip() == "True", proc.stderr


def test_labels_carry_the_revision(image: str) -> None:
    labels = json.loads(podman("image", "inspect", image, "--format", "{{json .Labels}}").stdout)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == head
    assert labels["org.opencontainers.image.version"] == "0.1.0"
