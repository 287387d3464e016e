"""The ml worker's footprint: optional services' libraries stay unimported unless configured, and a replay worker
never imports aiohttp (its HTTP server runs on asyncio streams)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.ml.conftest import SAMPLE

PROBE = """
import sys
from papertrader.cli import main
try:
    code = main()
except SystemExit as exit_:
    code = exit_.code
print('RC', code or 0)
heavy = sorted({m.split('.')[0] if m.split('.')[0] in ('telegram', 'aiohttp') else m for m in sys.modules
                if m.split('.')[0] in ('telegram', 'aiohttp') or m.startswith('opentelemetry.exporter')})
print('HEAVY', heavy)
"""


def test_ml_worker_without_token_or_tracing_does_not_import_telegram_or_otlp(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "OTEL_", "TRACING"))}
    args = ["run", "--strategy", "ml", "--source", "replay", "--replay-file", str(SAMPLE), "--max-candles", "150",
            "--state-dir", str(tmp_path / "s"), "--http-port", "0", "--ws-port", "0"]
    result = subprocess.run([sys.executable, "-c", f"import sys; sys.argv = ['papertrader', *{args!r}]\n{PROBE}"],
                            capture_output=True, text=True, timeout=180, env=env)
    assert "RC 0" in result.stdout and "HEAVY []" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
