"""A PaperTrader from `kubectl apply` to running workers: the real operator against kmock, the pod runner running
the StatefulSets it writes, probes as the pod spec sets them.

Each test runs twice: with workers as plain processes (in CI) and as podman containers from the image (`-m slow`,
see README "Container tests"); the container run is what proves the image.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.operator.conftest import NAMESPACE, Cluster, OperatorFactory, eventually
from tests.pods.backends import Backend, PodmanBackend, ProcessBackend
from tests.pods.plan import claim_dir
from tests.pods.runner import PodRunner

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "papertraders.papertrader.io.yaml"
MARKET = ROOT / "worker" / "papertrader" / "data" / "sample_BTC-USDT_1m.csv"
STATE = "/var/lib/papertrader"
IMAGE = "ghcr.io/papertrader/papertrader:0.1.0"
TIMINGS = ROOT / "bench_out" / "pod_timings.jsonl"  # the measured times, for the report


@pytest.fixture(scope="session")
def image() -> str:
    """The image, built by hack/build-image.sh (its layers are cached between runs)."""
    subprocess.run(["bash", str(ROOT / "hack" / "build-image.sh")], check=True, env={**os.environ, "IMAGE": IMAGE})
    return IMAGE


@pytest.fixture(params=["process", pytest.param("podman", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "process":
        return ProcessBackend()
    request.getfixturevalue("image")
    return request.getfixturevalue("podman_backend")


def record(backend: Backend, what: str, seconds: float) -> None:
    TIMINGS.parent.mkdir(exist_ok=True)
    with TIMINGS.open("a") as out:
        out.write(json.dumps({"backend": backend.name, "what": what, "seconds": round(seconds, 2)}) + "\n")


def printer_columns() -> str:
    """`-o custom-columns` from the CRD's additionalPrinterColumns (kmock serves no server-side table)."""
    crd = yaml.safe_load(CRD.read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    return ",".join(f"{c['name'].upper().replace(' ', '_')}:{c['jsonPath']}" for c in columns)


def kubectl_run(kubectl: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([kubectl, "--request-timeout=10s", *args], input=stdin, capture_output=True, text=True)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def manifest(name: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump({"apiVersion": "papertrader.io/v1alpha1", "kind": "PaperTrader",
                           "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec})


async def apply(kubectl: str, name: str, spec: dict[str, Any]) -> None:
    await asyncio.to_thread(kubectl_run, kubectl, "apply", "--validate=false", "-f", "-",
                            stdin=manifest(name, spec))


async def running_workers(runner: PodRunner) -> list[str]:
    """What still runs: containers with the backend's prefix, or worker processes of this test."""
    if isinstance(runner.backend, PodmanBackend):
        return await PodmanBackend.running(runner.backend.prefix)
    out = subprocess.run(["pgrep", "-f", f"papertrader.cli run .*{runner.root}"], capture_output=True, text=True)
    return out.stdout.split()


def symbol_status(cluster: Cluster, name: str) -> dict[str, dict[str, Any]]:
    status = (cluster.get("PaperTrader", name) or {}).get("status") or {}
    return {entry["symbol"]: entry for entry in status.get("symbols") or []}


async def start_fleet(start_operator: OperatorFactory, pod_runner: PodRunner) -> None:
    await start_operator("--worker-url-template", pod_runner.url_template, "--health-timeout", "2")


async def test_apply_ready_roll_and_delete(cluster: Cluster, start_operator: OperatorFactory, pod_runner: PodRunner,
                                           kubectl: str, backend: Backend) -> None:
    await start_fleet(start_operator, pod_runner)
    spec = {"symbols": ["BTC-EUR", "ETH-EUR"], "source": "synthetic", "speed": "600", "strategy": {"name": "sma-cross"}}
    applied = time.monotonic()
    await apply(kubectl, "demo", spec)

    def all_ready() -> bool:  # the probes passed (readyReplicas, written back by the runner) and the status shows it
        symbols = symbol_status(cluster, "demo")
        return (len(symbols) == 2 and all(entry["ready"] and entry.get("equity") for entry in symbols.values())
                and all(((cluster.get("StatefulSet", entry["workload"]) or {}).get("status") or {})
                        .get("readyReplicas") == 1 for entry in symbols.values()))

    await eventually(all_ready, timeout=120)
    record(backend, "kubectl apply -> both ready", time.monotonic() - applied)
    assert set(pod_runner.pods) == {(NAMESPACE, "demo-btc-eur-0"), (NAMESPACE, "demo-eth-eur-0")}
    for sts in ("demo-btc-eur", "demo-eth-eur"):
        pod = cluster.get("Pod", f"{sts}-0")
        assert {"type": "Ready", "status": "True"} in pod["status"]["conditions"]
    table = await asyncio.to_thread(kubectl_run, kubectl, "get", "pt", "demo", "-o",
                                    f"custom-columns={printer_columns()}")
    header, row = table.splitlines()
    fields = dict(zip(header.split(), row.split(), strict=True))
    assert fields["READY"] == "2/2" and fields["SYMBOLS"] == "BTC-EUR,ETH-EUR", table
    assert float(fields["EQUITY"]) > 0, table

    # a changed strategy setting rolls the pods as a StatefulSet would: the old one stops, a new one starts
    old = pod_runner.pods[(NAMESPACE, "demo-btc-eur-0")]
    await apply(kubectl, "demo", {**spec, "risk": {"takeProfitPct": 7.5}})
    await eventually(lambda: (pod := pod_runner.pods.get((NAMESPACE, "demo-btc-eur-0"))) is not None
                     and pod is not old and pod.ready, timeout=120)
    new = pod_runner.pods[(NAMESPACE, "demo-btc-eur-0")]
    assert old.events[-1].what == "stopped" and old.last_exit == 0  # SIGTERM: a clean exit
    config = next(m.host for m in new.plan.mounts if m.container == "/etc/papertrader") / "config.yaml"
    assert yaml.safe_load(config.read_text())["TAKE_PROFIT_PCT"] == 7.5
    assert new.restarts == 0 and new.plan.revision != old.plan.revision
    await eventually(all_ready, timeout=60)

    await asyncio.to_thread(kubectl_run, kubectl, "delete", "pt", "demo")
    await eventually(lambda: not pod_runner.pods and not cluster.names("Pod"), timeout=90)
    assert await running_workers(pod_runner) == []


def uninterrupted_trades(tmp_path: Path, market: Path, config: Path) -> str:
    """trades.csv of the same replay with the same settings, run once from start to end as a plain process."""
    state = tmp_path / "uninterrupted"
    subprocess.run([sys.executable, "-m", "papertrader.cli", "run", "--config", str(config), "--source", "replay",
                    "--replay-file", str(market), "--speed", "max", "--state-dir", str(state),
                    "--http-port", "0", "--ws-port", "0"],
                   check=True, capture_output=True, cwd=tmp_path)
    return (state / "logs" / "trades.csv").read_text()


async def test_stuck_worker_is_restarted_by_liveness_and_resumes_its_ledger(
        cluster: Cluster, start_operator: OperatorFactory, pod_runner: PodRunner, kubectl: str, backend: Backend,
        tmp_path: Path) -> None:
    # the candles lie on the worker's state volume, put there before the pod starts
    market = claim_dir(pod_runner.root, NAMESPACE, "state-stuck-btc-eur-0") / "market.csv"
    market.parent.mkdir(parents=True)
    market.write_text("".join(MARKET.read_text().splitlines(keepends=True)[:451]))
    await start_fleet(start_operator, pod_runner)
    await apply(kubectl, "stuck", {"symbols": ["BTC-EUR"], "source": "replay", "replayFile": f"{STATE}/market.csv",
                                   "speed": "1800", "candleInterval": "1m", "strategy": {"name": "sma-cross"}})
    key = (NAMESPACE, "stuck-btc-eur-0")
    await eventually(lambda: key in pod_runner.pods and pod_runner.pods[key].ready, timeout=120)
    pod = pod_runner.pods[key]
    await asyncio.sleep(2)  # a few candles into the replay
    await pod.container.signal(signal.SIGSTOP)  # a stuck worker: alive, answering nothing
    stopped = time.monotonic()

    await eventually(lambda: pod.restarts >= 1 and pod.ready, timeout=150)
    failed = next(e.at for e in pod.events if e.what == "liveness-failed")
    restarted = next(e.at for e in pod.events if e.what == "started" and e.at > failed)
    liveness = pod.plan.liveness
    # failureThreshold probes, periodSeconds apart, each given timeoutSeconds
    assert (liveness.failure_threshold - 1) * liveness.period <= failed - stopped
    assert failed - stopped <= liveness.failure_threshold * (liveness.period + liveness.timeout) + 1
    record(backend, "SIGSTOP -> liveness failure", failed - stopped)
    record(backend, "liveness failure -> container started again", restarted - failed)
    record(backend, "SIGSTOP -> ready again", next(e.at for e in pod.events if e.what == "ready" and e.at > restarted)
           - stopped)
    await eventually(lambda: symbol_status(cluster, "stuck").get("BTC-EUR", {}).get("restarts", 0) >= 1, timeout=30)

    trades = claim_dir(pod_runner.root, NAMESPACE, "state-stuck-btc-eur-0") / "logs" / "trades.csv"
    summary = trades.parent.parent / "summary.json"
    await eventually(lambda: summary.exists() and json.loads(summary.read_text()).get("finished"), timeout=120,
                     interval=0.5)
    config = next(m.host for m in pod.plan.mounts if m.container == "/etc/papertrader") / "config.yaml"
    expected = uninterrupted_trades(tmp_path, market, config)
    assert expected.count("\n") > 3
    assert trades.read_text() == expected
