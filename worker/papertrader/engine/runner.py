"""``papertrader run``: owns source, engine and ledger, runs the services it is given, and drives the loop.

The runner knows no service: ``papertrader.cli.build_worker`` composes it with the observability layer, which
reads the worker through :meth:`WorkerRunner.facts` (:class:`~papertrader.engine.facts.WorkerView`) and halts or
resumes it through :class:`~papertrader.engine.facts.WorkerControl`.

The loop asks the source for batches, runs every item through the engine, and commits. At ``--speed max`` a
batch is COMMIT_EVERY_CANDLES items (or fewer, to stop exactly at ``--max-candles``); paced and live runs commit
after every batch. ``--max-candles`` counts items consumed since the state directory was created, so a run that
is killed and restarted with the same arguments stops at the same candle as one that never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import shlex
import signal
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from papertrader.aio import cancel_and_wait
from papertrader.config import Settings
from papertrader.config_groups import BreakerSettings
from papertrader.engine.facts import ModelFacts, WorkerFacts
from papertrader.engine.pipeline import Engine
from papertrader.events import EngineListener
from papertrader.ledger.csv_logs import CsvLog
from papertrader.ledger.fingerprint import archive_state, fingerprint_mismatch, results_fingerprint
from papertrader.ledger.lock import LOCK_NAME, StateDirLock
from papertrader.ledger.store import LedgerError, LedgerStore
from papertrader.logs import PERFORMANCE_LOGGER, setup_logging
from papertrader.market.candle_file import HEADER, CandleFileError
from papertrader.market.sources.base import CandleSource
from papertrader.resilience import BreakerRegistry, BreakerState, CircuitBreaker
from papertrader.strategy import create_strategy
from papertrader.strategy.base import Strategy

log = logging.getLogger("papertrader.runner")
perf_log = logging.getLogger(PERFORMANCE_LOGGER)


class Service(Protocol):
    """Something that runs beside the engine (HTTP server, WebSocket feed, notifier)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

#: called after each exchange REST request with its endpoint (``GET /candles``) and duration in seconds
RequestObserver = Callable[[str, float], None]


def build_breakers(settings: BreakerSettings) -> BreakerRegistry:
    """The worker's four circuit breakers, configured from the seed's settings."""
    registry = BreakerRegistry()
    enabled = settings.enable_circuit_breakers
    success = settings.breaker_success_threshold
    for name, threshold, timeout in (
        ("data_collection", settings.data_collection_failure_threshold, settings.data_collection_recovery_timeout),
        ("prediction", settings.prediction_failure_threshold, settings.prediction_recovery_timeout),
        ("trading", settings.trading_failure_threshold, settings.trading_recovery_timeout),
        ("notifications", settings.notification_failure_threshold, settings.notification_recovery_timeout),
    ):
        registry.add(CircuitBreaker(name, threshold, timeout, success, enabled))
    return registry


def make_source(settings: Settings, breakers: BreakerRegistry,
                on_request: RequestObserver | None = None) -> CandleSource:
    """The configured candle source; ``on_request`` times a live source's REST calls."""
    if settings.source == "replay":
        from papertrader.market.sources.replay import ReplaySource

        return ReplaySource(settings.replay_file)  # type: ignore[arg-type]  # settings require REPLAY_FILE for replay
    if settings.source == "synthetic":
        from papertrader.market.sources.synthetic import SyntheticSource

        return SyntheticSource(settings.seed, settings.interval_ms, settings.synthetic_start_ms)
    from papertrader.market.sources.bitvavo import BitvavoSource

    return BitvavoSource(settings.exchange, settings.symbol, settings.candle_interval, seed=settings.seed,
                         breaker=breakers.breakers["data_collection"], on_request=on_request)


def complete_replay_settings(settings: Settings) -> Settings:
    """For ``--source replay`` without an explicit SYMBOL or CANDLE_INTERVAL, take them from the file."""
    if settings.source != "replay" or settings.replay_file is None or not Path(settings.replay_file).is_file():
        return settings
    from papertrader.market.sources.replay import infer_interval, infer_symbol

    update: dict[str, Any] = {}
    if "symbol" not in settings.model_fields_set and (symbol := infer_symbol(Path(settings.replay_file))):
        update["symbol"] = symbol
    if "candle_interval" not in settings.model_fields_set:
        interval = infer_interval(Path(settings.replay_file))
        if interval is not None:
            update["candle_interval"] = interval
    return settings.model_copy(update=update) if update else settings


def ensure_writable_state_dir(state_dir: Path) -> None:
    """Fail with one line naming the state directory when it cannot be created or written (a read-only root
    without a state volume), instead of an ``OSError`` traceback from whatever writes there first."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=state_dir):
            pass
    except OSError as exc:
        raise LedgerError(f"state directory {state_dir} is not writable ({exc.strerror or exc}); mount a writable "
                          "volume there or set STATE_DIR") from None


def open_ledger(settings: Settings, fingerprint: dict[str, str]) -> tuple[LedgerStore, Path | None]:
    """The state directory's ledger, bound to this run's identity and results fingerprint.

    A directory whose committed run was made with other settings or input is refused (:class:`LedgerError`
    naming what differs) or, with ``RESET_STATE``, archived first; then the second value is the archive folder."""
    path = settings.state_dir / "state.db"
    store = LedgerStore(path)
    try:
        problem = _resume_problem(store, settings, fingerprint)
        if problem is None:
            store.record_fingerprint(fingerprint)
            return store, None
    except BaseException:
        store.close()
        raise
    store.close()
    if not settings.reset_state:
        raise LedgerError(f"state directory {settings.state_dir} holds a run made with other settings: {problem}; "
                          "start with the original settings, use another --state-dir, or pass --reset-state "
                          "(RESET_STATE=true) to archive that run and start afresh")
    archived = archive_state(settings.state_dir, keep=(LOCK_NAME,))
    store = LedgerStore(path)
    try:
        store.check_identity(_identity(settings))
        store.record_fingerprint(fingerprint)
    except BaseException:
        store.close()
        raise
    return store, archived


def _identity(settings: Settings) -> dict[str, str]:
    return {"symbol": settings.symbol, "source": settings.source, "strategy": settings.strategy}


def _resume_problem(store: LedgerStore, settings: Settings, fingerprint: dict[str, str]) -> str | None:
    """Why this start may not continue the stored run, or None. Without RESET_STATE a ledger behind its last
    commit (lost WAL) or an identity mismatch raises its own message at once."""
    try:
        store.check_not_behind()
        store.check_identity(_identity(settings))
    except LedgerError as exc:
        if not settings.reset_state:
            raise
        return str(exc)
    stored = store.stored_fingerprint()
    if stored is None or not store.has_checkpoint():
        return None
    return fingerprint_mismatch(stored, fingerprint)


class WorkerRunner:
    """Owns one worker's engine, source and services for the duration of ``papertrader run``.

    ``source``, ``strategy`` and ``breakers`` default to what the settings configure (a test may hand in its own);
    ``on_request`` observes the live source's REST calls. Services and engine listeners are added by the composer
    (:meth:`add_service`, :meth:`add_listener`) before :meth:`run`."""

    def __init__(self, settings: Settings, source: CandleSource | None = None, console_logs: bool = True, *,
                 strategy: Strategy | None = None, breakers: BreakerRegistry | None = None,
                 on_request: RequestObserver | None = None) -> None:
        settings = complete_replay_settings(settings)
        self.settings = settings
        ensure_writable_state_dir(settings.state_dir)
        #: held for the worker's life (released in ``run``): a second worker on this directory exits 2
        self.lock = StateDirLock(settings.state_dir)
        self.lock.acquire()
        try:
            self.store, archived = open_ledger(settings, results_fingerprint(settings))
            setup_logging(settings.state_dir / "logs", settings.log_level, settings.log_max_bytes,
                          settings.log_backup_count, console=console_logs)
        except BaseException:
            self.lock.release()
            raise
        if archived is not None:
            log.warning("%s: RESET_STATE: the previous run (other settings or input) was moved to %s; starting "
                        "afresh", settings.state_dir, archived)
        try:
            self._build(settings, source, strategy, breakers, on_request)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the ledger (WAL checkpointed) and release the state directory. Safe to call more than once."""
        try:
            self.store.close()
        finally:
            self.lock.release()

    def _build(self, settings: Settings, source: CandleSource | None, strategy: Strategy | None,
               breakers: BreakerRegistry | None, on_request: RequestObserver | None) -> None:
        """Everything after the ledger is open; on failure ``__init__`` closes the ledger again."""
        self.store.record_settings(settings.masked())
        self.strategy = strategy if strategy is not None else create_strategy(settings)
        self.breakers = breakers if breakers is not None else build_breakers(settings.breakers)
        self.strategy.bind_breaker(self.breakers.breakers["prediction"])
        self.recorder = CsvLog(Path(settings.record), HEADER) if settings.record else None
        self.listeners: list[EngineListener] = []
        self.services: list[Service] = []
        self.engine = Engine(settings.engine, settings.risk, settings.exchange, self.strategy, self.store,
                             self.listeners, self.recorder)
        self.breakers.breakers["data_collection"].listeners.append(self._on_data_breaker)
        self.source = source or make_source(settings, self.breakers, on_request)
        self.started_at = time.monotonic()
        self.finished = False
        self.last_progress = time.monotonic()
        #: when the current wait for market data began (a live source, a paced replay's pause, the source's
        #: start-up), None while the pipeline works on what it has; liveness counts only working time
        self.waiting_since: float | None = None
        self.last_wait_end = time.monotonic()
        self._stop = asyncio.Event()
        #: the last storage failure while it lasts (None when the ledger commits fine); read by health checks
        self.storage_error: str | None = None

    def _on_data_breaker(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        """While market data is failing, open no new positions (open ones are still managed)."""
        if new is BreakerState.OPEN:
            self.engine.halt_entries("market data circuit breaker open", kind="data_breaker")
        elif new is BreakerState.CLOSED:
            self.engine.resume_entries(kind="data_breaker")

    # --- composition -------------------------------------------------------------------------------------------
    def add_service(self, service: Service) -> None:
        """Run ``service`` beside the engine: started after the checkpoint is restored, stopped in reverse order."""
        self.services.append(service)

    def add_listener(self, listener: EngineListener) -> None:
        """Hand the engine's events to ``listener`` (see :mod:`papertrader.events`)."""
        self.listeners.append(listener)  # the engine shares this list

    # --- WorkerView and WorkerControl ----------------------------------------------------------------------------
    def facts(self) -> WorkerFacts:
        """The worker now (:class:`~papertrader.engine.facts.WorkerFacts`)."""
        engine, settings = self.engine, self.settings
        portfolio, risk = engine.portfolio, engine.risk.state
        candle = engine.last_candle
        if candle is not None:
            snapshot = portfolio.snapshot(candle.ts, candle.close)
            position_value, equity = snapshot.position_value, snapshot.equity
            equity_f = portfolio.equity_f(candle.close)
        else:
            zero = portfolio.cash - portfolio.cash  # a zero with the cash's exponent (0.00), as a snapshot shows it
            position_value, equity, equity_f = zero, portfolio.cash, portfolio.cash_f
        try:
            source_status = self.source.status()
        except Exception:  # noqa: BLE001 - a broken status is a disconnected source
            source_status = {"connected": False}
        try:
            strategy_status = engine.strategy.status() or {}
        except Exception:  # noqa: BLE001 - a strategy's status must not break health
            strategy_status = {}
        quality, parts = engine.gate.score()
        counters = engine.gate.counters
        return WorkerFacts(
            symbol=engine.symbol, source=settings.source, strategy=settings.strategy,
            interval_ms=settings.interval_ms, live=self.source.live,
            items=engine.items, accepted=engine.accepted, warmup=engine.warmup, finished=self.finished,
            waiting_since=self.waiting_since, last_wait_end=self.last_wait_end, storage_error=self.storage_error,
            last_candle=candle,
            initial_capital=portfolio.initial_capital, cash=portfolio.cash, position_value=position_value,
            equity=equity, equity_f=equity_f, peak_equity=risk.peak_equity, max_drawdown=risk.max_drawdown_pct,
            lots=tuple(portfolio.lots), trades=portfolio.fills, closed_lots=portfolio.closed_lots,
            winning_lots=portfolio.winning_lots,
            halts=MappingProxyType(dict(risk.halts)),
            breakers=MappingProxyType({name: b.state for name, b in self.breakers.breakers.items()}),
            quality_score=quality, quality_parts=MappingProxyType(dict(parts)),
            rejected_by_reason=MappingProxyType(dict(counters.reasons)), gaps=counters.gaps,
            source_connected=bool(source_status.get("connected", True)),
            data_age_ms=source_status.get("data_age_ms"),
            model=ModelFacts.from_status(strategy_status, settings.model is not None),
        )

    def summary(self) -> dict[str, Any]:
        """The engine's results so far."""
        return self.engine.summary()

    def feature_values(self) -> dict[str, float]:
        """The latest finite feature values."""
        return {name: value for name, value in self.engine.features.values.items() if math.isfinite(value)}

    def halt(self, reason: str, kind: str = "manual") -> None:
        """Stop new entries; committed to the ledger before this returns (survives a crash)."""
        self.engine.halt_entries(reason, kind=kind, durable=True)

    def resume(self, kind: str = "manual") -> None:
        """Lift the ``kind`` halt (``portfolio``, the operator's, leaves the worker's own halts in place)."""
        self.engine.resume_entries(kind=kind, durable=True)

    def request_stop(self) -> None:
        """Stop after the current batch (SIGTERM/SIGINT): commit and exit cleanly."""
        self._stop.set()

    async def run(self) -> dict[str, Any]:
        """Run until the source ends, ``--max-candles`` is reached or a stop is requested. Returns the summary.
        The ledger is closed (WAL checkpointed) on every way out."""
        try:
            return await self._run()
        finally:
            self.close()

    async def _run(self) -> dict[str, Any]:
        settings, engine, source = self.settings, self.engine, self.source
        checkpoint = engine.restore()
        if checkpoint is not None:
            source.restore(checkpoint["cursor"])
            log.info("%s resuming after %d items (last candle ts=%s, equity %s)", settings.symbol, engine.items,
                     checkpoint["last_ts"], engine.portfolio.cash)
        else:
            log.info("%s starting fresh: source=%s strategy=%s warm-up=%d candles", settings.symbol,
                     settings.source, settings.strategy, engine.warmup)
        for service in self.services:
            await service.start()
        self._install_signal_handlers()
        try:
            async with self._waiting():  # SIGTERM during the warm-up download stops it at once
                started, _ = await self._unless_stopped(
                    source.start(checkpoint["last_ts"] if checkpoint else None, engine.warmup))
            if started:
                self._apply_market_rules()
                await self._loop()
        finally:
            for service in reversed(self.services):
                await service.stop()
            await source.close()
            if self.recorder is not None:
                self.recorder.close()
        summary = engine.summary()
        summary["duration_s"] = round(time.monotonic() - self.started_at, 3)
        summary["finished"] = self.finished
        return summary

    def _apply_market_rules(self) -> None:
        """Exchange precision and minimums (a live source's ``/markets``) for the paper broker. ``--record`` keeps
        a copy next to the recording and ``--source replay`` reads it, so the replay of a recording trades alike."""
        from papertrader.market.bitvavo.markets import load_rules_sidecar, write_rules_sidecar

        rules = self.source.market_rules()
        if rules is None and self.settings.source == "replay" and self.settings.replay_file is not None:
            rules = load_rules_sidecar(self.settings.replay_file)
        if rules is None:
            return
        self.engine.set_market_rules(rules)
        if self.settings.record is not None and self.settings.source != "replay":
            write_rules_sidecar(self.settings.record, rules)

    async def _loop(self) -> None:
        settings, engine, source = self.settings, self.engine, self.source
        factor = settings.speed_factor
        paced = factor is not None and not source.live
        batch_size = 1 if paced else settings.commit_every_candles
        pause = settings.interval_ms / 1000.0 / factor if paced and factor else 0.0
        next_due = time.monotonic()
        max_items = settings.max_candles
        last_commit = time.monotonic()
        uncommitted = 0
        while not self._stop.is_set():
            want = batch_size
            if max_items is not None:
                if engine.items >= max_items:
                    self.finished = True
                    break
                want = min(want, max_items - engine.items)
            batch = await self._next_batch(want)
            if batch is None:
                self.finished = True
                break
            listeners = self.listeners
            persisted_each = source.live or paced  # one commit per batch: a tick lasts until it is committed
            if listeners:  # tick timing for on_ticks_done (observability); no cost without listeners
                starts: list[float] = []
                if persisted_each:
                    engine.process_batch(batch, starts)  # each item's start
                else:
                    starts.append(time.perf_counter())  # the batch's
                    engine.process_batch(batch)
                done = time.perf_counter()
                engine.publish()
            else:
                engine.process_batch(batch)
            uncommitted += len(batch)
            if engine.gate.interval_conflict is not None and not source.live:
                raise CandleFileError(f"{settings.replay_file or settings.source}: {engine.gate.interval_conflict}; "
                                      "split the input by interval or set CANDLE_INTERVAL")
            now = time.monotonic()
            if (source.live or paced or uncommitted >= settings.commit_every_candles
                    or now - last_commit >= settings.commit_interval_seconds):
                await self._commit()
                last_commit, uncommitted = now, 0
                if listeners and persisted_each:
                    done = time.perf_counter()  # live: "candle in, decision persisted" includes the commit
            if listeners:
                self._report_ticks(batch, starts, done, persisted_each)
            self.store.checkpoint_if_due()
            if now - self.last_progress >= settings.progress_interval_seconds:
                self._progress(now)
            if paced:
                next_due += pause
                async with self._waiting():
                    await asyncio.sleep(max(0.0, next_due - time.monotonic()))
            else:
                await asyncio.sleep(0)
        if self.finished:
            engine.finish()
        await self._commit()

    async def _next_batch(self, want: int) -> list[Any] | None:
        """The source's next batch; a live source's wait (up to a candle interval) is cut short by a stop request."""
        if not self.source.live:
            return await self.source.next_batch(want)
        async with self._waiting():  # a quiet market is no fault of the pipeline: readiness reports stale data
            done, batch = await self._unless_stopped(self.source.next_batch(want))
        return batch if done else []

    async def _unless_stopped(self, work: Awaitable[Any]) -> tuple[bool, Any]:
        """Await `work` unless a stop is requested first (then it is cancelled): (finished, its result)."""
        fetch = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if fetch.done():
            return True, fetch.result()
        await cancel_and_wait(fetch)
        return False, None

    @contextlib.asynccontextmanager
    async def _waiting(self) -> AsyncIterator[None]:
        """Mark a wait for market data (see ``waiting_since``)."""
        self.waiting_since = time.monotonic()
        try:
            yield
        finally:
            self.waiting_since = None
            self.last_wait_end = time.monotonic()

    async def _commit(self) -> None:
        """Commit the engine's batch; while storage fails (a full disk), pause trading and retry with backoff.

        Nothing is lost: the batch stays in memory and the CSV rows are rewritten after the committed end, so the
        retry writes exactly what the failed attempt would have. Candles are not processed meanwhile."""
        delay = self.settings.storage_retry_seconds
        while True:
            try:
                self.engine.commit(self.source.cursor())
            except (OSError, sqlite3.OperationalError) as exc:
                if self.storage_error is None:
                    log.error("%s cannot persist the ledger (%s): trading paused, retrying until storage works; "
                              "nothing is lost", self.settings.symbol, exc)
                self.storage_error = str(exc)
                if self._stop.is_set():
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if self.storage_error is not None:
                log.warning("%s storage works again: ledger committed, trading resumes", self.settings.symbol)
                self.storage_error = None
            return

    def _report_ticks(self, batch: list[Any], starts: list[float], done: float, persisted_each: bool) -> None:
        """``on_ticks_done`` once per batch with every item's duration: live and paced runs (one commit per batch)
        report from each item's start until its decision was committed; a replay at full speed, which commits
        thousands of candles at once, reports each item of a batch at the batch's mean pipeline time (timing each
        candle would cost a clock read per candle for a number nobody acts on)."""
        if persisted_each:
            durations = [done - start for start in starts]
        else:
            durations = [(done - starts[0]) / len(batch)] * len(batch)
        for listener in self.listeners:
            try:
                listener.on_ticks_done(batch, durations)
            except Exception:  # noqa: BLE001 - a listener must never stop trading
                log.exception("listener on_ticks_done failed")

    def _progress(self, now: float) -> None:
        engine = self.engine
        elapsed = now - self.started_at
        snapshot = engine.last_snapshot
        equity = snapshot.equity if snapshot else engine.portfolio.cash
        perf_log.info("Performance: %s %d items (%.0f/s), %d trades, equity %s, quality %.1f", self.settings.symbol,
                      engine.items, engine.items / elapsed if elapsed else 0.0, engine.portfolio.fills, equity,
                      engine.gate.score()[0])
        self.last_progress = now

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests): no handlers
                pass


def format_summary(summary: dict[str, Any], state_dir: Path | None = None) -> str:
    """Human-readable lines (with the command that draws the run's report) followed by the one-line JSON object
    (the last line of stdout)."""
    report = ([f"report            papertrader report {shlex.quote(str(state_dir))} --out report.html"]
              if state_dir is not None else [])
    lines = [
        f"symbol            {summary['symbol']}",
        f"candles           {summary['candles']} (rejected {summary['rejected_candles']}, gaps {summary['gaps']})",
        f"trades            {summary['trades']} ({summary['round_trips']} round trips, "
        f"win rate {summary['win_rate']}%)",
        f"final equity      {summary['final_equity']:.2f} (return {summary['return_pct']}%,"
        f" max drawdown {summary['max_drawdown_pct']}%)",
        f"fees paid         {summary['fees_paid']:.2f}",
        *report,
        json.dumps(summary, separators=(",", ":")),
    ]
    return "\n".join(lines)


def summary_path(state_dir: Path) -> Path:
    return state_dir / "summary.json"

