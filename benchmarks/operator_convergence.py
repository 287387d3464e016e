"""Operator convergence benchmark: N PaperTraders x M symbols against kmock.

The operator runs as its real CLI (`python -m papertrader_operator`) in a subprocess; kmock (the in-memory
Kubernetes API over HTTP, with the test suite's emulator) runs in this process; its request log is trimmed
because kmock matches each request against the whole log, which would make the emulator, not the operator,
the bottleneck. Measures the time from the
first PaperTrader POST until every child exists and every PaperTrader has a status listing all its symbols,
and the operator process's RSS. With `--steady S`, the converged fleet (every worker answering /health from a fake
on 127.0.0.1, every StatefulSet ready, every pod present) is then watched for S seconds: API requests per second by
verb and resource, and worker /health reads per second, at the operator's default resync interval (10 s).

    python benchmarks/operator_convergence.py                  # 100 x 5
    python benchmarks/operator_convergence.py --traders 10 --symbols 3
    python benchmarks/operator_convergence.py --steady 60      # 500 workers: the resync cost
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kmock
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.operator.conftest import PT_RESOURCE, Emulator, FakeWorkers  # noqa: E402

SYMBOLS = ["BTC-EUR", "ETH-EUR", "SOL-EUR", "ADA-EUR", "XRP-EUR", "DOT-EUR", "LTC-EUR", "LINK-EUR"]
CHILD_RESOURCES = ("apps/v1/statefulsets", "v1/services", "v1/configmaps")


def count_children(mock: Emulator) -> int:
    resources = {kmock.resource(name) for name in CHILD_RESOURCES}
    return sum(1 for (res, _, _), obj in list(mock.objects.items()) if res in resources and not obj.deleted)


def statuses_written(mock: Emulator, traders: int, symbols: int) -> int:
    res = kmock.resource(PT_RESOURCE)
    return sum(1 for (r, _, _), obj in list(mock.objects.items())
               if r == res and not obj.deleted
               and len(((obj.raw.get("status") or {}).get("symbols") or [])) == symbols
               and (obj.raw.get("status") or {}).get("observedGeneration"))


async def make_fleet_ready(mock: Emulator, workers: FakeWorkers, traders: int, symbols: int) -> None:
    """What the StatefulSet controller and the kubelet would do: ready StatefulSets, running pods."""
    for index in range(traders):
        for symbol in SYMBOLS[:symbols]:
            name = f"bench-{index}-{symbol.lower()}"
            workers.report(name)
            await mock.patch(f"/apis/apps/v1/namespaces/default/statefulsets/{name}/status",
                             json={"status": {"replicas": 1, "readyReplicas": 1}})
            await mock.post("/api/v1/namespaces/default/pods", json={
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{name}-0", "namespace": "default", "labels": {
                    "app.kubernetes.io/name": "papertrader-worker", "app.kubernetes.io/instance": f"bench-{index}",
                    "app.kubernetes.io/managed-by": "papertrader-operator",
                    "papertrader.io/symbol": symbol.lower()}},
                "status": {"containerStatuses": [{"name": "worker", "restartCount": 0}]}})


async def steady_cost(mock: Emulator, workers: FakeWorkers, seconds: float) -> dict[str, object]:
    """Requests per second while nothing changes."""
    before, reads = dict(mock.counts), workers.health_reads
    await asyncio.sleep(seconds)
    per_second = {f"{verb} {res}": round((n - before.get((verb, res), 0)) / seconds, 2)
                  for (verb, res), n in sorted(mock.counts.items()) if n != before.get((verb, res), 0)}
    return {"steady_s": seconds, "api_requests_per_s": per_second,
            "worker_health_get_per_s": round((workers.health_reads - reads) / seconds, 2),
            "worker_health_get_total": workers.health_reads}


async def run(traders: int, symbols: int, timeout: float, steady: float = 0.0) -> dict[str, object]:
    mock = Emulator()
    workers = FakeWorkers()
    await workers.start()
    async with mock, kmock.Server(mock):
        mock.resources.load_bundled()
        mock.resources[PT_RESOURCE] = kmock.ResourceInfo(
            kind="PaperTrader", singular="papertrader", namespaced=True, subresources={"status"},
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"})
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = Path(tmp) / "kubeconfig"
            kubeconfig.write_text(json.dumps({
                "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
                "clusters": [{"name": "kmock", "cluster": {"server": str(mock.url)}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
                "users": [{"name": "kmock", "user": {"token": "bench"}}]}))
            env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
            proc = subprocess.Popen(
                [sys.executable, "-m", "papertrader_operator", "-A", "--http-port", "0",
                 "--resync-interval", "10" if steady else "60",
                 "--worker-url-template", workers.url_template if steady else "http://127.0.0.1:9/{name}",
                 "--log-format", "full"],
                env=env, stdout=open(os.environ.get("BENCH_LOG", os.devnull), "w"), stderr=subprocess.STDOUT, cwd=ROOT)
            operator = psutil.Process(proc.pid)
            try:
                deadline = time.monotonic() + 60
                while not list(mock["watch", kmock.resource(PT_RESOURCE)]):
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the operator did not start watching PaperTraders")
                    await asyncio.sleep(0.05)
                mock.history_limit = 0  # kmock's request log makes matching quadratic; nothing here needs it
                rss_idle = operator.memory_info().rss
                started = time.monotonic()
                for index in range(traders):
                    await mock.post(f"/apis/{PT_RESOURCE.rsplit('/', 1)[0]}/namespaces/default/papertraders", json={
                        "apiVersion": "papertrader.io/v1alpha1", "kind": "PaperTrader",
                        "metadata": {"name": f"bench-{index}", "namespace": "default"},
                        "spec": {"symbols": SYMBOLS[:symbols], "source": "synthetic"}})
                posted = time.monotonic() - started
                want_children = traders * symbols * 3
                children_at = None
                peak_rss = rss_idle
                while True:
                    elapsed = time.monotonic() - started
                    peak_rss = max(peak_rss, operator.memory_info().rss)
                    children = count_children(mock)
                    if children_at is None and children >= want_children:
                        children_at = elapsed
                    done = statuses_written(mock, traders, symbols)
                    if children >= want_children and done >= traders:
                        break
                    if elapsed > timeout:
                        raise RuntimeError(f"not converged after {timeout}s: {children}/{want_children} children, "
                                           f"{done}/{traders} statuses")
                    await asyncio.sleep(float(os.environ.get("BENCH_POLL", "0.1")))
                result: dict[str, object] = {}
                if steady:
                    await make_fleet_ready(mock, workers, traders, symbols)
                    await asyncio.sleep(25)  # two resync intervals: every trader has seen the ready fleet
                    result = await steady_cost(mock, workers, steady)
                return {
                    **result,
                    "traders": traders, "symbols": symbols, "children": want_children,
                    "posted_s": round(posted, 2), "children_s": round(children_at or elapsed, 2),
                    "converged_s": round(elapsed, 2),
                    "operator_rss_mib_idle": round(rss_idle / 2**20, 1),
                    "operator_rss_mib_peak": round(peak_rss / 2**20, 1),
                    "operator_rss_mib_end": round(operator.memory_info().rss / 2**20, 1),
                }
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                await workers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traders", type=int, default=100)
    parser.add_argument("--symbols", type=int, default=5, choices=range(1, len(SYMBOLS) + 1))
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--steady", type=float, default=0.0,
                        help="then measure the steady resync cost for this many seconds (0: skip)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.traders, args.symbols, args.timeout, args.steady))))


if __name__ == "__main__":
    main()
