#!/usr/bin/env python3
"""Generates the Grafana dashboards in ../dashboards/ (run from anywhere: python hack/gen_dashboards.py).

The JSON files are committed; tests/chart/test_dashboards.py checks that they are up to date with this
generator, valid, use the datasource variable everywhere and query only metric names that the worker and the
operator export. Edit the panels here, never the JSON by hand.

Labels the queries rely on: `symbol` (set by the worker on its metrics), `trader`, `namespace`, `pod` and
`worker_symbol` (added by the PodMonitor's relabelings from the worker pod's labels), `job`
("papertrader-worker" / "papertrader-operator" / "papertrader-market-gateway", set by the PodMonitor /
ServiceMonitors).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def newline(self) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0

    def id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False, fmt: str | None = None) -> dict:
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref, "range": not instant,
         "instant": instant}
    if fmt:
        t["format"] = fmt
    return t


def panel(lay: Layout, kind: str, title: str, targets: list[dict], w: int = 12, h: int = 8, unit: str = "short",
          description: str = "", **extra) -> dict:
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    p = {
        "id": lay.id(),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": lay.place(w, h),
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
        p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    for k, v in extra.items():
        if k == "defaults":
            p["fieldConfig"]["defaults"].update(v)
        else:
            p[k] = v
    return p


def row(lay: Layout, title: str) -> dict:
    lay.newline()
    return {"id": lay.id(), "type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": lay.place(24, 1)}


def var_datasource() -> dict:
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1, "regex": "", "includeAll": False, "multi": False, "options": []}


def var_query(name: str, label: str, query: str, multi: bool, include_all: bool) -> dict:
    v = {"name": name, "label": label, "type": "query", "datasource": DS,
         "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
         "refresh": 2, "sort": 1, "hide": 0, "regex": "", "multi": multi, "includeAll": include_all,
         "current": {}, "options": []}
    if include_all:
        v["allValue"] = ".*"
    return v


def dashboard(uid: str, title: str, description: str, panels: list[dict], variables: list[dict],
              time_from: str = "now-6h") -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["papertrader"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": "papertrader", "type": "dashboards", "tags": ["papertrader"], "asDropdown": True}],
        "templating": {"list": variables},
        "panels": panels,
    }


# Health levels from CONTRACT.md: excellent >= 90, good >= 75, fair >= 60, poor >= 40, critical below.
HEALTH_DEFAULTS = {
    "min": 0, "max": 100,
    "thresholds": {"mode": "absolute", "steps": [
        {"color": "dark-red", "value": None}, {"color": "orange", "value": 40}, {"color": "yellow", "value": 60},
        {"color": "green", "value": 75}, {"color": "dark-green", "value": 90}]},
    "mappings": [{"type": "range", "options": {"from": lo, "to": hi, "result": {"text": f"{name} (${{__value.raw}})"}}}
                 for name, lo, hi in [("critical", 0, 39.999), ("poor", 40, 59.999), ("fair", 60, 74.999),
                                      ("good", 75, 89.999), ("excellent", 90, 100)]],
    "color": {"mode": "thresholds"},
}
BREAKER_DEFAULTS = {
    "mappings": [{"type": "value", "options": {"0": {"text": "closed", "color": "green"},
                                              "1": {"text": "OPEN", "color": "red"}}}],
    "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]},
    "color": {"mode": "thresholds"},
}


def fleet() -> dict:
    sel = 'namespace=~"$namespace", trader=~"$trader"'
    lay = Layout()
    p = [
        row(lay, "Fleet"),
        panel(lay, "stat", "Traders", [target(f"count(count by (namespace, trader) (papertrader_equity{{{sel}}}))",
                                              instant=True)], w=4, h=4,
              description="PaperTraders with at least one worker reporting."),
        panel(lay, "stat", "Workers up", [target(f'sum(up{{job="papertrader-worker", {sel}}})', instant=True)],
              w=4, h=4, description="Worker pods whose /metrics answered the last scrape."),
        panel(lay, "stat", "Total equity", [target(f"sum(papertrader_equity{{{sel}}})", instant=True)], w=4, h=4,
              description="Sum of equity over all selected traders and symbols (quote currency)."),
        panel(lay, "stat", "Trades in range",
              [target(f"sum(increase(papertrader_trades_total{{{sel}}}[$__range]))", instant=True)], w=4, h=4,
              defaults={"decimals": 0}),
        panel(lay, "stat", "Open positions", [target(f"sum(papertrader_open_positions{{{sel}}})", instant=True)],
              w=4, h=4),
        panel(lay, "stat", "Open circuit breakers",
              [target(f"sum(papertrader_circuit_breaker_open{{{sel}}}) or vector(0)", instant=True)], w=4, h=4,
              defaults={"thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                                     {"color": "red", "value": 1}]}}),
        row(lay, "Equity and return"),
        panel(lay, "timeseries", "Equity per trader and symbol",
              [target(f"sum by (trader, symbol) (papertrader_equity{{{sel}}})", "{{trader}} {{symbol}}")],
              description="Mark-to-market equity of each worker (one symbol each), in quote currency."),
        panel(lay, "timeseries", "Equity per trader",
              [target(f"sum by (trader) (papertrader_equity{{{sel}}})", "{{trader}}")],
              description="Sum over the trader's symbols."),
        panel(lay, "timeseries", "Return per trader and symbol",
              [target(f"sum by (trader, symbol) (papertrader_return_pct{{{sel}}})", "{{trader}} {{symbol}}")],
              unit="percent", description="Return since start, in percent of the initial capital."),
        panel(lay, "timeseries", "Drawdown per trader and symbol",
              [target(f"max by (trader, symbol) (papertrader_drawdown_pct{{{sel}}})", "{{trader}} {{symbol}}")],
              unit="percent", description="Current drawdown from the equity peak, in percent."),
        row(lay, "Trades"),
        panel(lay, "timeseries", "Trades per trader, symbol and side",
              [target(f"sum by (trader, symbol, side) (increase(papertrader_trades_total{{{sel}}}[$__rate_interval]))",
                      "{{trader}} {{symbol}} {{side}}")],
              defaults={"custom": {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1, "stacking":
                                   {"mode": "normal", "group": "A"}}}),
        panel(lay, "table", "Trades in range",
              [target(f"sum by (trader, symbol, side) (increase(papertrader_trades_total{{{sel}}}[$__range]))",
                      instant=True, fmt="table")],
              defaults={"decimals": 0},
              transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True},
                                                              "renameByName": {"Value": "trades"}}}]),
        row(lay, "Health"),
        panel(lay, "stat", "Health level per worker",
              [target(f"max by (trader, symbol) (papertrader_health_score{{{sel}}})", "{{trader}} {{symbol}}",
                      instant=True)],
              w=24, h=6, defaults=HEALTH_DEFAULTS,
              description="Health score 0-100 and level: excellent >= 90, good >= 75, fair >= 60, poor >= 40, "
                          "critical below."),
        panel(lay, "timeseries", "Health score",
              [target(f"max by (trader, symbol) (papertrader_health_score{{{sel}}})", "{{trader}} {{symbol}}")],
              defaults={"min": 0, "max": 100}),
        panel(lay, "timeseries", "Data quality score",
              [target(f"max by (trader, symbol) (papertrader_data_quality_score{{{sel}}})", "{{trader}} {{symbol}}")],
              defaults={"min": 0, "max": 100}),
    ]
    variables = [
        var_datasource(),
        var_query("namespace", "Namespace", "label_values(papertrader_equity, namespace)", True, True),
        var_query("trader", "Trader", 'label_values(papertrader_equity{namespace=~"$namespace"}, trader)', True,
                  True),
    ]
    return dashboard("papertrader-fleet", "papertrader / Fleet overview",
                     "Equity, return, trades and health of every paper trader and symbol.", p, variables)


def symbol() -> dict:
    sel = 'namespace=~"$namespace", trader=~"$trader", symbol=~"$symbol"'
    # Breaker metrics carry no symbol label: the worker pod's papertrader.io/symbol label (lower case) is
    # relabelled into worker_symbol; (?i) makes "BTC-EUR" match "btc-eur".
    wsel = 'namespace=~"$namespace", trader=~"$trader", worker_symbol=~"(?i)$symbol"'
    lay = Layout()

    def quantiles(metric: str) -> list[dict]:
        return [target(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{sel}}}[$__rate_interval])))",
                       f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)] + [
            target(f"sum(rate({metric}_sum{{{sel}}}[$__rate_interval])) / "
                   f"sum(rate({metric}_count{{{sel}}}[$__rate_interval]))", "mean")]

    p = [
        row(lay, "Market and trades"),
        panel(lay, "stat", "Health", [target(f"max(papertrader_health_score{{{sel}}})", instant=True)], w=4, h=4,
              defaults=HEALTH_DEFAULTS),
        panel(lay, "stat", "Equity", [target(f"sum(papertrader_equity{{{sel}}})", instant=True)], w=4, h=4),
        panel(lay, "stat", "Return", [target(f"max(papertrader_return_pct{{{sel}}})", instant=True)], w=4, h=4,
              unit="percent"),
        panel(lay, "stat", "Drawdown", [target(f"max(papertrader_drawdown_pct{{{sel}}})", instant=True)], w=4, h=4,
              unit="percent"),
        panel(lay, "stat", "Open positions", [target(f"sum(papertrader_open_positions{{{sel}}})", instant=True)],
              w=4, h=4),
        panel(lay, "stat", "Last candle age",
              [target(f"time() - max(papertrader_last_candle_timestamp_seconds{{{sel}}})", instant=True)], w=4, h=4,
              unit="s", description="Seconds since the open time of the last processed candle."),
        panel(lay, "timeseries", "Price", [target(f"max by (symbol) (papertrader_price{{{sel}}})", "{{symbol}}")],
              w=24, description="Close of the last processed candle."),
        panel(lay, "timeseries", "Trades by side",
              [target(f"sum by (side) (increase(papertrader_trades_total{{{sel}}}[$__rate_interval]))", "{{side}}")],
              defaults={"custom": {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1}}),
        panel(lay, "timeseries", "Open positions",
              [target(f"sum(papertrader_open_positions{{{sel}}})", "positions")],
              defaults={"decimals": 0}),
        panel(lay, "timeseries", "Equity", [target(f"sum(papertrader_equity{{{sel}}})", "equity")]),
        panel(lay, "timeseries", "Drawdown and return",
              [target(f"max(papertrader_drawdown_pct{{{sel}}})", "drawdown"),
               target(f"max(papertrader_return_pct{{{sel}}})", "return")], unit="percent"),
        row(lay, "Latency"),
        panel(lay, "timeseries", "Tick duration (candle in to decision persisted)",
              quantiles("papertrader_tick_duration_seconds"), unit="s"),
        panel(lay, "timeseries", "Prediction duration", quantiles("papertrader_prediction_duration_seconds"),
              unit="s"),
        panel(lay, "heatmap", "Tick duration distribution",
              [target(f"sum by (le) (increase(papertrader_tick_duration_seconds_bucket{{{sel}}}[$__rate_interval]))",
                      "{{le}}", fmt="heatmap")], w=24,
              options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1,
                       "color": {"mode": "scheme", "scheme": "Oranges"}}),
        row(lay, "Data and reliability"),
        panel(lay, "stat", "Ready (/readyz)", [target(f"min(papertrader_ready{{{sel}}})", instant=True)], w=8, h=4,
              defaults={"mappings": [{"type": "value", "options": {"0": {"text": "NOT READY", "color": "red"},
                                                                    "1": {"text": "ready", "color": "green"}}}],
                        "color": {"mode": "thresholds"}}),
        panel(lay, "stat", "Market data source", [target(f"min(papertrader_source_connected{{{sel}}})",
                                                         instant=True)], w=8, h=4,
              defaults={"mappings": [{"type": "value", "options": {"0": {"text": "disconnected", "color": "red"},
                                                                    "1": {"text": "connected", "color": "green"}}}],
                        "color": {"mode": "thresholds"}}),
        panel(lay, "stat", "New entries", [target(f"max(papertrader_entries_halted{{{sel}}})", instant=True)],
              w=8, h=4,
              defaults={"mappings": [{"type": "value", "options": {"0": {"text": "allowed", "color": "green"},
                                                                    "1": {"text": "HALTED", "color": "orange"}}}],
                        "color": {"mode": "thresholds"}}),
        panel(lay, "timeseries", "Data quality score",
              [target(f"max(papertrader_data_quality_score{{{sel}}})", "quality")], defaults={"min": 0, "max": 100}),
        panel(lay, "timeseries", "Candles processed and rejected per minute",
              [target(f"sum(rate(papertrader_candles_processed_total{{{sel}}}[$__rate_interval])) * 60", "processed"),
               target(f"sum by (reason) (rate(papertrader_rejected_candles_total{{{sel}}}[$__rate_interval])) * 60",
                      "rejected {{reason}}")]),
        panel(lay, "stat", "Circuit breakers",
              [target(f"max by (breaker) (papertrader_circuit_breaker_open{{{wsel}}})", "{{breaker}}",
                      instant=True)], defaults=BREAKER_DEFAULTS),
        panel(lay, "timeseries", "Circuit breakers open",
              [target(f"max by (breaker) (papertrader_circuit_breaker_open{{{wsel}}})", "{{breaker}}")],
              defaults={"min": 0, "max": 1, "custom": {"drawStyle": "line", "lineInterpolation": "stepAfter",
                                                       "fillOpacity": 30, "lineWidth": 1}}),
        panel(lay, "timeseries", "Health score", [target(f"max(papertrader_health_score{{{sel}}})", "score")],
              defaults={"min": 0, "max": 100}),
        panel(lay, "timeseries", "Model age", [target(f"max(papertrader_model_age_seconds{{{sel}}})", "age")],
              unit="s", description="Age of the loaded model (empty for strategies without a model)."),
        panel(lay, "timeseries", "Notifications dropped",
              [target(f"sum by (category) (increase(papertrader_notifications_dropped_total{{{wsel}}}"
                      f"[$__rate_interval]))", "{{category}}")], w=24,
              description="Notifications dropped by rate limits or delivery failures."),
    ]
    variables = [
        var_datasource(),
        var_query("namespace", "Namespace", "label_values(papertrader_equity, namespace)", False, False),
        var_query("trader", "Trader", 'label_values(papertrader_equity{namespace=~"$namespace"}, trader)', False,
                  False),
        var_query("symbol", "Symbol",
                  'label_values(papertrader_equity{namespace=~"$namespace", trader=~"$trader"}, symbol)', False,
                  False),
    ]
    return dashboard("papertrader-symbol", "papertrader / Symbol",
                     "One worker in depth: price, trades, position, drawdown, latency, data quality, breakers.",
                     p, variables)


def market_gateway_panels(lay: Layout) -> list[dict]:
    """The market gateway's row of the operator dashboard: upstream link, REST budget, cache, clients, data age."""
    sel = 'job="papertrader-market-gateway", namespace=~"$namespace"'
    return [
        row(lay, "Market gateway"),
        panel(lay, "stat", "Upstream connections", [target(f"sum(papertrader_gateway_upstream_connections{{{sel}}})",
                                                           instant=True)], w=4, h=4,
              description="Open WebSocket connections to the exchange: one per gateway replica, whatever the fleet."),
        panel(lay, "stat", "Worker connections", [target(f"sum(papertrader_gateway_clients{{{sel}}})", instant=True)],
              w=4, h=4),
        panel(lay, "stat", "Subscribed pairs", [target(f"sum(papertrader_gateway_subscriptions{{{sel}}})",
                                                       instant=True)], w=4, h=4),
        panel(lay, "stat", "REST budget left",
              [target(f"min(papertrader_gateway_rest_weight_remaining{{{sel}}} / "
                      f"papertrader_gateway_rest_weight_limit{{{sel}}})", instant=True)], w=4, h=4,
              unit="percentunit",
              defaults={"thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                                     {"color": "orange", "value": 0.1},
                                                                     {"color": "green", "value": 0.3}]}}),
        panel(lay, "stat", "Refused in range",
              [target(f"sum(increase(papertrader_gateway_rest_refused_total{{{sel}}}[$__range]))", instant=True)],
              w=4, h=4, defaults={"decimals": 0},
              description="Worker requests answered 429: budget spent or the exchange rate-limiting the gateway."),
        panel(lay, "stat", "Oldest pair data", [target(f"max(papertrader_gateway_data_age_seconds{{{sel}}})",
                                                       instant=True)], w=4, h=4, unit="s"),
        panel(lay, "timeseries", "Upstream REST weight per minute vs budget",
              [target(f"sum by (pod) (rate(papertrader_gateway_rest_weight_used_total{{{sel}}}[$__rate_interval]))"
                      " * 60", "used {{pod}}"),
               target(f"sum by (pod) (papertrader_gateway_rest_weight_limit{{{sel}}})", "budget {{pod}}")],
              description="Weight spent at the exchange (Bitvavo allows 1,000 a minute per IP) and the budget."),
        panel(lay, "timeseries", "Refused and rate-limited per minute",
              [target(f"sum by (pod) (rate(papertrader_gateway_rest_refused_total{{{sel}}}[$__rate_interval])) * 60",
                      "refused {{pod}}"),
               target(f"sum by (pod) (rate(papertrader_gateway_upstream_rate_limited_total{{{sel}}}"
                      "[$__rate_interval])) * 60", "exchange 429/ban {{pod}}")]),
        panel(lay, "timeseries", "Cache hit ratio by endpoint",
              [target(f"sum by (endpoint) (rate(papertrader_gateway_cache_hits_total{{{sel}}}[$__rate_interval]))"
                      f" / (sum by (endpoint) (rate(papertrader_gateway_cache_hits_total{{{sel}}}[$__rate_interval]))"
                      f" + sum by (endpoint) (rate(papertrader_gateway_cache_misses_total{{{sel}}}"
                      "[$__rate_interval])))", "{{endpoint}}")], unit="percentunit",
              description="Warm-ups and restart backfills served without asking the exchange."),
        panel(lay, "timeseries", "Data age by pair",
              [target(f"max by (market, interval) (papertrader_gateway_data_age_seconds{{{sel}}})",
                      "{{market}} {{interval}}")], unit="s"),
    ]


def operator() -> dict:
    sel = 'job="papertrader-operator", namespace=~"$namespace"'
    lay = Layout()
    p = [
        row(lay, "Operator"),
        panel(lay, "stat", "Operator up", [target(f"sum(up{{{sel}}})", instant=True)], w=4, h=4,
              defaults={"thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                                     {"color": "green", "value": 1}]}}),
        panel(lay, "stat", "PaperTraders", [target(f"sum(papertrader_operator_traders{{{sel}}})", instant=True)],
              w=4, h=4),
        panel(lay, "stat", "Workers desired",
              [target(f"sum(papertrader_operator_workers_desired{{{sel}}})", instant=True)], w=4, h=4),
        panel(lay, "stat", "Workers ready",
              [target(f"sum(papertrader_operator_workers_ready{{{sel}}})", instant=True)], w=4, h=4),
        panel(lay, "stat", "Traders halted by portfolio risk",
              [target(f"sum(papertrader_operator_risk_halted_traders{{{sel}}})", instant=True)], w=4, h=4,
              defaults={"thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                                     {"color": "orange", "value": 1}]}}),
        panel(lay, "stat", "Errors in range",
              [target(f"sum(increase(papertrader_operator_errors_total{{{sel}}}[$__range]))", instant=True)],
              w=4, h=4, defaults={"decimals": 0}),
        panel(lay, "timeseries", "Reconciles per minute by result",
              [target(f"sum by (result) (rate(papertrader_operator_reconcile_total{{{sel}}}[$__rate_interval])) * 60",
                      "{{result}}")]),
        panel(lay, "timeseries", "Reconcile duration",
              [target(f"histogram_quantile({q}, sum by (le) (rate("
                      f"papertrader_operator_reconcile_duration_seconds_bucket{{{sel}}}[$__rate_interval])))",
                      f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], unit="s"),
        panel(lay, "timeseries", "Errors per minute by kind",
              [target(f"sum by (kind) (rate(papertrader_operator_errors_total{{{sel}}}[$__rate_interval])) * 60",
                      "{{kind}}")]),
        panel(lay, "timeseries", "Traders and workers",
              [target(f"sum(papertrader_operator_traders{{{sel}}})", "traders"),
               target(f"sum(papertrader_operator_workers_desired{{{sel}}})", "workers desired"),
               target(f"sum(papertrader_operator_workers_ready{{{sel}}})", "workers ready")],
              defaults={"decimals": 0}),
        panel(lay, "timeseries", "Child objects changed per minute",
              [target(f"sum by (kind, action) (rate(papertrader_operator_child_changes_total{{{sel}}}"
                      f"[$__rate_interval])) * 60", "{{action}} {{kind}}")],
              description="StatefulSets, Services and ConfigMaps created, patched or deleted."),
        panel(lay, "timeseries", "Worker /health polls per minute by result",
              [target(f"sum by (result) (rate(papertrader_operator_health_polls_total{{{sel}}}[$__rate_interval]))"
                      " * 60", "{{result}}")]),
        panel(lay, "stat", "Last resync", [target(f"time() - max(papertrader_operator_last_resync_timestamp_seconds"
                                                  f"{{{sel}}})", instant=True)], w=24, h=4, unit="s",
              description="Seconds since the operator's periodic resync pass last ended."),
        *market_gateway_panels(lay),
        *notifier_panels(lay),
    ]
    variables = [
        var_datasource(),
        var_query("namespace", "Namespace", 'label_values(up{job="papertrader-operator"}, namespace)', True, True),
    ]
    return dashboard("papertrader-operator", "papertrader / Operator",
                     "The papertrader operator: reconciles, their duration and errors, traders and workers; "
                     "the market gateway: upstream link, REST budget, cache and data age.",
                     p, variables)


def notifier_panels(lay: Layout) -> list[dict]:
    """The fleet notifier (`papertrader notifier`, chart value notifier.enabled): the one Telegram bot."""
    sel = 'job="papertrader-notifier", namespace=~"$namespace"'
    return [
        row(lay, "Fleet notifier (Telegram)"),
        panel(lay, "timeseries", "Notifications per minute: received from workers, sent to Telegram",
              [target(f"sum by (category) (rate(papertrader_notifier_received_total{{{sel}}}[$__rate_interval]))"
                      " * 60", "received {{category}}"),
               target(f"sum by (category) (rate(papertrader_notifier_sent_total{{{sel}}}[$__rate_interval])) * 60",
                      "sent {{category}}", ref="B")],
              description="Every worker's notifications arrive here; the fleet's hourly limits, aggregation and "
                          "Telegram's per-chat rate decide what is sent."),
        panel(lay, "timeseries", "Dropped per minute by reason, 429s",
              [target(f"sum by (reason) (rate(papertrader_notifier_dropped_total{{{sel}}}[$__rate_interval])) * 60",
                      "{{reason}}"),
               target(f"sum(rate(papertrader_notifier_rate_limited_total{{{sel}}}[$__rate_interval])) * 60",
                      "429 from Telegram", ref="B")],
              description="hourly_limit: over the fleet's or a trader's limit (critical messages never are); "
                          "queue_full / evicted: the queue was full; send_failed: Telegram refused or was down."),
        panel(lay, "stat", "Queued", [target(f"sum(papertrader_notifier_queued{{{sel}}})", instant=True)],
              w=8, h=4, defaults={"decimals": 0}),
        panel(lay, "timeseries", "Chat commands per minute",
              [target(f"sum by (command, result) (rate(papertrader_notifier_commands_total{{{sel}}}"
                      f"[$__rate_interval])) * 60", "/{{command}} {{result}}")], w=16, h=4),
    ]


DASHBOARDS = {"papertrader-fleet.json": fleet, "papertrader-symbol.json": symbol,
              "papertrader-operator.json": operator}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=False) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
