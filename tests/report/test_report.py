"""``papertrader report``: figures recomputed from the CSVs equal the page's, the page renders in a real headless
Chromium with the expected traces and points and no JavaScript error, comparisons, read-only snapshots of a
running worker, and clear errors."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from papertrader.report import load_run, render_report
from papertrader.report.figures import STOP_REASONS, TARGET_REASONS, compute
from papertrader.report.page import FIGURE_LABELS, MAX_LINE_POINTS, decimate
from tests.report.browser import open_page

CHARTS_JS = """Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => ({
  id: g.id, traces: g.data.map(t => ({name: t.name, points: t.x.length, ys: t.y.length}))}))"""
FIGURES_JS = """Array.from(document.querySelectorAll('td[data-key]')).map(td => [td.dataset.run, td.dataset.key,
  td.textContent])"""
PAGE_JS = f"({{charts: {CHARTS_JS}, figures: {FIGURES_JS},"\
          " trips: Object.fromEntries(Object.entries(window.PT_REPORT.trips).map(([k, v]) => [k, v.length])),"\
          " tableRows: Array.from(document.querySelectorAll('.trips')).map(b => b.querySelectorAll('tr').length - 1)})"


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _shown(value: str) -> float | None:
    return None if value == "–" else float(value.replace(",", ""))


def test_figures_equal_summary_and_csvs(replay_runs: tuple[Path, Path]) -> None:
    for state_dir in replay_runs:
        summary = json.loads((state_dir / "summary.json").read_text())
        trades = _csv(state_dir / "logs" / "trades.csv")
        portfolio = _csv(state_dir / "logs" / "portfolio.csv")
        figures = compute(load_run(state_dir))
        stats = figures.stats
        for key in ("candles", "trades", "round_trips", "final_equity", "return_pct", "max_drawdown_pct",
                    "win_rate", "fees_paid", "rejected_candles", "gaps", "missing_candles"):
            assert stats[key] == summary[key], key
        # independently from the CSVs
        sells = [row for row in trades if row["side"] == "sell"]
        assert stats["trades"] == len(trades)
        assert stats["round_trips"] == len(sells)
        assert Decimal(str(stats["fees_paid"])) == sum(Decimal(row["fee"]) for row in trades)
        assert stats["win_rate"] == round(100 * sum(Decimal(r["realized_pnl"]) > 0 for r in sells) / len(sells), 2)
        wins = sum(Decimal(r["realized_pnl"]) for r in sells if Decimal(r["realized_pnl"]) > 0)
        losses = -sum(Decimal(r["realized_pnl"]) for r in sells if Decimal(r["realized_pnl"]) < 0)
        assert stats["profit_factor"] == round(float(wins / losses), 4)
        # the per-candle equity passes through every portfolio row (to the cent: rows round the position value)
        by_ts = dict(zip(figures.ts.tolist(), figures.equity.tolist(), strict=True))
        for row in portfolio:
            assert abs(by_ts[int(row["timestamp_ms"])] - float(row["equity"])) <= 0.0051, row
        assert Decimal(portfolio[-1]["equity"]) == Decimal(str(summary["final_equity"]))
        # buy and hold of the same candles, exposure from the open lots
        assert stats["buy_hold_return_pct"] == round((figures.closes[-1] / figures.closes[0] - 1) * 100, 4)
        assert 0 < stats["exposure_pct"] < 100
        assert stats["sharpe"] is not None and stats["sortino"] is not None


def test_report_renders_in_chromium(replay_runs: tuple[Path, Path], tmp_path: Path) -> None:
    state_dir = replay_runs[0]
    page_path = tmp_path / "report.html"
    result = subprocess.run([sys.executable, "-m", "papertrader.cli", "report", str(state_dir), "--out",
                             str(page_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "report written to" in result.stdout
    assert "https://" not in page_path.read_text(encoding="utf-8").split("<script>", 1)[0]  # nothing to fetch
    page = open_page(page_path, PAGE_JS)
    assert page.errors == []
    assert page.screenshot_png.startswith(b"\x89PNG") and len(page.screenshot_png) > 20_000
    screenshot = Path(os.environ.get("PT_REPORT_SCREENSHOT", tmp_path / "report.png"))
    screenshot.write_bytes(page.screenshot_png)

    summary = json.loads((state_dir / "summary.json").read_text())
    trades = _csv(state_dir / "logs" / "trades.csv")
    charts = {chart["id"]: chart["traces"] for chart in page.value["charts"]}
    assert set(charts) == {"run0-equity", "run0-price"}
    candles = summary["candles"]
    assert candles <= MAX_LINE_POINTS
    assert [(t["name"], t["points"]) for t in charts["run0-equity"]] == [
        ("strategy equity", candles), ("buy & hold", candles), ("drawdown %", candles)]
    price = {t["name"]: t["points"] for t in charts["run0-price"]}
    assert price["close"] == candles
    assert price["buy"] == sum(r["side"] == "buy" for r in trades)
    assert price["stop exit"] == sum(r["reason"] in STOP_REASONS for r in trades)
    assert price["target exit"] == sum(r["reason"] in TARGET_REASONS for r in trades)
    assert price["stop exit"] > 0 and price["target exit"] > 0
    trade_markers = price["buy"] + price["sell (signal/risk)"] + price["stop exit"] + price["target exit"]
    assert trade_markers == len(trades)
    assert price["rejected candle"] == summary["rejected_candles"] == 1
    assert price["gap"] == summary["gaps"]
    assert all(t["points"] == t["ys"] for traces in charts.values() for t in traces)
    # the figures shown equal summary.json
    shown = {key: text for run, key, text in page.value["figures"] if run == "0"}
    assert set(shown) == set(FIGURE_LABELS)
    for key in ("return_pct", "max_drawdown_pct", "win_rate", "final_equity", "fees_paid", "trades",
                "round_trips", "candles", "rejected_candles", "gaps", "missing_candles"):
        assert _shown(shown[key]) == pytest.approx(summary[key], abs=1e-9), key
    # every round trip is in the table's data; the first page shows up to 200
    lots = {r["position_id"] for r in trades}
    assert page.value["trips"] == {"run0": len(lots)}
    assert page.value["tableRows"] == [min(200, len(lots))]


def test_two_run_comparison(replay_runs: tuple[Path, Path], tmp_path: Path) -> None:
    page_path = tmp_path / "compare.html"
    page_path.write_text(render_report(list(replay_runs)), encoding="utf-8")
    page = open_page(page_path, PAGE_JS)
    assert page.errors == []
    charts = {chart["id"]: chart["traces"] for chart in page.value["charts"]}
    assert set(charts) == {"compare-equity", "run0-equity", "run0-price", "run1-equity", "run1-price"}
    assert [t["name"] for t in charts["compare-equity"]] == [p.name for p in replay_runs]
    summaries = [json.loads((p / "summary.json").read_text()) for p in replay_runs]
    assert [t["points"] for t in charts["compare-equity"]] == [s["candles"] for s in summaries]
    table = {(run, key): text for run, key, text in page.value["figures"]}
    for index, summary in enumerate(summaries):
        assert _shown(table[(str(index), "return_pct")]) == pytest.approx(summary["return_pct"])
        assert _shown(table[(str(index), "trades")]) == summary["trades"]
    assert summaries[0]["final_equity"] != summaries[1]["final_equity"]  # two different runs side by side


def test_report_never_changes_the_state_dir(replay_runs: tuple[Path, Path]) -> None:
    state_dir = replay_runs[1]

    def digest() -> dict[str, str]:
        return {str(p.relative_to(state_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(state_dir.rglob("*")) if p.is_file()}

    before = digest()
    render_report([state_dir])
    assert digest() == before


def test_csv_only_state_dir(replay_runs: tuple[Path, Path], tmp_path: Path) -> None:
    """A state directory without state.db (CSVs copied out of a pod) still gives a page from the CSVs."""
    copy = tmp_path / "csv-only"
    (copy / "logs").mkdir(parents=True)
    for name in ("trades.csv", "portfolio.csv"):
        (copy / "logs" / name).write_bytes((replay_runs[0] / "logs" / name).read_bytes())
    (copy / "summary.json").write_bytes((replay_runs[0] / "summary.json").read_bytes())
    run = load_run(copy)
    assert run.source == "csv"
    stats = compute(run).stats
    summary = json.loads((copy / "summary.json").read_text())
    for key in ("trades", "round_trips", "final_equity", "return_pct", "win_rate", "fees_paid"):
        assert stats[key] == summary[key], key
    assert "no price series" in render_report([copy])


def test_running_worker_snapshot_and_http_report(tmp_path: Path) -> None:
    """A worker's own state directory while it trades: `GET /report` and `papertrader report` both read a
    consistent snapshot (its fills are a prefix of the final trades.csv), and the worker is not disturbed."""
    state_dir = tmp_path / "live"
    worker = subprocess.Popen(
        [sys.executable, "-m", "papertrader.cli", "run", "--state-dir", str(state_dir), "--speed", "4000",
         "--interval", "1m", "--max-candles", "1000", "--http-port", "0", "--ws-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = _bound_port(state_dir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/report", timeout=30) as response:
                assert response.headers["Content-Type"].startswith("text/html")
                page = response.read().decode("utf-8")
            if '"run0-price"' in page and "sma_cross_up" in page:
                break
            time.sleep(0.5)
        else:
            pytest.fail("GET /report never showed a trade")
        snapshot = load_run(state_dir)
        assert worker.poll() is None, "the worker should still be running"
        output, _ = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, output
    final = load_run(state_dir)
    assert 0 < len(snapshot.fills) <= len(final.fills)
    assert snapshot.fills == final.fills[:len(snapshot.fills)]
    assert len(snapshot.price_ts) <= len(final.price_ts)
    assert (snapshot.price_ts == final.price_ts[:len(snapshot.price_ts)]).all()
    assert f"papertrader report {state_dir} --out report.html" in output


def _bound_port(state_dir: Path) -> int:
    log = state_dir / "logs" / "enhanced_paper_trader.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text(encoding="utf-8").splitlines():
                if "http server listening on" in line:
                    return int(line.rsplit(":", 1)[1].split()[0])
        time.sleep(0.1)
    raise AssertionError("the worker never logged its HTTP port")


def test_bad_inputs_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for target, message in ((tmp_path / "missing", "not a state directory"),
                            (tmp_path / "empty", "no state.db and no logs/trades.csv")):
        done = subprocess.run([sys.executable, "-m", "papertrader.cli", "report", str(target), "--out",
                               str(tmp_path / "x.html")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.strip().count("\n") == 0 and message in done.stderr
        assert not (tmp_path / "x.html").exists()


def test_decimation_keeps_extremes() -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    y = np.cumsum(rng.normal(size=1_000_000))
    keep = decimate(y, 4000)
    assert len(keep) <= 4001
    assert y.argmin() in keep and y.argmax() in keep and keep[0] == 0 and keep[-1] == len(y) - 1
    assert (np.diff(keep) > 0).all()
