"""Size and speed of ``papertrader report`` on a large run, and how long the page takes to open in Chromium.

    python benchmarks/report_size.py                      # 1M 1-minute candles, every SMA cross traded (~37k fills)
    python benchmarks/report_size.py --candles 200000 --json out.json

The run is a real replay (benchmarks/engine_throughput.py's cached synthetic file and its PURE_SMA settings, so
that every cross becomes an order); then the report is built from its state directory and loaded in headless
Chromium (tests/report/browser.py) until every chart has been drawn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

from engine_throughput import PURE_SMA, candle_file  # noqa: E402 - benchmarks are scripts, not a package


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from papertrader.config import load_settings
    from papertrader.cli import build_worker
    from papertrader.report import build_report
    from tests.report.browser import open_page

    path = candle_file(args.candles)
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "run"
        settings = load_settings({"source": "replay", "replay_file": path, "state_dir": state_dir,
                                  "symbol": "BENCH-EUR", "candle_interval": "1m", "http_port": 0, "ws_port": 0,
                                  **PURE_SMA})
        print(f"replaying {args.candles} candles ...", file=sys.stderr, flush=True)
        summary = asyncio.run(build_worker(settings, console_logs=False)[0].run())
        started = time.perf_counter()
        out = build_report([state_dir], Path(tmp) / "report.html")
        build_s = time.perf_counter() - started
        print("opening the page in headless Chromium ...", file=sys.stderr, flush=True)
        page = open_page(out, "Array.from(document.querySelectorAll('.js-plotly-plot')).length", timeout=120)
        results = {
            "candles": summary["candles"], "fills": summary["trades"], "state_db_mb": (state_dir / "state.db").stat().st_size / 1e6,
            "page_mb": out.stat().st_size / 1e6, "build_s": build_s, "browser_load_s": page.load_seconds,
            "charts": page.value, "js_errors": page.errors,
        }
    print(f"{results['candles']:,} candles, {results['fills']:,} fills: page {results['page_mb']:.2f} MB, built in "
          f"{results['build_s']:.2f} s, drawn by Chromium in {results['browser_load_s']:.2f} s "
          f"({results['charts']} charts, {len(results['js_errors'])} JavaScript errors); "
          f"state.db {results['state_db_mb']:.1f} MB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if not results["js_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
