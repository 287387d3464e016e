"""The HTML page: one self-contained file (plotly.js inlined, data embedded as JSON), no network needed.

Series longer than :data:`MAX_LINE_POINTS` are decimated for display (each bucket keeps its first, lowest, highest
and last point, so peaks and troughs survive); every trade is kept as a marker.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import numpy as np

from papertrader.report.figures import STOP_REASONS, TARGET_REASONS, RunFigures
from papertrader.report.snapshot import RunData

MAX_LINE_POINTS = 4000
#: the figures table, in order: key -> label
FIGURE_LABELS: dict[str, str] = {
    "return_pct": "Return %", "buy_hold_return_pct": "Buy & hold %", "max_drawdown_pct": "Max drawdown %",
    "final_equity": "Final equity", "trades": "Fills", "round_trips": "Round trips", "win_rate": "Win rate %",
    "fees_paid": "Fees paid", "exposure_pct": "Exposure %", "sharpe": "Sharpe (per candle)",
    "sortino": "Sortino (per candle)", "sharpe_annualised": "Sharpe (annualised)",
    "sortino_annualised": "Sortino (annualised)", "profit_factor": "Profit factor", "candles": "Candles",
    "rejected_candles": "Rejected candles", "gaps": "Gaps", "missing_candles": "Missing candles",
}


def decimate(y: np.ndarray, max_points: int = MAX_LINE_POINTS) -> np.ndarray:
    """Indices of ``y`` to draw: all of them when short, else per bucket its first, min, max and last point."""
    count = len(y)
    if count <= max_points:
        return np.arange(count)
    buckets = max(1, max_points // 4)
    size = -(-count // buckets)
    padded = np.full(buckets * size, np.nan)
    padded[:count] = y
    grid = padded.reshape(buckets, size)
    starts = np.arange(buckets) * size
    lows = starts + np.nanargmin(grid, axis=1)
    highs = starts + np.nanargmax(grid, axis=1)
    lasts = np.minimum(starts + size - 1, count - 1)
    return np.unique(np.concatenate([starts, lows, highs, lasts, [count - 1]]))


def _line(ts: np.ndarray, y: np.ndarray, name: str, **style: Any) -> dict[str, Any]:
    keep = decimate(y)
    return {"type": "scatter", "mode": "lines", "name": name, "x": ts[keep].tolist(),
            "y": np.round(y[keep], 6).tolist(), **style}


def _markers(points: list[tuple[int, float]], name: str, symbol: str, color: str) -> dict[str, Any]:
    return {"type": "scatter", "mode": "markers", "name": name, "x": [p[0] for p in points],
            "y": [p[1] for p in points], "marker": {"symbol": symbol, "color": color, "size": 9,
                                                   "line": {"width": 1, "color": "#222"}}}


def _close_at(figures: RunFigures, ts: int) -> float:
    if not len(figures.closes):
        return 0.0
    index = min(int(np.searchsorted(figures.ts, ts)), len(figures.closes) - 1)
    return float(figures.closes[index])


def run_charts(run: RunData, figures: RunFigures, key: str) -> list[dict[str, Any]]:
    """Plotly specs for one run: equity with buy-and-hold and the drawdown underneath; price with trades."""
    ts = figures.ts
    equity_traces = [_line(ts, figures.equity, "strategy equity", line={"color": "#1f77b4"})]
    if len(figures.buy_hold):
        equity_traces.append(_line(ts, figures.buy_hold, "buy & hold", line={"color": "#7f7f7f", "dash": "dot"}))
    equity_traces.append(_line(ts, -figures.drawdown_pct, "drawdown %", yaxis="y2", fill="tozeroy",
                               line={"color": "#d62728", "width": 1}))
    equity = {
        "id": f"{key}-equity", "title": "Equity and drawdown", "data": equity_traces,
        "layout": {"height": 520, "xaxis": {"type": "date", "anchor": "y2"},
                   "yaxis": {"domain": [0.36, 1.0], "title": {"text": "equity"}},
                   "yaxis2": {"domain": [0.0, 0.28], "title": {"text": "drawdown %"}},
                   "legend": {"orientation": "h"}, "margin": {"t": 30}},
    }
    buys, signal_sells, stops, targets = [], [], [], []
    for fill in run.fills:
        point = (fill.ts, float(fill.price))
        if fill.side == "buy":
            buys.append(point)
        elif fill.reason in STOP_REASONS:
            stops.append(point)
        elif fill.reason in TARGET_REASONS:
            targets.append(point)
        else:
            signal_sells.append(point)
    price_traces = []
    if len(figures.closes):
        price_traces.append(_line(ts, figures.closes, "close", line={"color": "#444", "width": 1}))
    price_traces += [
        _markers(buys, "buy", "triangle-up", "#2ca02c"),
        _markers(signal_sells, "sell (signal/risk)", "triangle-down", "#d62728"),
        _markers(stops, "stop exit", "x", "#ff7f0e"),
        _markers(targets, "target exit", "star", "#9467bd"),
        _markers([(t, _close_at(figures, t)) for t, _ in figures.rejections], "rejected candle", "circle-open",
                 "#e377c2"),
        _markers([(t, _close_at(figures, t)) for t, _ in figures.gaps], "gap", "line-ns-open", "#17becf"),
    ]
    price = {"id": f"{key}-price", "title": f"{run.symbol} price and trades", "data": price_traces,
             "layout": {"height": 460, "xaxis": {"type": "date"}, "yaxis": {"title": {"text": "price"}},
                        "legend": {"orientation": "h"}, "margin": {"t": 30}}}
    return [equity, price]


def comparison_chart(runs: list[tuple[RunData, RunFigures]]) -> dict[str, Any]:
    traces = [_line(figures.ts, figures.equity, run.name) for run, figures in runs]
    return {"id": "compare-equity", "title": "Equity of every run", "data": traces,
            "layout": {"height": 420, "xaxis": {"type": "date"}, "yaxis": {"title": {"text": "equity"}},
                       "legend": {"orientation": "h"}, "margin": {"t": 30}}}


def _trip_rows(figures: RunFigures) -> list[list[Any]]:
    return [[trip.position_id, trip.entry_ts, str(trip.entry_price), str(trip.quantity), trip.entry_reason,
             trip.exit_ts, None if trip.exit_price is None else str(trip.exit_price), trip.exit_reason,
             None if trip.pnl is None else str(trip.pnl), str(trip.fees)] for trip in figures.round_trips]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else str(value)
    return html.escape(str(value))


def _figures_table(runs: list[tuple[RunData, RunFigures]]) -> str:
    head = "".join(f"<th>{html.escape(run.name)}</th>" for run, _ in runs)
    rows = "".join(
        f"<tr><td>{label}</td>" + "".join(
            f'<td data-run="{index}" data-key="{key}">{_fmt(figures.stats.get(key))}</td>'
            for index, (_, figures) in enumerate(runs)) + "</tr>"
        for key, label in FIGURE_LABELS.items())
    return f'<table class="figures"><tr><th>figure</th>{head}</tr>{rows}</table>'


def _settings_table(run: RunData) -> str:
    if not run.settings:
        return "<p>No settings stored with this ledger.</p>"
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in sorted(run.settings.items()))
    return f'<details><summary>Settings ({len(run.settings)})</summary><table class="settings">{rows}</table></details>'


def _quality_list(figures: RunFigures) -> str:
    items = [f"<li>{html.escape(datetime.fromtimestamp(t / 1000, UTC).strftime('%Y-%m-%d %H:%M'))}: rejected "
             f"({html.escape(reason)})</li>" for t, reason in figures.rejections[:50]]
    items += [f"<li>{html.escape(datetime.fromtimestamp(t / 1000, UTC).strftime('%Y-%m-%d %H:%M'))}: gap of "
              f"{missing} candle(s)</li>" for t, missing in figures.gaps[:50]]
    more = len(figures.rejections) + len(figures.gaps) - len(items)
    if more > 0:
        items.append(f"<li>… and {more} more (all marked on the price chart)</li>")
    return f"<ul>{''.join(items)}</ul>" if items else "<p>No rejected candles and no gaps.</p>"


def render(runs: list[tuple[RunData, RunFigures]], generated_at: datetime) -> str:
    """The whole page as one HTML string."""
    charts: list[dict[str, Any]] = []
    sections = []
    if len(runs) > 1:
        compare = comparison_chart(runs)
        charts.append(compare)
        sections.append(f'<section><h2>Comparison</h2><div id="{compare["id"]}" class="chart"></div>'
                        f"{_figures_table(runs)}</section>")
    trips: dict[str, list[list[Any]]] = {}
    for index, (run, figures) in enumerate(runs):
        key = f"run{index}"
        specs = run_charts(run, figures, key)
        charts += specs
        trips[key] = _trip_rows(figures)
        note = "" if len(figures.closes) else (
            '<p class="warn">This state directory has no price series (CSVs only, or a ledger written before '
            "prices were kept): the equity chart shows the portfolio rows and there is no buy-and-hold.</p>")
        divs = "".join(f'<h3>{html.escape(spec["title"])}</h3><div id="{spec["id"]}" class="chart"></div>'
                       for spec in specs)
        sections.append(
            f'<section class="run" data-run="{index}"><h2>{html.escape(run.name)} · {html.escape(run.symbol)}</h2>'
            f'<p class="path">{html.escape(str(run.path))} ({run.source})</p>{note}'
            f"{_figures_table([(run, figures)]) if len(runs) == 1 else ''}{divs}"
            f'<h3>Trades</h3><div class="trips" data-key="{key}"></div>'
            f"<h3>Data quality</h3>{_quality_list(figures)}{_settings_table(run)}</section>")
    payload = json.dumps({"charts": charts, "trips": trips}, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/")
    plotly_js = resources.files("papertrader.report").joinpath("assets/plotly-basic.min.js").read_text("utf-8")
    title = "papertrader report: " + ", ".join(run.name for run, _ in runs)
    return _TEMPLATE.format(title=html.escape(title), plotly=plotly_js, payload=payload,
                            sections="".join(sections),
                            generated=html.escape(generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")))


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; }}
td[data-key], .trips td {{ text-align: right; font-variant-numeric: tabular-nums; }}
.chart {{ width: 100%; }} .path {{ color: #666; }} .warn {{ color: #a60; }}
section {{ margin-bottom: 2em; }} .pager button {{ margin: 0 4px; }}
</style>
<script>{plotly}</script></head>
<body><h1>{title}</h1><p class="path">generated {generated}</p>
{sections}
<script id="pt-data" type="application/json">{payload}</script>
<script>
(function () {{
  var data = JSON.parse(document.getElementById("pt-data").textContent);
  window.PT_REPORT = data;
  data.charts.forEach(function (c) {{ Plotly.newPlot(c.id, c.data, c.layout, {{responsive: true}}); }});
  var cols = ["lot", "entry", "entry price", "quantity", "entry reason", "exit", "exit price", "exit reason",
              "PnL", "fees"];
  function when(ms) {{ return ms === null ? "open" : new Date(ms).toISOString().slice(0, 16).replace("T", " "); }}
  document.querySelectorAll(".trips").forEach(function (box) {{
    var rows = data.trips[box.dataset.key], page = 0, per = 200;
    function draw() {{
      var html = "<table><tr>" + cols.map(function (c) {{ return "<th>" + c + "</th>"; }}).join("") + "</tr>";
      rows.slice(page * per, page * per + per).forEach(function (r) {{
        html += "<tr><td>" + [r[0], when(r[1]), r[2], r[3], r[4], when(r[5]), r[6] === null ? "" : r[6],
                r[7] || "", r[8] === null ? "" : r[8], r[9]].map(function (v) {{
                  return String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;"); }}).join("</td><td>") + "</td></tr>";
      }});
      var pages = Math.max(1, Math.ceil(rows.length / per));
      box.innerHTML = html + "</table><div class='pager'>" + rows.length + " round trips · page " + (page + 1) +
        " of " + pages + " <button data-d='-1'>previous</button><button data-d='1'>next</button></div>";
      box.querySelectorAll("button").forEach(function (b) {{
        b.onclick = function () {{ page = Math.min(pages - 1, Math.max(0, page + Number(b.dataset.d))); draw(); }};
      }});
    }}
    draw();
  }});
  document.body.dataset.rendered = "true";
}})();
</script></body></html>
"""
