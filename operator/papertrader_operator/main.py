"""`papertrader operator` / `python -m papertrader_operator`: parse flags, compose the operator, run kopf from code.

This is the composition root: it builds every part of the runtime and hands each its collaborators by keyword,
registers the kopf handlers into a registry of its own and runs `kopf.operator` with it and with explicit
settings (standalone: one replica, no peering). `python -m papertrader_operator crd` prints the CRD instead.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import threading

import kopf

from papertrader_operator import settings as s
from papertrader_operator.cache import ChildCache, PodCache, TraderCache
from papertrader_operator.control_tokens import ControlTokens
from papertrader_operator.converge import ChildConverger
from papertrader_operator.crd import crd_yaml
from papertrader_operator.events import EventPoster
from papertrader_operator.halts import EntriesHalt, PortfolioRiskLatch, WorkerControl
from papertrader_operator.handlers import RETRY_DELAYS, Credentials, register
from papertrader_operator.health_client import HealthClient, WorkerUrls
from papertrader_operator.kube import KubeClient
from papertrader_operator.metrics import OperatorHttp, OperatorMetrics
from papertrader_operator.observe import WorkerObserver
from papertrader_operator.reconcile import Reconciler, WorkerDefaults
from papertrader_operator.runtime import Runtime
from papertrader_operator.status_writer import StatusWriter

Flag = threading.Event | asyncio.Event  # kopf's stop and ready flags (a thread's or the loop's)
LOG_FORMATS = {"json": kopf.LogFormat.JSON, "plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL}


def build_parser() -> argparse.ArgumentParser:
    env = s.OperatorConfig.from_env()
    parser = argparse.ArgumentParser(
        prog="papertrader operator",
        description="Run the PaperTrader operator (kopf, one replica, --standalone) against the current kube "
                    "context or the in-cluster service account.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable; globs allowed); default: all namespaces")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("--worker-image", default=env.worker_image,
                        help="default worker image [PAPERTRADER_WORKER_IMAGE] (default: %(default)s)")
    parser.add_argument("--worker-url-template", default=env.worker_url_template,
                        help="worker base URL; {name} {namespace} {trader} {symbol} are filled in "
                             "[PAPERTRADER_WORKER_URL_TEMPLATE] (default: %(default)s)")
    parser.add_argument("--resync-interval", type=float, default=env.resync_interval,
                        help="seconds between status/health/drift passes per PaperTrader "
                             "[PAPERTRADER_RESYNC_INTERVAL] (default: %(default)s)")
    parser.add_argument("--health-timeout", type=float, default=env.health_timeout,
                        help="timeout of one worker /health call [PAPERTRADER_HEALTH_TIMEOUT] (default: %(default)s)")
    parser.add_argument("--http-host", default=env.http_host,
                        help="bind address of /healthz and /metrics [PAPERTRADER_OPERATOR_HOST]")
    parser.add_argument("--http-port", type=int, default=env.http_port,
                        help="port of /healthz and /metrics, 0 = any [PAPERTRADER_OPERATOR_PORT] "
                             "(default: %(default)s)")
    parser.add_argument("--max-concurrent-reconciles", type=int, default=env.max_concurrent_reconciles,
                        help="background reconciles at once [PAPERTRADER_MAX_CONCURRENT_RECONCILES]")
    parser.add_argument("--market-gateway-url", default=env.market_gateway_url,
                        help="http://host:port of the market gateway; bitvavo workers get BITVAVO_REST_URL / "
                             "BITVAVO_WS_URL pointing at it unless extraConfig sets them "
                             "[PAPERTRADER_MARKET_GATEWAY_URL] (default: none, workers connect directly)")
    parser.add_argument("--notifier-url", default=env.notifier_url,
                        help="http://host:port of the fleet notifier; workers of a PaperTrader with spec.telegram get "
                             "NOTIFIER_URL instead of the bot token [PAPERTRADER_NOTIFIER_URL] (default: none, they "
                             "get the token)")
    parser.add_argument("--log-format", choices=["json", "plain", "full"], default="json",
                        help="kopf log format (default: %(default)s, one JSON object per line)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


@dataclasses.dataclass(frozen=True)
class KopfOptions:
    """How kopf runs: always standalone (one replica, no peering), over `namespaces` or cluster-wide."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    log_format: str = "json"
    verbose: bool = False
    standalone: bool = True

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def kopf_options(args: argparse.Namespace) -> KopfOptions:
    """The kopf run options for parsed operator flags."""
    return KopfOptions(namespaces=tuple(args.namespace), log_format=args.log_format, verbose=args.verbose)


def config_from_args(args: argparse.Namespace) -> s.OperatorConfig:
    return s.OperatorConfig(
        worker_image=args.worker_image, worker_url_template=args.worker_url_template,
        resync_interval=args.resync_interval, health_timeout=args.health_timeout,
        http_host=args.http_host, http_port=args.http_port,
        max_concurrent_reconciles=args.max_concurrent_reconciles, namespaces=tuple(args.namespace),
        market_gateway_url=args.market_gateway_url, notifier_url=args.notifier_url)


def kopf_settings() -> kopf.OperatorSettings:
    """kopf's storage branded papertrader.io, its timeouts and retry backoff."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = f"{s.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=s.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=s.GROUP, key="last-handled-configuration")
    settings.posting.level = logging.INFO
    settings.watching.connect_timeout = 30
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.queueing.error_delays = RETRY_DELAYS
    return settings


def build_runtime(config: s.OperatorConfig, kube: KubeClient, metrics: OperatorMetrics) -> Runtime:
    """Every part of the running operator, each handed what it needs."""
    traders, children, pods = TraderCache(), ChildCache(), PodCache()
    health = HealthClient(config.health_timeout, metrics)
    urls = WorkerUrls(config.worker_url_template)
    tokens = ControlTokens(kube)
    events = EventPoster(kube)
    control = WorkerControl(health, tokens, urls)
    converger = ChildConverger(kube, children, config.namespaces, metrics)
    observer = WorkerObserver(health, urls, children, pods)
    statuses = StatusWriter(kube)
    reconciler = Reconciler(
        defaults=WorkerDefaults(image=config.worker_image, gateway_url=config.market_gateway_url,
                                notifier_url=config.notifier_url),
        converger=converger, observer=observer, statuses=statuses,
        risk_latch=PortfolioRiskLatch(control, events), entries_halt=EntriesHalt(control),
        tokens=tokens, events=events, metrics=metrics)
    http = OperatorHttp(config.http_host, config.http_port, stale_after=max(60.0, 4 * config.resync_interval),
                        metrics=metrics)
    return Runtime(kube=kube, health=health, http=http, traders=traders, children=children, pods=pods,
                   converger=converger, observer=observer, statuses=statuses, tokens=tokens, reconciler=reconciler,
                   resync_interval=config.resync_interval,
                   max_concurrent_reconciles=config.max_concurrent_reconciles, metrics=metrics)


class Operator:
    """The composed operator: a runtime, the kopf registry feeding it, and kopf's settings."""

    def __init__(self, config: s.OperatorConfig) -> None:
        credentials = Credentials()
        metrics = OperatorMetrics()
        self._runtime = build_runtime(config, KubeClient(credentials.connection, metrics=metrics), metrics)
        self._registry = kopf.OperatorRegistry()
        register(self._registry, runtime=self._runtime, credentials=credentials,
                 started_message=f"papertrader operator started: image={config.worker_image}, worker url="
                                 f"{config.worker_url_template}, resync every {config.resync_interval:.0f}s")

    @property
    def http_port(self) -> int:
        """The port of /healthz, /readyz and /metrics (once started)."""
        return self._runtime.http_port

    async def run(self, options: KopfOptions, *, stop_flag: Flag | None = None,
                  ready_flag: Flag | None = None) -> None:
        """Run kopf until `stop_flag` is set or the process is signalled."""
        await kopf.operator(registry=self._registry, settings=kopf_settings(), standalone=options.standalone,
                            clusterwide=options.clusterwide, namespaces=options.namespaces,
                            stop_flag=stop_flag, ready_flag=ready_flag)


def configure_logging(options: KopfOptions) -> None:
    """kopf's logging as its command line sets it up (`--log-format`, `--verbose`)."""
    kopf.configure(verbose=options.verbose, log_format=LOG_FORMATS[options.log_format], log_prefix=None)


def run_operator(argv: list[str] | None = None) -> int:
    """Run the operator until it is signalled to stop; returns the exit status."""
    if argv and argv[0] == "crd":
        sys.stdout.write(crd_yaml())
        return 0
    args = build_parser().parse_args(argv)
    options = kopf_options(args)
    configure_logging(options)
    try:
        asyncio.run(Operator(config_from_args(args)).run(options))
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:
        pass  # kopf.run does the same: a cancelled operator stopped as asked
    return 0


def main() -> None:
    sys.exit(run_operator(sys.argv[1:]))
