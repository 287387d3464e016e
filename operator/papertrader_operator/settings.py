"""Names shared by every module, and the operator's runtime configuration (flags and environment)."""

from __future__ import annotations

import dataclasses
import enum
import os

GROUP = "papertrader.io"
VERSION = "v1alpha1"
PLURAL = "papertraders"
KIND = "PaperTrader"
API_VERSION = f"{GROUP}/{VERSION}"

WORKER_APP = "papertrader-worker"
MANAGED_BY = "papertrader-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_SYMBOL = f"{GROUP}/symbol"
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
#: set on a PaperTrader (value: the reason) to stop new entries on all of its workers; removed: they resume. The
#: fleet notifier's /pause and /resume set and remove it; `kubectl annotate` does the same.
ANNOTATION_HALT_ENTRIES = f"{GROUP}/halt-entries"


class HaltScope(enum.StrEnum):
    """The kinds of worker halt the operator sets and lifts (`POST /control/halt` `scope`); a worker's own halts,
    such as its drawdown halt, are never touched."""

    TRADER = "trader"  # kept in line with the papertrader.io/halt-entries annotation
    PORTFOLIO = "portfolio"  # the portfolio drawdown latch (risk.py)


HTTP_PORT = 8766
WS_PORT = 8765
STATE_DIR = "/var/lib/papertrader"
CONFIG_DIR = "/etc/papertrader"
CONFIG_FILE = "config.yaml"
MODEL_DIR = "/models"
CONTROL_DIR = "/var/run/secrets/papertrader/control"  # the trader's control credential, mounted read-only
CONTROL_SECRET_KEY = "token"
WORKER_UID = 10001

DEFAULT_IMAGE = "ghcr.io/papertrader/papertrader:0.1.0"
DEFAULT_WORKER_URL_TEMPLATE = "http://{name}.{namespace}.svc:8766"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Runtime knobs; each has a flag in `papertrader operator` and a `PAPERTRADER_*` environment twin."""

    worker_image: str = DEFAULT_IMAGE
    worker_url_template: str = DEFAULT_WORKER_URL_TEMPLATE
    resync_interval: float = 10.0
    health_timeout: float = 2.0
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    max_concurrent_reconciles: int = 20
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    market_gateway_url: str = ""  # http://host:port of `papertrader market-gateway`; empty: workers go direct
    notifier_url: str = ""  # http://host:port of `papertrader notifier`; empty: spec.telegram workers get the token

    @classmethod
    def from_env(cls) -> OperatorConfig:
        """Read the `PAPERTRADER_*` environment variables, falling back to the defaults."""
        env = os.environ
        return cls(
            worker_image=env.get("PAPERTRADER_WORKER_IMAGE") or DEFAULT_IMAGE,
            worker_url_template=env.get("PAPERTRADER_WORKER_URL_TEMPLATE") or DEFAULT_WORKER_URL_TEMPLATE,
            resync_interval=_env_float("PAPERTRADER_RESYNC_INTERVAL", cls.resync_interval),
            health_timeout=_env_float("PAPERTRADER_HEALTH_TIMEOUT", cls.health_timeout),
            http_host=env.get("PAPERTRADER_OPERATOR_HOST") or cls.http_host,
            http_port=int(_env_float("PAPERTRADER_OPERATOR_PORT", cls.http_port)),
            max_concurrent_reconciles=int(_env_float("PAPERTRADER_MAX_CONCURRENT_RECONCILES", 20)),
            market_gateway_url=env.get("PAPERTRADER_MARKET_GATEWAY_URL", ""),
            notifier_url=env.get("PAPERTRADER_NOTIFIER_URL", ""),
        )
