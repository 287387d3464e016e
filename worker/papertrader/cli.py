"""The ``papertrader`` command line.

Verbs: ``run`` (one worker), ``report`` (an HTML page of one or more state directories), ``train`` (fit a
model), ``operator`` (the kopf operator), ``config show`` (the effective configuration, secrets masked) and
``fake-exchange`` (a local Bitvavo look-alike for demos and tests).
Configuration problems exit 2 with one line on stderr (``exit_code`` of the error, see papertrader/errors.py).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from papertrader.config import Settings
    from papertrader.engine.runner import WorkerRunner
    from papertrader.market.sources.base import CandleSource
    from papertrader.observability.wiring import Observability
    from papertrader.strategy.base import Strategy

#: flag -> setting name; every flag also has an environment twin (the setting's upper-case name).
RUN_FLAGS: dict[str, str] = {
    "--symbol": "symbol",
    "--source": "source",
    "--replay-file": "replay_file",
    "--speed": "speed",
    "--max-candles": "max_candles",
    "--state-dir": "state_dir",
    "--strategy": "strategy",
    "--model": "model",
    "--seed": "seed",
    "--record": "record",
    "--interval": "candle_interval",
    "--warmup-candles": "warmup_candles",
    "--http-port": "http_port",
    "--ws-port": "ws_port",
    "--log-level": "log_level",
}


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for flag, name in RUN_FLAGS.items():
        parser.add_argument(flag, dest=name, default=None, help=f"(env {name.upper()})")
    parser.add_argument("--reset-state", dest="reset_state", action="store_const", const=True, default=None,
                        help="archive a state directory made with other settings or input and start afresh "
                             "(env RESET_STATE)")
    parser.add_argument("--config", default=os.environ.get("CONFIG_FILE"),
                        help="YAML file of SETTING: value (env CONFIG_FILE)")
    parser.add_argument("--env-file", default=os.environ.get("ENV_FILE"), help=".env file (env ENV_FILE)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="papertrader", description="Kubernetes-native crypto paper trading.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="run one worker (one symbol)")
    _add_settings_flags(run)
    config = verbs.add_parser("config", help="configuration tools")
    config_verbs = config.add_subparsers(dest="config_verb", required=True)
    show = config_verbs.add_parser("show", help="print the effective configuration (secrets masked)")
    _add_settings_flags(show)
    report = verbs.add_parser("report", help="an HTML report (charts, trades, figures) of state directories")
    report.add_argument("state_dirs", nargs="+", metavar="STATE_DIR",
                        help="a worker's --state-dir (several: one page comparing them)")
    report.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    report.add_argument("--open", action="store_true", help="open the page in the default browser")
    for verb, help_text in (("train", "fit and save a model from candle files"),
                            ("operator", "run the kopf operator against the current kube context"),
                            ("fake-exchange", "serve a candle file as a local fake Bitvavo API"),
                            ("market-gateway", "one Bitvavo market-data connection for the whole fleet"),
                            ("notifier", "one Telegram bot for the whole fleet (the only holder of the token)")):
        sub = verbs.add_parser(verb, help=help_text, add_help=False)
        sub.add_argument("args", nargs=argparse.REMAINDER)
    return parser


#: OSErrors that mean "the state directory's storage failed" (one line, exit 2, instead of a traceback)
_STORAGE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}


def _settings_from(args: argparse.Namespace) -> Any:
    from papertrader.config import load_settings

    flags = {name: getattr(args, name) for name in (*RUN_FLAGS.values(), "reset_state")}
    return load_settings(flags, config_file=args.config, env_file=args.env_file)


def build_worker(settings: Settings, *, source: CandleSource | None = None, strategy: Strategy | None = None,
                 console_logs: bool = True, tracing_exporter: Any = None) -> tuple[WorkerRunner, Observability]:
    """The worker of ``papertrader run``: the runner (ledger, source, strategy, engine) and its observability and
    control surfaces, wired explicitly. ``source`` and ``strategy`` replace the configured ones (tests);
    ``tracing_exporter`` turns tracing on with that exporter (tests). The runner owns the state directory from here:
    ``runner.run()`` (or ``runner.close()``) releases it."""
    from papertrader.engine.runner import WorkerRunner, build_breakers
    from papertrader.observability.metrics import observe_exchange_request
    from papertrader.observability.wiring import Observability

    breakers = build_breakers(settings.breakers)
    runner = WorkerRunner(settings, source=source, console_logs=console_logs, strategy=strategy, breakers=breakers,
                          on_request=observe_exchange_request)
    try:
        settings = runner.settings  # completed (a replay file's symbol and interval)
        observability = Observability(settings, view=runner, control=runner, ledger=runner.store, breakers=breakers,
                                      trace_engine=runner.engine,
                                      live_or_paced=runner.source.live or settings.speed_factor is not None,
                                      tracing_exporter=tracing_exporter)
        for listener in observability.engine_listeners():
            runner.add_listener(listener)
        runner.add_service(observability)
    except BaseException:
        runner.close()
        raise
    return runner, observability


def _run(args: argparse.Namespace) -> int:
    import sqlite3

    from papertrader.engine.runner import format_summary, summary_path
    from papertrader.ledger.store import LedgerError
    from papertrader.quality import REJECTED_SHARE_WARNING

    settings = _settings_from(args)
    try:
        runner, _ = build_worker(settings)
        summary = asyncio.run(runner.run())
        summary_path(settings.state_dir).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    except sqlite3.DatabaseError as exc:  # garbage pages, a truncated file, storage failing at the last commit
        raise LedgerError(f"{settings.state_dir / 'state.db'}: the ledger is damaged or cannot be written ({exc}); "
                          "restore it from a backup, free disk space, or use another --state-dir") from None
    except OSError as exc:  # the state directory turned read-only or full under the worker
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        where = exc.filename or settings.state_dir
        raise LedgerError(f"{where}: {exc.strerror or exc}; the state directory must be writable and have free "
                          "space") from None
    print(format_summary(summary, settings.state_dir), flush=True)
    if summary["candles"] == 0 and summary["rejected_candles"] > 0 and settings.source == "replay":
        print(f"papertrader run: every candle was rejected: {summary['rejection_note']}", file=sys.stderr, flush=True)
        return 2
    rejected, total = summary["rejected_candles"], summary["rejected_candles"] + summary["candles"]
    if total and rejected / total > REJECTED_SHARE_WARNING:
        print(f"papertrader run: {summary['rejection_note']} (see the 'candle rejected' log lines)", file=sys.stderr,
              flush=True)
    return 0


def _report(args: argparse.Namespace) -> int:
    import webbrowser
    from pathlib import Path

    from papertrader.report import build_report

    out = build_report([Path(d) for d in args.state_dirs], Path(args.out))
    print(f"report written to {out} ({out.stat().st_size / 1e6:.1f} MB)")
    if args.open:
        webbrowser.open(out.resolve().as_uri())
    return 0


def _config_show(args: argparse.Namespace) -> int:
    import yaml

    settings = _settings_from(args)
    print(yaml.safe_dump(settings.masked(), sort_keys=True), end="")
    return 0


_DELEGATES: dict[str, str] = {
    "train": "papertrader.ml.train_cli:main",
    "operator": "papertrader_operator.main:run_operator",
    "fake-exchange": "papertrader.market.fake_exchange:main",
    "market-gateway": "papertrader.market.gateway.main:main",
    "notifier": "papertrader.notify.fleet.server:main",
}


def _delegate(verb: str, argv: list[str]) -> int:
    module_name, function = _DELEGATES[verb].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"papertrader {verb}: not available in this installation ({exc})", file=sys.stderr)
        return 1
    return int(getattr(module, function)(argv) or 0)


def _stop_during_startup(signum: int, _frame: Any) -> None:
    """SIGTERM before the worker's own handlers exist: leave at once (nothing is committed half-way)."""
    raise SystemExit(128 + signum)


def _log_to_files(message: str) -> None:
    """An ERROR record for the worker's log files only (the console handler, or Python's last-resort handler when
    logging is not set up yet, would print it to stderr a second time)."""
    logger = logging.getLogger("papertrader")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``papertrader`` console script."""
    # First thing: as PID 1 (a container without an init) the kernel ignores SIGTERM unless a handler exists, so
    # without this a pod being deleted during start-up (imports, warm-up download) waits for SIGKILL.
    signal.signal(signal.SIGTERM, _stop_during_startup)
    from papertrader.errors import PapertraderError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATES:  # argparse's REMAINDER cannot pass through leading --options
        return _delegate(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "run":
            return _run(args)
        if args.verb == "config":
            return _config_show(args)
        if args.verb == "report":
            return _report(args)
        return _delegate(args.verb, args.args)
    except PapertraderError as exc:  # the one place errors become exit codes: each class says its own
        if exc.exit_code is None:
            raise
        if exc.keep_in_logs:
            _log_to_files(str(exc))  # errors.log keeps it; stderr gets the one line below, not a second copy
        print(f"papertrader: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
