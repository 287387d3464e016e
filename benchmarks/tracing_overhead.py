"""Replay throughput with tracing off vs on (spans exported over OTLP/HTTP to a local receiver that drops them).

    python benchmarks/tracing_overhead.py [--candles 100000]

Prints candles/s for: off, default sampling (max-speed replay: 1 candle in 1,000 traced), and every candle
traced (OTEL_TRACES_SAMPLER=always_on), with the ratio to tracing off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve(ready: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    ready.put(server.server_address[1])
    server.serve_forever()


def run(candles: int, env: dict[str, str]) -> float:
    from papertrader.config import load_settings
    from papertrader.cli import build_worker

    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_EXPORTER"):
        os.environ.pop(key, None)
    os.environ.update(env)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"state_dir": Path(tmp), "http_port": 0, "ws_port": 0, "max_candles": candles,
                                  "log_level": "WARNING"})
        runner, _ = build_worker(settings, console_logs=False)
        started = time.perf_counter()
        asyncio.run(runner.run())
        return candles / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candles", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    # the receiver runs in its own process so that it does not compete with the worker for the GIL
    ready: multiprocessing.Queue[int] = multiprocessing.Queue()
    sink = multiprocessing.Process(target=_serve, args=(ready,), daemon=True)
    sink.start()
    endpoint = f"http://127.0.0.1:{ready.get(timeout=10)}"
    cases = {
        "off": {},
        "default sampling": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        "always_on": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_SAMPLER": "always_on"},
    }
    results = {name: max(run(args.candles, env) for _ in range(args.repeat)) for name, env in cases.items()}
    base = results["off"]
    for name, rate in results.items():
        print(f"{name:18s} {rate:10.0f} candles/s   ratio {rate / base:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"candles": args.candles, "repeat": args.repeat, "candles_per_s": results,
                                         "ratio_to_off": {k: v / base for k, v in results.items()}}, indent=2) + "\n",
                             encoding="utf-8")
    sink.terminate()


if __name__ == "__main__":
    main()
