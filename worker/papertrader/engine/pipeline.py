"""The per-candle pipeline: quality gate -> pending fills -> protective exits -> features -> strategy -> risk ->
ledger. The same code runs for every source.

Timeline for one accepted candle t (docs/fill-model.md):
1. orders decided at the close of the previous accepted candle fill at t's open (exits first, then entries);
2. stops, trailing stops and take profits trigger inside t from its high/low;
3. features see t; after warm-up the strategy returns a signal and the risk manager turns it into orders for the
   next open;
4. equity at t's close updates drawdown and daily-loss guards; a portfolio row is written every
   PORTFOLIO_SNAPSHOT_EVERY candles and after every fill.
Everything is buffered and made durable in one ledger transaction per batch (:meth:`Engine.commit`).
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import Any, Protocol

from papertrader.broker.market_rules import MarketRules, auto_tick_size
from papertrader.broker.paper import Execution, OrderRejected, PaperBroker
from papertrader.config_groups import EngineSettings, ExchangeSettings, RiskSettings
from papertrader.events import HOLD, CandleVerdict, EngineListener, PortfolioSnapshot, Side, Signal, VerdictStatus
from papertrader.features import FeatureEngine
from papertrader.ledger.csv_logs import (
    PORTFOLIO_HEADER,
    TRADES_HEADER,
    CsvLog,
    fill_row,
    portfolio_row,
    snapshot_row,
    trade_row,
)
from papertrader.ledger.portfolio import Portfolio
from papertrader.ledger.returns import return_pct
from papertrader.ledger.store import LedgerError, LedgerStore
from papertrader.market.candle import Candle
from papertrader.market.candle_file import BadRow, format_candle
from papertrader.quality import (
    DUPLICATE,
    MAX_TS_MS,
    MIN_TS_MS,
    OK,
    REJECTED_SHARE_WARNING,
    DataQualityGate,
    describe_rejections,
    dominant_rejection,
)
from papertrader.risk.exits import ExitRules
from papertrader.risk.manager import MINUTE_MS, RiskLimits, RiskManager
from papertrader.risk.sizing import position_fraction
from papertrader.strategy.base import PositionView, Strategy

log = logging.getLogger("papertrader.engine")

_ts_of, _close_of = itemgetter(0), itemgetter(4)
_LOGGED_REJECTIONS = 20  # rejections logged one by one; after that, every 1000th
_MIN_CANDLES_FOR_SHARE_WARNING = 50  # the rejected share is judged once this many candles were checked
#: module-level names of the enum members the per-candle code compares with (as cheap as the literals were)
_BUY, _SELL, _HOLD, _REJECTED = Side.BUY, Side.SELL, Side.HOLD, VerdictStatus.REJECTED


class StageObserver(Protocol):
    """Hears of the pipeline's stages (:data:`Engine.STAGES`), as tracing and the stage profiler do: for each
    item it asks for (``item_started`` returns True), ``stage_started(name)`` and ``stage_ended(name, result)``
    around each stage it went through, then ``item_ended(verdict)``; and ``commit_started``/``commit_ended``
    around each ledger commit. Called on the engine's thread; it must not change what the engine does."""

    def item_started(self, item: Candle | BadRow) -> bool: ...

    def stage_started(self, stage: str) -> None: ...

    def stage_ended(self, stage: str, result: Any) -> None: ...

    def item_ended(self, verdict: CandleVerdict) -> None: ...

    def commit_started(self) -> None: ...

    def commit_ended(self) -> None: ...


@dataclass(slots=True)
class PendingOrder:
    """An order decided at a close, to fill at the next accepted candle's open."""

    side: Side  # BUY or SELL
    reason: str
    fraction: float = 0.0  # buys: share of available cash
    lot_id: int = 0  # sells: the lot to close

    def state(self) -> list[Any]:
        return [self.side, self.reason, self.fraction, self.lot_id]


class Engine:
    """One symbol's paper-trading pipeline with its ledger."""

    def __init__(self, settings: EngineSettings, risk: RiskSettings, exchange: ExchangeSettings, strategy: Strategy,
                 store: LedgerStore, listeners: list[EngineListener] | None = None, recorder: CsvLog | None = None,
                 rules: MarketRules | None = None) -> None:
        self.symbol = settings.symbol
        self.interval_ms = settings.interval_ms
        self.exchange = exchange
        self._sizing = (risk.base_position_size, risk.min_position_size, risk.max_position_size)
        self.strategy = strategy
        self.store = store
        self.listeners: list[EngineListener] = listeners if listeners is not None else []
        self.recorder = recorder
        self.gate = DataQualityGate(settings.interval_ms, settings.quality_window, settings.quality_outlier_z,
                                    settings.quality_reject_z, settings.enable_data_quality_checks,
                                    int(settings.quality_max_gap_days * 86_400_000))
        # a live source never ends, so it says a high rejected share once as it happens (a finite run at its end)
        self._rejected_share_warned = settings.source != "bitvavo"
        self.features = FeatureEngine(strategy.required_features())
        self.warmup = (settings.warmup_candles if settings.warmup_candles is not None
                       else strategy.warmup_candles(self.features.lookback))
        self.portfolio = Portfolio(settings.symbol, risk.initial_capital, exchange.quote_decimals)
        self._fixed_rules = rules
        self.broker: PaperBroker | None = None
        if rules is not None or exchange.tick_size is not None:
            self._set_rules(rules or self._rules_with_tick(exchange.tick_size))  # type: ignore[arg-type]  # not None here (the if)
        self.exit_rules = ExitRules(risk.take_profit_pct, risk.stop_loss_pct, risk.trailing_stop_pct,
                                    risk.min_profit_for_trailing, risk.emergency_stop_pct)
        self.risk = RiskManager(RiskLimits(
            max_positions=risk.max_positions,
            max_positions_per_symbol=risk.max_positions_per_symbol,
            min_hold_ms=int(risk.min_hold_time_minutes * MINUTE_MS),
            max_hold_ms=int(risk.max_hold_hours * 60 * MINUTE_MS),
            cooldown_ms=int(risk.position_cooldown_minutes * MINUTE_MS),
            max_daily_entries=risk.max_daily_trades_per_symbol,
            max_daily_loss_pct=risk.max_daily_loss_pct,
            max_drawdown_pct=risk.max_drawdown_pct,
        ))
        self.pending: list[PendingOrder] = []
        self.items = 0  # source items consumed (candles and bad rows)
        self.accepted = 0  # accepted candles
        self.last_candle: Candle | None = None
        self.last_snapshot: PortfolioSnapshot | None = None
        self.last_snapshot_ts: int | None = None
        self.entries_blocked: dict[str, int] = {}
        self.orders_rejected = 0
        self._snapshot_every = settings.portfolio_snapshot_every
        self._fills: list[tuple[Any, Decimal, Decimal]] = []
        self._marks: list[PortfolioSnapshot] = []
        self._events: list[tuple[int | None, str, str]] = []
        self._accepted_since_commit: list[Candle] = []  # their times and closes go to the ledger (for reports)
        #: the last item and its verdict, for the listeners' ``on_candle`` (:meth:`publish`, once per batch)
        self._publish_item: Candle | BadRow | None = None
        self._publish_verdict: CandleVerdict = OK
        self._view: PositionView | None = None  # the strategy's view of the open lots (None: build after fills)
        self._control_seq = 0  # id of the last control request (ledger ``control`` table) applied
        self.observer: StageObserver | None = None  # who hears of each stage (:meth:`set_observer`)
        state_dir = settings.state_dir
        self.trades_log = CsvLog(state_dir / "logs" / "trades.csv", TRADES_HEADER)
        self.portfolio_log = CsvLog(state_dir / "logs" / "portfolio.csv", PORTFOLIO_HEADER)

    # --- set-up ----------------------------------------------------------------------------------------------
    def _rules_with_tick(self, tick: Decimal) -> MarketRules:
        x = self.exchange
        return MarketRules(tick, x.quantity_decimals, x.min_order_quote, x.min_order_base)

    def set_market_rules(self, rules: MarketRules) -> None:
        """Use fixed exchange rules (a live source's ``/markets``) from now on instead of the offline defaults."""
        self._fixed_rules = rules
        self._set_rules(rules)

    def _set_rules(self, rules: MarketRules) -> None:
        self.rules = rules
        self.broker = PaperBroker(self.portfolio, rules, self.exchange.fee_rate, self.exchange.slippage_pct)

    def restore(self) -> dict[str, Any] | None:
        """Load the last checkpoint (if any), verify the ledger and align the CSV logs. Returns the checkpoint."""
        checkpoint = self.store.load_checkpoint()
        sizes: dict[str, int] = {}
        if checkpoint is not None:
            self.load_state(checkpoint["engine_state"])
            cash, open_ids = self.store.derive_portfolio(self.portfolio.initial_capital)
            if cash != self.portfolio.cash or open_ids != {lot.id for lot in self.portfolio.lots}:
                raise LedgerError(
                    f"ledger mismatch: fills give cash {cash} and lots {sorted(open_ids)}, checkpoint has cash "
                    f"{self.portfolio.cash} and lots {[lot.id for lot in self.portfolio.lots]}"
                )
            sizes = checkpoint["file_sizes"]
        self._replay_control()
        symbol = self.symbol
        self.trades_log.open(sizes.get("trades"), lambda: (
            trade_row(symbol, *row) for row in self.store.fill_rows()))
        self.portfolio_log.open(sizes.get("portfolio"), lambda: (
            portfolio_row(*row) for row in self.store.mark_rows()))
        if self.recorder is not None:
            self.recorder.open(sizes.get("record"), None)
        return checkpoint

    # --- the pipeline ----------------------------------------------------------------------------------------
    #: the per-candle stages, in order, as a :class:`StageObserver` hears of them
    STAGES = ("quality", "fill", "features", "prediction", "risk", "persistence")

    def set_observer(self, observer: StageObserver | None) -> None:
        """Report every item's stages (and each commit) to ``observer`` (tracing, profiling); None: nobody."""
        self.observer = observer

    def process(self, item: Candle | BadRow) -> CandleVerdict:
        """Run one source item through the pipeline."""
        return self.process_batch((item,))

    def process_batch(self, items: Sequence[Candle | BadRow], starts: list[float] | None = None) -> CandleVerdict:
        """Run source items through the pipeline, one after the other; returns the last one's verdict. With
        ``starts``, each item's start time (``time.perf_counter``) is appended to it (tick durations).

        One loop for every source (a live worker's batch is one candle), with the stages written out in it: the
        quality verdict (what enters the gate is recorded by ``--record``; rejections are reported), then for an
        accepted candle the fills at its open and the protective exits inside it, the features, the strategy's
        signal once the features are ready (a model's prediction is published), the risk decision after warm-up
        and the portfolio guards, and the ledger buffering. A :class:`StageObserver` hears of each stage of the
        items it asks for; without one the loop pays a None test per item."""
        gate_check = self.gate.check
        # without an observer, the gate accepts each run of common-case candles in one call (the same verdicts
        # and state as a check per candle); the loop then knows items before ``ok_until`` are OK
        accept_run = self.gate.accept_run if self.observer is None else None
        ok_until = 0
        recorder = self.recorder
        features = self.features
        update_features = features.update
        lookback = features.lookback
        # and indicators of the close alone take such a run's closes at once: ``ahead`` holds each feature's
        # values for the run's candles, ``ahead_from`` the run's first index, ``ready_from`` the index from which
        # the features are past their lookback
        update_closes = features.update_closes if accept_run is not None and features.closes_only else None
        values = features.values
        ahead: list[tuple[str, list[float]]] = []
        ahead_from = ready_from = 0
        on_candle = self.strategy.on_candle
        portfolio = self.portfolio
        risk = self.risk
        on_equity = risk.on_equity
        buffer_candle = self._accepted_since_commit.append
        snapshot_every = self._snapshot_every
        warmup = self.warmup
        observer = self.observer
        clock = time.perf_counter
        verdict = OK
        # written back to the engine once, after the loop (nothing reads them in between)
        accepted = self.accepted
        last_candle = self.last_candle
        published: tuple[Candle | BadRow, CandleVerdict] | None = None
        # a replay's quiet stretch (no position, no order, the strategy holding: see :meth:`_quiet_stretch`) is
        # taken in one go; ``quiet_until`` is the index after it
        skip_holds = self.strategy.skip_holds if update_closes is not None and starts is None and recorder is None \
            else None
        ahead_by_name: dict[str, list[float]] = {}
        quiet_until = 0
        for index, item in enumerate(items):
            if index < quiet_until:
                continue
            if (skip_holds is not None and ready_from <= index < ok_until and not portfolio.lots and not self.pending
                    and self.broker is not None):
                quiet_until = skip_holds(ahead_by_name, index - ahead_from, ok_until - ahead_from) + ahead_from
                if quiet_until > index:
                    self._quiet_stretch(items[index:quiet_until], accepted)  # type: ignore[arg-type]  # a run: Candles
                    accepted += quiet_until - index
                    offset = quiet_until - 1 - ahead_from
                    for key, values_of_run in ahead:
                        values[key] = values_of_run[offset]
                    last_candle = items[quiet_until - 1]  # type: ignore[assignment]  # a run: Candles only
                    published = (last_candle, OK)  # type: ignore[assignment]  # set just above
                    verdict = OK
                    continue
            if starts is not None:
                starts.append(clock())
            observed = observer is not None and observer.item_started(item)
            # quality
            if observed:
                observer.stage_started("quality")  # type: ignore[union-attr]
            if index < ok_until:
                verdict = OK
            elif accept_run is not None and (run := accept_run(items, index)):
                ok_until = index + run
                verdict = OK
                if update_closes is not None:
                    ready_from = index + max(lookback - features.count - 1, 0)
                    ahead = update_closes([row[4] for row in items[index:ok_until]])  # type: ignore[misc]  # a run: Candles only
                    ahead_from = index
                    ahead_by_name = dict(ahead)
            else:
                verdict = gate_check(item)
            if recorder is not None and type(item) is Candle:
                recorder.append(format_candle(item))
            if verdict is not OK and verdict.status == _REJECTED:
                self._on_rejected(item, verdict)
                published = (item, verdict)
            if observed:
                observer.stage_ended("quality", verdict)  # type: ignore[union-attr]
            if verdict is not OK and (verdict.status == _REJECTED or verdict is DUPLICATE):
                if observed:
                    observer.item_ended(verdict)  # type: ignore[union-attr]
                continue
            candle: Candle = item  # type: ignore[assignment]
            accepted += 1
            # fill: orders from the last close fill at this open; stops and targets trigger inside the candle
            if observed:
                observer.stage_started("fill")  # type: ignore[union-attr]
            if self.broker is None:
                self._set_rules(self._rules_with_tick(auto_tick_size(candle.open)))
            filled = False
            if self.pending:
                filled = self._execute_pending(candle)
            if portfolio.lots:
                filled = self._protective_exits(candle) or filled
            if observed:
                observer.stage_ended("fill", filled)  # type: ignore[union-attr]
                observer.stage_started("features")  # type: ignore[union-attr]
            if index < ok_until and update_closes is not None:
                offset = index - ahead_from
                for key, series in ahead:
                    values[key] = series[offset]
                ready = index >= ready_from
            else:
                values = update_features(candle)
                ready = features.count >= lookback
            if observed:
                observer.stage_ended("features", values)  # type: ignore[union-attr]
                observer.stage_started("prediction")  # type: ignore[union-attr]
            # prediction: the strategy's signal once the features are ready (None before)
            signal: Signal | None = None
            if ready:
                signal = on_candle(candle, values, self._position_view() if portfolio.lots else None)
                if signal.prediction is not None:
                    for listener in self.listeners:
                        listener.on_prediction(signal.prediction)
            if observed:
                observer.stage_ended("prediction", signal)  # type: ignore[union-attr]
                observer.stage_started("risk")  # type: ignore[union-attr]
            # risk: after warm-up the signal becomes orders for the next open; the portfolio guards
            if signal is not None and accepted > warmup:
                if (signal is not HOLD and signal.side != _HOLD) or (portfolio.lots and risk.time_exits):
                    self._decide(candle, signal)
            ts = candle[0]
            halts = on_equity(ts, portfolio.equity_f(candle[4]) if portfolio.lots else portfolio.cash_f)
            if halts:
                for message in halts:
                    log.warning("%s %s", self.symbol, message)
                    self._events.append((ts, "halt", message))
            if observed:
                observer.stage_ended("risk", None)  # type: ignore[union-attr]
                observer.stage_started("persistence")  # type: ignore[union-attr]
            # persistence: the portfolio row (every PORTFOLIO_SNAPSHOT_EVERY candles and after fills); the candle
            # is the one the listeners hear of next (:meth:`publish`)
            last_candle = candle
            buffer_candle(candle)
            if filled or accepted % snapshot_every == 0:
                self._snapshot(candle)
            published = (candle, verdict)
            if observed:
                observer.stage_ended("persistence", None)  # type: ignore[union-attr]
                observer.item_ended(verdict)  # type: ignore[union-attr]
        self.items += len(items)
        self.accepted = accepted
        self.last_candle = last_candle
        if published is not None:
            self._publish_item, self._publish_verdict = published
        return verdict

    def _quiet_stretch(self, candles: list[Candle], accepted: int) -> None:
        """Accepted candles, in order, with no position open, no order pending and the strategy holding (its
        :meth:`~papertrader.strategy.base.Strategy.skip_holds`): what the per-candle path would do for each, in
        one go. Nothing fills or is decided; the equity is the cash throughout, so the risk guards hear of it at
        the first candle and at each new day (:meth:`RiskManager.on_steady_equity`); every
        PORTFOLIO_SNAPSHOT_EVERY-th accepted candle (``accepted`` were before these) gets its portfolio row."""
        for ts, message in self.risk.on_steady_equity(list(map(_ts_of, candles)), self.portfolio.cash_f):
            log.warning("%s %s", self.symbol, message)
            self._events.append((ts, "halt", message))
        self._accepted_since_commit.extend(candles)
        every = self._snapshot_every
        for candle in candles[(-accepted - 1) % every::every]:
            self._snapshot(candle)

    def _position_view(self) -> PositionView:
        """The open lots as the strategy sees them; built again only after a fill changed them."""
        view = self._view
        if view is None:
            lots = self.portfolio.lots
            view = self._view = PositionView(sum(lot.qty_f for lot in lots), lots[0].entry_f, lots[0].entry_ts,
                                             len(lots))
        return view

    def publish(self) -> None:
        """Tell the listeners about the last candle processed (``on_candle``): once per batch, not per candle. A
        live worker's batch is one candle, so it reports every candle; a replay reports the last of each batch
        (the WebSocket feed conflates to the latest candle anyway). Fills, portfolio rows and predictions are
        reported as they happen."""
        item = self._publish_item
        if item is None:
            return
        self._publish_item = None
        verdict = self._publish_verdict
        for listener in self.listeners:
            listener.on_candle(item, verdict)  # type: ignore[arg-type]  # set with the item

    def _on_rejected(self, item: Candle | BadRow, verdict: CandleVerdict) -> None:
        reason = verdict.reasons[0]
        ts = item.ts if type(item) is Candle else None
        if ts is not None and not MIN_TS_MS <= ts < MAX_TS_MS:
            ts = None  # the event keeps the message; the column is int64
        self._events.append((ts, "candle_rejected", reason))
        rejected = self.gate.counters.rejected
        if rejected <= _LOGGED_REJECTIONS or rejected % 1000 == 0:
            suffix = " (further rejections are logged every 1000th)" if rejected == _LOGGED_REJECTIONS else ""
            log.warning("%s candle rejected (%d so far): %s%s", self.symbol, rejected, reason, suffix)
        self._warn_on_rejected_share()

    def _warn_on_rejected_share(self) -> None:
        """Once per live run: a WARNING when more than REJECTED_SHARE_WARNING of the candles so far were rejected."""
        counters = self.gate.counters
        total = counters.accepted + counters.rejected
        if (self._rejected_share_warned or total < _MIN_CANDLES_FOR_SHARE_WARNING
                or counters.rejected <= REJECTED_SHARE_WARNING * total):
            return
        self._rejected_share_warned = True
        log.warning("%s: %s", self.symbol, describe_rejections(counters, total, self.gate.interval_ms))

    def _execute_pending(self, candle: Candle) -> bool:
        broker = self.broker
        assert broker is not None
        filled = False
        orders = sorted(self.pending, key=lambda order: order.side != _SELL)  # exits first
        self.pending = []
        for order in orders:
            if order.side == _SELL:
                lot = next((lot for lot in self.portfolio.lots if lot.id == order.lot_id), None)
                if lot is None:
                    continue
                self._record(broker.sell(candle.ts, lot, broker.slipped(candle.open, _SELL), order.reason))
                self.risk.record_close(candle.ts)
            else:
                result = broker.buy(candle.ts, broker.slipped(candle.open, _BUY), order.fraction, order.reason)
                if isinstance(result, OrderRejected):
                    self._reject_order(result)
                    continue
                self._record(result)
            filled = True
        return filled

    def _protective_exits(self, candle: Candle) -> bool:
        broker = self.broker
        assert broker is not None
        filled = False
        check = self.exit_rules.check
        for lot in list(self.portfolio.lots):
            trigger = check(lot, candle)
            if trigger is None:
                continue
            if trigger.is_stop:
                price = broker.slipped(trigger.price, _SELL)
            else:
                price = broker.rules.price_against(Decimal(repr(trigger.price)), _SELL)
            self._record(broker.sell(candle.ts, lot, price, trigger.reason))
            self.risk.record_close(candle.ts)
            filled = True
        return filled

    def _decide(self, candle: Candle, signal: Signal) -> None:
        decision_ts = candle.ts + self.interval_ms
        risk = self.risk
        lots = self.portfolio.lots
        exiting = {order.lot_id for order in self.pending if order.side == _SELL} if self.pending else ()
        for lot in lots:
            if lot.id not in exiting:
                reason = risk.due_exit(lot, decision_ts, signal.side == _SELL)
                if reason is not None:
                    self.pending.append(PendingOrder(_SELL, reason, lot_id=lot.id))
        if signal.side != _BUY:
            return
        pending_entries = sum(1 for order in self.pending if order.side == _BUY)
        block = risk.entry_block(decision_ts, len(lots), pending_entries)
        if block is not None:
            self.entries_blocked[block] = self.entries_blocked.get(block, 0) + 1
            return
        fraction = position_fraction(signal.confidence, signal.strength, *self._sizing)
        self.pending.append(PendingOrder(_BUY, signal.reason or "signal", fraction=fraction))
        risk.record_entry_decision()

    def _record(self, execution: Execution) -> None:
        fill = execution.fill
        self._view = None  # the lots changed
        self._fills.append((fill, execution.notional, execution.cash_after))
        self.trades_log.append(fill_row(fill, execution.notional, execution.cash_after))
        for listener in self.listeners:
            listener.on_fill(fill)

    def _reject_order(self, rejection: OrderRejected) -> None:
        self.orders_rejected += 1
        self._events.append((rejection.ts, "order_rejected", f"{rejection.reason}: {rejection.message}"))
        log.warning("%s %s order rejected: %s", self.symbol, rejection.side, rejection.message)

    def _snapshot(self, candle: Candle) -> None:
        snapshot = self.portfolio.snapshot(candle.ts, candle.close)
        self.last_snapshot = snapshot
        self.last_snapshot_ts = snapshot.ts
        self._marks.append(snapshot)
        self.portfolio_log.append(snapshot_row(snapshot))
        for listener in self.listeners:
            listener.on_portfolio(snapshot)

    def finish(self) -> None:
        """Write a closing portfolio row for the last candle unless one was just written."""
        candle = self.last_candle
        if candle is not None and self.last_snapshot_ts != candle.ts:
            self._snapshot(candle)

    # --- control -----------------------------------------------------------------------------------------------
    def halt_entries(self, reason: str, kind: str = "manual", durable: bool = False) -> None:
        """Stop opening positions (open ones are still managed). Kinds: ``manual``, ``data_breaker``, ...

        ``durable``: a user's request (HTTP, Telegram): it is committed to the ledger before this returns and
        replayed after a restart, so an acknowledged halt survives a crash."""
        if self.risk.state.halts.get(kind) == reason:
            return
        if durable:
            self._persist_control("halt", kind, reason)
        self.risk.halt(kind, reason)
        log.warning("%s entries halted (%s): %s", self.symbol, kind, reason)
        self._events.append((self.last_candle.ts if self.last_candle else None, "halt", f"{kind}: {reason}"))

    def resume_entries(self, kind: str = "manual", durable: bool = False) -> None:
        """Lift the ``kind`` halt (``manual`` also lifts the drawdown halt); ``durable`` as for :meth:`halt_entries`."""
        if kind not in self.risk.state.halts and not (kind == "manual" and "drawdown" in self.risk.state.halts):
            return
        if durable:
            self._persist_control("resume", kind, "")
        self.risk.resume(kind)
        log.info("%s entries resumed (%s)", self.symbol, kind)
        self._events.append((self.last_candle.ts if self.last_candle else None, "resume", kind))

    def _persist_control(self, action: str, kind: str, reason: str) -> None:
        ts = self.last_candle.ts if self.last_candle else None
        self._control_seq = self.store.append_control(ts, action, kind, reason)

    def _replay_control(self) -> None:
        """Apply the control requests committed after the checkpoint (a halt acknowledged just before a crash)."""
        for control_id, action, kind, reason in self.store.control_after(self._control_seq):
            if action == "halt":
                self.halt_entries(reason, kind)
            else:
                self.resume_entries(kind)
            self._control_seq = control_id

    # --- durability --------------------------------------------------------------------------------------------
    def commit(self, cursor: dict[str, Any]) -> float:
        """Make everything since the last commit durable, together with the source cursor. Returns seconds taken."""
        observer = self.observer
        if observer is None:
            return self._commit(cursor)
        observer.commit_started()
        try:
            return self._commit(cursor)
        finally:
            observer.commit_ended()

    def _commit(self, cursor: dict[str, Any]) -> float:
        started = time.perf_counter()
        accepted = self._accepted_since_commit
        logs = {"trades": self.trades_log, "portfolio": self.portfolio_log}
        if self.recorder is not None:
            logs["record"] = self.recorder
        sizes = {name: csv_log.flush() for name, csv_log in logs.items()}
        self.store.commit_batch(self._fills, self._marks, self._events, {
            "items": self.items,
            "last_ts": self.last_candle.ts if self.last_candle else None,
            "cursor": cursor,
            "engine_state": self.state(),
            "file_sizes": sizes,
        }, (array("q", map(_ts_of, accepted)), array("d", map(_close_of, accepted))))
        for name, csv_log in logs.items():
            csv_log.committed(sizes[name])
        self._fills.clear()
        self._marks.clear()
        self._events.clear()
        accepted.clear()
        return time.perf_counter() - started

    def state(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "accepted": self.accepted,
            "tick_size": str(self.rules.tick_size) if self.broker is not None else None,
            "gate": self.gate.state(),
            "features": self.features.state(),
            "strategy": self.strategy.state(),
            "portfolio": self.portfolio.state(),
            "risk": self.risk.state_dict(),
            "pending": [order.state() for order in self.pending],
            "last_candle": list(self.last_candle) if self.last_candle else None,
            "last_snapshot_ts": self.last_snapshot_ts,
            "entries_blocked": self.entries_blocked,
            "orders_rejected": self.orders_rejected,
            "control_seq": self._control_seq,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.items = state["items"]
        self.accepted = state["accepted"]
        if state["tick_size"] is not None and self._fixed_rules is None:
            self._set_rules(self._rules_with_tick(Decimal(state["tick_size"])))
        self.gate.load_state(state["gate"])
        self.features.load_state(state["features"])
        self.strategy.load_state(state["strategy"])
        self.portfolio.load_state(state["portfolio"])
        self._view = None
        self.risk.load_state(state["risk"])
        self.pending = [PendingOrder(Side(side), *rest) for side, *rest in state["pending"]]
        self.last_candle = Candle(*state["last_candle"]) if state["last_candle"] else None
        self.last_snapshot_ts = state["last_snapshot_ts"]
        self.entries_blocked = state["entries_blocked"]
        self.orders_rejected = state["orders_rejected"]
        self._control_seq = state.get("control_seq", 0)

    # --- reporting -----------------------------------------------------------------------------------------------
    @property
    def fill_count(self) -> int:
        """Fills booked so far."""
        return self.portfolio.fills

    def summary(self) -> dict[str, Any]:
        """Results so far; the last stdout line of a finite run."""
        portfolio = self.portfolio
        counters = self.gate.counters
        if self.last_candle is not None:
            snapshot = portfolio.snapshot(self.last_candle.ts, self.last_candle.close)
            equity = snapshot.equity
        else:
            equity = portfolio.cash
        initial = portfolio.initial_capital
        return {
            "symbol": self.symbol,
            "candles": self.accepted,
            "trades": portfolio.fills,
            "final_equity": float(equity),
            "return_pct": round(return_pct(equity, initial), 4),
            "max_drawdown_pct": round(self.risk.state.max_drawdown_pct * 100, 4),
            "win_rate": (round(100.0 * portfolio.winning_lots / portfolio.closed_lots, 2)
                         if portfolio.closed_lots else 0.0),
            "round_trips": portfolio.closed_lots,
            "open_positions": len(portfolio.lots),
            "cash": float(portfolio.cash),
            "fees_paid": float(portfolio.fees),
            "realized_pnl": float(portfolio.realized_pnl),
            "rejected_candles": counters.rejected,
            "dominant_rejection": dominant_rejection(counters.reasons),
            "rejection_note": (describe_rejections(counters, self.accepted + counters.rejected, self.gate.interval_ms)
                               if counters.rejected else None),
            "duplicates_ignored": counters.duplicates_ignored,
            "gaps": counters.gaps,
            "missing_candles": counters.missing_candles,
            "suspect_candles": counters.suspect,
            "orders_rejected": self.orders_rejected,
            "warmup_candles": self.warmup,
            "data_quality_score": self.gate.score()[0],
            "halted": sorted(self.risk.state.halts),
        }
