"""The WebSocket feed on port 8765, engine side: JSON messages ``snapshot|candle|prediction|trade|portfolio|health``.

Message envelope: ``{"type": ..., "symbol": "BTC-EUR", "time": <server Unix seconds>, "data": {...}}``.
A new client first receives a ``snapshot`` (health report, portfolio, last candle, features, recent trades).

The engine never waits for clients, and never shares its process with them: the worker binds the port and starts a
fan-out process (``feed/fanout.py``) that serves every connection. Engine listener calls only store the latest
event (and append trades to a bounded deque) and wake the flusher task, which serialises each message once and
writes the flush to the fan-out process over a Unix socket pair, with the portfolio, features and summary the
fan-out keeps its snapshot state current with. The worker builds a full snapshot only when the fan-out asks (its
first client after having none); while nothing is connected, the listeners store nothing. ``candle``,
``prediction`` and ``portfolio`` are conflated to the latest value per flush (flushes at most every
WS_FLUSH_INTERVAL seconds, 50 ms by default); trades are never conflated. At a live rate (one candle a minute)
that is every candle; a replay, or a live burst such as a backfill after a reconnect, sends the latest state of
each flush. Slow clients, client input and limits: see fanout.py. If the fan-out process exits, the worker logs
an error and restarts it on the same port (clients reconnect); if it falls 16 MiB behind, it is restarted too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from papertrader.events import BaseListener, CandleVerdict, Fill, PortfolioSnapshot, Prediction
from papertrader.feed import ipc
from papertrader.market.candle import Candle

if TYPE_CHECKING:
    from papertrader.config_groups import FeedSettings
    from papertrader.engine.facts import WorkerFacts, WorkerView

log = logging.getLogger("papertrader.feed")

RECENT_TRADES = 20
MAX_PENDING_TRADES = 1000
MAX_FANOUT_BACKLOG_BYTES = 16 * 1024 * 1024
RESTART_DELAYS_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # by failures in a row
STOP_TIMEOUT_SECONDS = 5.0
FANOUT_STALE_SECONDS = 5.0  # no heartbeat (fanout.HEARTBEAT_SECONDS) for this long: /health says not alive


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=_json_default)


def candle_data(candle: Candle, verdict: CandleVerdict | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"ts": candle.ts, "open": candle.open, "high": candle.high, "low": candle.low,
                            "close": candle.close, "volume": candle.volume}
    if verdict is not None:
        data["status"] = verdict.status
        if verdict.reasons:
            data["reasons"] = list(verdict.reasons)
    return data


def fill_data(fill: Fill) -> dict[str, Any]:
    return {"ts": fill.ts, "side": fill.side, "quantity": str(fill.quantity), "price": str(fill.price),
            "fee": str(fill.fee), "realized_pnl": str(fill.realized_pnl), "reason": fill.reason,
            "position_id": fill.position_id}


def portfolio_data(snapshot: PortfolioSnapshot) -> dict[str, Any]:
    return {"ts": snapshot.ts, "cash": str(snapshot.cash), "position_value": str(snapshot.position_value),
            "equity": str(snapshot.equity), "open_positions": snapshot.open_positions}


def prediction_data(prediction: Prediction) -> dict[str, Any]:
    return {"ts": prediction.ts, "probability_up": prediction.probability_up,
            "model_version": prediction.model_version, "duration_s": prediction.duration_s}


class WsFeed(BaseListener):
    """Engine listener; owns the feed's listening socket and the fan-out process that serves its clients.

    ``health_report`` gives the health document a snapshot starts with (``HealthMonitor.report``)."""

    def __init__(self, view: WorkerView, settings: FeedSettings, health_report: Callable[[], dict[str, Any]]) -> None:
        self.view = view
        self.health_report = health_report
        self.symbol = settings.symbol
        self.host, self.port = settings.http_host, settings.ws_port
        self.bound_port: int | None = None
        self.queue_size = settings.ws_client_queue_size
        self.flush_interval = settings.ws_flush_interval
        self.snapshot_ttl = settings.cache_ttl_seconds
        self.share_snapshots = settings.feature_cache_size > 0
        self.cpu_priority = settings.ws_fanout_cpu_priority
        self.log_level = logging.getLevelName(logging.getLogger("papertrader").getEffectiveLevel())
        self.recent_trades: deque[Fill] = deque(maxlen=RECENT_TRADES)
        self.fanout_stats: dict[str, int] = {}
        self.fanout_restarts = 0
        self._snapshots_sent = 0
        self._forwarding = False  # engine events matter to the fan-out process (see _update_forwarding)
        self._trades: deque[Fill] = deque(maxlen=MAX_PENDING_TRADES)
        self._candle: tuple[Candle, CandleVerdict] | None = None
        self._prediction: Prediction | None = None
        self._portfolio: PortfolioSnapshot | None = None
        self._health: dict[str, Any] | None = None
        self._pending = False
        self._wake = asyncio.Event()
        self._listener: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_frame = time.monotonic()  # when the fan-out process last sent a frame (or was started)

    # --- what the fan-out process reports ----------------------------------------------------------------------
    def stat(self, name: str) -> int:
        """A counter of the fan-out process: ``clients``, ``slow_disconnects``, ``ignored_inputs``,
        ``snapshot_hits``, ``snapshot_misses``, ``snapshots_received`` (0 while it is not running)."""
        return self.fanout_stats.get(name, 0)

    def client_count(self) -> int:
        return self.stat("clients")

    def cache_lookups(self) -> int:
        """New clients served a snapshot so far (the snapshot cache's lookups)."""
        return self.stat("snapshot_hits") + self.stat("snapshot_misses")

    def cache_hit_ratio(self) -> float | None:
        """Share of new clients served an already built snapshot (FEATURE_CACHE_SIZE / CACHE_TTL_SECONDS), None
        before the first client."""
        total = self.cache_lookups()
        return self.stat("snapshot_hits") / total if total else None

    def fanout_status(self) -> dict[str, Any]:
        """The fan-out process's liveness for ``/health``: alive while it runs and its heartbeat (a stats frame at
        least every second) is at most FANOUT_STALE_SECONDS old; a stopped (SIGSTOP) or hung process is not."""
        pid = self.fanout_pid
        age = time.monotonic() - self._last_frame
        return {"alive": pid is not None and age <= FANOUT_STALE_SECONDS, "pid": pid,
                "heartbeat_age_s": round(age, 1), "restarts": self.fanout_restarts}

    @property
    def fanout_pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    # --- engine listener (hot path: store and wake) ----------------------------------------------------------
    def on_candle(self, candle: Candle, verdict: CandleVerdict) -> None:
        if self._forwarding and type(candle) is Candle:
            self._candle = (candle, verdict)
            if not self._pending:
                self._pending = True
                self._wake.set()

    def on_prediction(self, prediction: Prediction) -> None:
        if self._forwarding:
            self._prediction = prediction

    def on_fill(self, fill: Fill) -> None:
        self.recent_trades.append(fill)
        if self._forwarding:
            self._trades.append(fill)
            if not self._pending:
                self._pending = True
                self._wake.set()

    def on_portfolio(self, snapshot: PortfolioSnapshot) -> None:
        if self._forwarding:
            self._portfolio = snapshot

    def publish_health(self, report: dict[str, Any]) -> None:
        if self._forwarding:
            self._health = report
            if not self._pending:
                self._pending = True
                self._wake.set()

    # --- the fan-out process -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the port here (an error is the worker's, at start) and start the fan-out process on it."""
        self._listener = socket.create_server((self.host, self.port), backlog=1024)
        self.bound_port = self._listener.getsockname()[1]
        try:
            await self._spawn()
        except OSError:
            self._listener.close()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="ws-fanout-supervisor")
        self._flusher = asyncio.create_task(self._flush_loop(), name="ws-flusher")
        log.info("websocket feed listening on %s:%d (fan-out process %d)", self.host, self.bound_port,
                 self._process.pid if self._process else -1)

    async def _spawn(self) -> None:
        assert self._listener is not None
        ours, theirs = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "papertrader.feed.fanout", "--listen-fd", str(self._listener.fileno()),
                "--ipc-fd", str(theirs.fileno()), "--symbol", self.symbol, "--queue-size", str(self.queue_size),
                "--snapshot-ttl", str(self.snapshot_ttl), "--share-snapshots", str(int(self.share_snapshots)),
                "--cpu-priority", self.cpu_priority, "--log-level", self.log_level,
                pass_fds=(self._listener.fileno(), theirs.fileno()), stdin=asyncio.subprocess.DEVNULL)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.fanout_stats, self._snapshots_sent = {}, 0
        self._last_frame = time.monotonic()
        self._update_forwarding()
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)

    async def _supervise(self) -> None:
        """Read the fan-out process's frames; restart it (with backoff) if it exits while the worker runs."""
        failures = 0
        while True:
            started = time.monotonic()
            await self._read_frames()
            code = await self._reap()
            if self._stopping:
                return
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            log.error("websocket fan-out process exited (code %s): %d clients disconnected; restarting it", code,
                      self.client_count())
            self.fanout_stats = {}
            self._update_forwarding()
            while True:
                await asyncio.sleep(RESTART_DELAYS_SECONDS[min(failures, len(RESTART_DELAYS_SECONDS) - 1)])
                if self._stopping:
                    return
                try:
                    await self._spawn()
                    break
                except OSError as exc:
                    failures += 1
                    log.error("websocket fan-out process could not be started (%s); trying again", exc)
            self.fanout_restarts += 1

    async def _read_frames(self) -> None:
        """Handle the fan-out process's frames until it closes its end (it exited) or sends garbage."""
        assert self._reader is not None
        try:
            while True:
                self._on_frame(*await ipc.read(self._reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        except ipc.FrameError as exc:
            log.error("websocket fan-out process: %s", exc)
            if self._process is not None and self._process.returncode is None:
                self._process.kill()

    async def _reap(self) -> int | None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        process = self._process
        if process is None:
            return None
        try:
            return await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            process.kill()
            return await process.wait()

    def _on_frame(self, kind: int, payload: bytes) -> None:
        self._last_frame = time.monotonic()
        if kind == ipc.STATS:
            self.fanout_stats = json.loads(payload)
            self._update_forwarding()
        elif kind == ipc.SNAPSHOT_REQUEST:
            self._send_snapshot()
        elif kind == ipc.LOG:
            level, _, message = payload.decode(errors="replace").partition(" ")
            log.log(int(level) if level.isdigit() else logging.WARNING, "%s", message)

    async def stop(self) -> None:
        self._stopping = True
        if self._flusher is not None:
            self._flusher.cancel()
        if self._writer is not None:
            self._writer.close()  # end of input: the fan-out process closes its clients (1001) and exits
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(self._supervisor, STOP_TIMEOUT_SECONDS * 2)
            except TimeoutError:
                self._supervisor.cancel()
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        if self._listener is not None:
            self._listener.close()

    # --- fan-out -----------------------------------------------------------------------------------------------
    def _message(self, kind: str, data: Any) -> dict[str, Any]:
        return {"type": kind, "symbol": self.symbol, "time": time.time(), "data": data}

    def snapshot_data(self) -> dict[str, Any]:
        """A full snapshot's ``data``: health report, last candle, recent trades, portfolio, features, summary."""
        health = self.health_report()
        facts = self.view.facts()
        candle = facts.last_candle
        return {
            "health": health,
            "candle": candle_data(candle) if candle is not None else None,
            "recent_trades": [fill_data(fill) for fill in self.recent_trades],
            **self._engine_state(facts),
        }

    def _engine_state(self, facts: WorkerFacts | None = None) -> dict[str, Any]:
        """What the messages do not carry exactly: the portfolio valued at the last candle, the features and the
        engine summary (sent with every flush that has engine events)."""
        snapshot = (facts or self.view.facts()).snapshot
        return {"portfolio": portfolio_data(snapshot) if snapshot is not None else None,
                "features": self.view.feature_values(),
                "summary": self.view.summary()}

    def _send_snapshot(self) -> None:
        """Flush what is pending first, so the snapshot is followed by exactly the events after it."""
        self.flush()
        if self._writer is None:
            return
        self._writer.write(ipc.encode(ipc.SNAPSHOT, dumps(self.snapshot_data()).encode()))
        self._snapshots_sent += 1
        self._update_forwarding()

    def _update_forwarding(self) -> None:
        """Engine events go to the fan-out process while it has clients and while a snapshot is on its way (a
        client is about to be registered); otherwise the listeners skip even storing them."""
        self._forwarding = self.client_count() > 0 or self.stat("snapshots_received") < self._snapshots_sent

    def pending_messages(self) -> list[tuple[int, str]]:
        """Serialise what the engine reported since the last flush (each message once), with its frame kind."""
        out: list[tuple[int, dict[str, Any]]] = []
        while self._trades:
            out.append((ipc.EVENT, self._message("trade", fill_data(self._trades.popleft()))))
        if self._candle is not None:
            out.append((ipc.EVENT, self._message("candle", candle_data(*self._candle))))
            self._candle = None
        if self._prediction is not None:
            out.append((ipc.EVENT, self._message("prediction", prediction_data(self._prediction))))
            self._prediction = None
        if self._portfolio is not None:
            out.append((ipc.EVENT, self._message("portfolio", portfolio_data(self._portfolio))))
            self._portfolio = None
        if self._health is not None:
            out.append((ipc.HEALTH, self._message("health", self._health)))
            self._health = None
        return [(kind, dumps(message)) for kind, message in out]

    def flush(self) -> None:
        """Hand the pending messages to the fan-out process (one write; the engine never waits for it)."""
        self._pending = False
        messages = self.pending_messages()
        writer = self._writer
        if not messages or writer is None:
            return
        frames = [ipc.encode(kind, text.encode()) for kind, text in messages]
        if any(kind == ipc.EVENT for kind, _ in messages):
            frames.append(ipc.encode(ipc.STATE, dumps(self._engine_state()).encode()))
        frames.append(ipc.encode(ipc.FLUSH))
        writer.write(b"".join(frames))
        backlog = writer.transport.get_write_buffer_size()
        if backlog > MAX_FANOUT_BACKLOG_BYTES and self._process is not None and self._process.returncode is None:
            log.error("websocket fan-out process is %d MiB behind: restarting it", backlog // 2**20)
            self._process.kill()

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self.flush()
            await asyncio.sleep(self.flush_interval)

