"""Prometheus text for the gateway, rendered from :meth:`Gateway.snapshot` at scrape time."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

#: name -> (type, help, labels), as the worker's METRICS table. Counters carry their ``_total`` suffix here.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "papertrader_gateway_upstream_connections": ("gauge", "Open upstream WebSocket connections (0 or 1)", ()),
    "papertrader_gateway_upstream_connects_total": ("counter", "Upstream WebSocket connections opened", ()),
    "papertrader_gateway_rest_weight_used_total": ("counter", "Upstream REST weight spent", ()),
    "papertrader_gateway_rest_weight_remaining": ("gauge", "Upstream REST weight left in the current window", ()),
    "papertrader_gateway_rest_weight_limit": ("gauge", "Upstream REST weight budget per window", ()),
    "papertrader_gateway_rest_refused_total": ("counter", "Client requests answered 429 (budget spent, rate limit)",
                                               ()),
    "papertrader_gateway_upstream_rate_limited_total": ("counter", "429 / ban answers from the exchange", ()),
    "papertrader_gateway_coalesced_total": ("counter", "Client requests that shared an in-flight upstream one", ()),
    "papertrader_gateway_cache_hits_total": ("counter", "Requests answered from the cache, by endpoint",
                                             ("endpoint",)),
    "papertrader_gateway_cache_misses_total": ("counter", "Requests that needed the exchange, by endpoint",
                                               ("endpoint",)),
    "papertrader_gateway_clients": ("gauge", "Connected WebSocket clients", ()),
    "papertrader_gateway_slow_clients_closed_total": ("counter", "Clients closed (1013) for not reading their frames",
                                                      ()),
    "papertrader_gateway_subscriptions": ("gauge", "(market, interval) pairs subscribed upstream", ()),
    "papertrader_gateway_data_age_seconds": ("gauge", "Seconds since the last upstream update, by pair",
                                             ("market", "interval")),
    "papertrader_gateway_cached_candles": ("gauge", "Closed candles held in the cache, by pair",
                                           ("market", "interval")),
}


def exported_metric_names() -> set[str]:
    """Every metric name the gateway exports, as queried in PromQL (checked against the chart's queries)."""
    return set(METRICS)


class _Snapshot(Collector):
    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.s = snapshot

    def _family(self, name: str) -> CounterMetricFamily | GaugeMetricFamily:
        kind, help_text, labels = METRICS[name]
        if kind == "counter":
            return CounterMetricFamily(name.removesuffix("_total"), help_text, labels=labels)
        return GaugeMetricFamily(name, help_text, labels=labels)

    def collect(self) -> Any:
        s = self.s
        for name, key in (("papertrader_gateway_upstream_connections", "upstream_connected"),
                          ("papertrader_gateway_upstream_connects_total", "upstream_connects"),
                          ("papertrader_gateway_rest_weight_used_total", "weight_used"),
                          ("papertrader_gateway_rest_weight_remaining", "weight_remaining"),
                          ("papertrader_gateway_rest_weight_limit", "weight_limit"),
                          ("papertrader_gateway_rest_refused_total", "refused"),
                          ("papertrader_gateway_upstream_rate_limited_total", "upstream_rate_limited"),
                          ("papertrader_gateway_coalesced_total", "coalesced"),
                          ("papertrader_gateway_clients", "clients"),
                          ("papertrader_gateway_slow_clients_closed_total", "slow_clients_closed"),
                          ("papertrader_gateway_subscriptions", "subscriptions")):
            family = self._family(name)
            family.add_metric([], float(s[key]))
            yield family
        for name, key in (("papertrader_gateway_cache_hits_total", "hits"),
                          ("papertrader_gateway_cache_misses_total", "misses")):
            family = self._family(name)
            for endpoint, value in s[key].items():
                family.add_metric([endpoint], float(value))
            yield family
        for name, key in (("papertrader_gateway_data_age_seconds", "data_age"),
                          ("papertrader_gateway_cached_candles", "cached_candles")):
            family = self._family(name)
            for (market, interval), value in sorted(s[key].items()):
                family.add_metric([market, interval], float(value))
            yield family


def render_metrics(snapshot: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snapshot))
    return generate_latest(registry)
