"""A real Prometheus (the Debian package) scrapes a running worker; its HTTP API returns the worker's values."""

from __future__ import annotations

import shutil
import socket
import subprocess

import aiohttp
import pytest

from .helpers import ScriptedSource, Worker, settings_for, wait_for

PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_real_prometheus_scrapes_worker(tmp_path):
    assert PROMETHEUS is not None, "prometheus not installed: run bash .ci/install.sh"
    source = ScriptedSource()
    source.release(2500)
    worker = await Worker(settings_for(tmp_path / "w"), source).start()
    await wait_for(lambda: worker.runner.engine.items >= 2500)
    summary = worker.runner.engine.summary()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: papertrader
    static_configs:
      - targets: ["127.0.0.1:{worker.obs.http.bound_port}"]
""")
    process = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        api = f"http://127.0.0.1:{port}/api/v1/query"

        async def query(expr: str) -> list:
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.get(api, params={"query": expr}, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        body = await r.json()
                except (TimeoutError, aiohttp.ClientError):
                    return []
            return body.get("data", {}).get("result", []) if body.get("status") == "success" else []

        results: dict[str, list] = {}

        async def scraped() -> bool:
            for name in ("papertrader_candles_processed_total", "papertrader_equity"):
                results[name] = await query(name)
            return all(results.values())

        await wait_for(scraped, timeout=25, interval=0.5)
        candles = results["papertrader_candles_processed_total"][0]
        assert candles["metric"]["symbol"] == "BTC-EUR" and candles["metric"]["job"] == "papertrader"
        assert float(candles["value"][1]) == summary["candles"] == 2500
        equity = results["papertrader_equity"][0]
        assert float(equity["value"][1]) == pytest.approx(summary["final_equity"], abs=0.01)
        up = await query("up")
        assert float(up[0]["value"][1]) == 1
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        await worker.stop()
