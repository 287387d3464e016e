"""Operator convergence benchmark: N PaperTraders x M symbols against kmock.

The operator runs as its real CLI (`python -m papertrader_operator`) in a subprocess; kmock (the in-memory
Kubernetes API over HTTP, with the test suite's emulator) runs in this process; its request log is trimmed
because kmock matches each request against the whole log, which would make the emulator, not the operator,
the bottleneck. Measures the time from the
first PaperTrader POST until every child exists and every PaperTrader has a status listing all its symbols,
and the operator process's RSS.

    python benchmarks/operator_convergence.py                  # 100 x 5
    python benchmarks/operator_convergence.py --traders 10 --symbols 3
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

from tests.operator.conftest import PT_RESOURCE, Emulator  # noqa: E402

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


async def run(traders: int, symbols: int, timeout: float) -> dict[str, object]:
    mock = Emulator()
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
                [sys.executable, "-m", "papertrader_operator", "-A", "--http-port", "0", "--resync-interval", "60",
                 "--worker-url-template", "http://127.0.0.1:9/{name}", "--log-format", "full"],
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
                return {
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traders", type=int, default=100)
    parser.add_argument("--symbols", type=int, default=5, choices=range(1, len(SYMBOLS) + 1))
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.traders, args.symbols, args.timeout))))


if __name__ == "__main__":
    main()
