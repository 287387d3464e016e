"""``papertrader report``: a self-contained HTML page of one or more state directories (see docs/report.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from papertrader.report.figures import RunFigures, compute
from papertrader.report.page import render
from papertrader.report.snapshot import ReportInputError, RunData, load_run

__all__ = ["ReportInputError", "RunData", "RunFigures", "build_report", "compute", "load_run", "render_report"]


def render_report(state_dirs: Sequence[Path], now: datetime | None = None) -> str:
    """The HTML page for ``state_dirs`` (read-only; a running worker's directory is read as a snapshot)."""
    if not state_dirs:
        raise ReportInputError("no state directory given")
    runs = []
    for state_dir in state_dirs:
        run = load_run(Path(state_dir))
        runs.append((run, compute(run)))
    return render(runs, now or datetime.now(UTC))


def build_report(state_dirs: Sequence[Path], out: Path) -> Path:
    """Write the page for ``state_dirs`` to ``out`` and return its path."""
    page = render_report(state_dirs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
