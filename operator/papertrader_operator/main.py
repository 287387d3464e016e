"""`papertrader operator` / `python -m papertrader_operator`: parse flags, then run kopf standalone.

`python -m papertrader_operator crd` prints the CustomResourceDefinition instead.
"""

from __future__ import annotations

import argparse
import sys

from papertrader_operator import settings as s

HANDLERS_MODULE = "papertrader_operator.handlers"


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


def kopf_argv(args: argparse.Namespace) -> list[str]:
    """The `kopf run` arguments for parsed operator flags."""
    argv = ["run", "--standalone", "-m", HANDLERS_MODULE, "--log-format", args.log_format]
    if args.namespace:
        for namespace in args.namespace:
            argv += ["-n", namespace]
    else:
        argv.append("-A")
    if args.verbose:
        argv.append("--verbose")
    return argv


def config_from_args(args: argparse.Namespace) -> s.OperatorConfig:
    return s.OperatorConfig(
        worker_image=args.worker_image, worker_url_template=args.worker_url_template,
        resync_interval=args.resync_interval, health_timeout=args.health_timeout,
        http_host=args.http_host, http_port=args.http_port,
        max_concurrent_reconciles=args.max_concurrent_reconciles, namespaces=tuple(args.namespace),
        market_gateway_url=args.market_gateway_url, notifier_url=args.notifier_url)


def run_operator(argv: list[str] | None = None) -> int:
    """Run the operator until it is signalled to stop; returns the exit status."""
    if argv and argv[0] == "crd":
        from papertrader_operator.crd import crd_yaml

        sys.stdout.write(crd_yaml())
        return 0
    args = build_parser().parse_args(argv)
    s.configure(config_from_args(args))
    import kopf.cli  # deferred: importing kopf is not needed for --help or crd

    try:
        kopf.cli.main.main(args=kopf_argv(args), prog_name="papertrader operator", standalone_mode=False)
    except KeyboardInterrupt:
        return 130
    return 0


def main() -> None:
    sys.exit(run_operator(sys.argv[1:]))
