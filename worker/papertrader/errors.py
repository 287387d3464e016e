"""The root of every exception papertrader raises on purpose.

Each error class derives from :class:`PapertraderError` (and keeps its standard-library base, ``ValueError`` or
``RuntimeError``, so existing ``except ValueError`` code still catches it). ``exit_code`` says what the
``papertrader`` command does when one reaches it: ``None`` (the default) lets it through as a traceback (a bug or
a failure that is not the user's to fix); a number prints ``papertrader: <message>`` on stderr as one line and
exits with it; ``keep_in_logs`` also writes that line to the worker's log files (errors.log).

The tree (module: class; indented = subclass)::

    PapertraderError
    ├── config: ConfigError (ValueError)                     exit 2
    │   └── ml.artifact: ModelError                          exit 2
    ├── strategy.registry: UnknownStrategyError (ValueError) exit 2
    ├── report.snapshot: ReportInputError (ValueError)       exit 2
    ├── market.candle_file: CandleFileError (ValueError)     exit 2, kept in the logs
    ├── ledger.store: LedgerError (RuntimeError)             exit 2, kept in the logs
    │   └── ledger.lock: StateDirBusy                        exit 2, kept in the logs
    ├── features.engine: UnknownFeatureError (ValueError)
    ├── ml.dataset: DatasetError (ValueError)                (``papertrader train`` reports these itself)
    ├── ml.train: TrainingError (ValueError)
    ├── market.gateway.settings: GatewayConfigError (ValueError)  (``papertrader market-gateway`` reports it)
    ├── market.bitvavo.parse: ParseError (ValueError)
    ├── market.bitvavo.rest: RestError (RuntimeError)
    │   └── RateLimitedError
    ├── market.bitvavo.stream: StreamError (RuntimeError)
    │   └── StaleStreamError
    ├── market.sources.bitvavo: SourceClosed
    ├── resilience.circuit_breaker: BreakerOpenError (RuntimeError)
    ├── feed.ipc: FrameError (ValueError)
    ├── observability.http: HttpError
    ├── notify.fleet.router: BadNotification (ValueError)
    ├── notify.fleet.commands: UnknownName
    └── papertrader_operator.errors: OperatorError           (the operator's own family)
        ├── kube: ApiError
        ├── reconcile: InvalidSpec
        └── control_tokens: ControlTokenError
"""

from __future__ import annotations

from typing import ClassVar


class PapertraderError(Exception):
    """Base of every papertrader error; see the module docstring for the tree and what the CLI does with each."""

    #: the ``papertrader`` command's exit status for this error (one line on stderr); None: not handled there
    exit_code: ClassVar[int | None] = None
    #: the CLI also writes the line to the worker's log files (errors.log)
    keep_in_logs: ClassVar[bool] = False
