"""Observability: Prometheus metrics, health and probes, HTTP control, tracing, performance reports."""

from papertrader.observability.metrics import exported_metric_names, observe_exchange_request

__all__ = ["exported_metric_names", "observe_exchange_request"]
