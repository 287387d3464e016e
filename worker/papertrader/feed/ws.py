"""The WebSocket feed on port 8765: JSON messages ``snapshot|candle|prediction|trade|portfolio|health``.

Message envelope: ``{"type": ..., "symbol": "BTC-EUR", "time": <server Unix seconds>, "data": {...}}``.
A new client first receives a ``snapshot`` (health report, portfolio, last candle, features, recent trades).

The engine never waits for clients: its listener calls only store the latest event (and append trades to a
bounded deque) and wake the flusher task. The flusher serialises each message once and puts it on every
client's bounded queue; a per-client task sends from that queue. A client whose queue is full (it does not
read, or reads too slowly) is disconnected with close code 1013 ("try again later") and a log line.
``candle``, ``prediction`` and ``portfolio`` are conflated to the latest value per flush (flushes at most every
WS_FLUSH_INTERVAL seconds, 50 ms by default); trades are never conflated. At a live rate (one candle a minute)
that is every candle; a replay, or a live burst such as a backfill after a reconnect, sends the latest state of
each flush. Client input: ``{"type": "ping"}`` answers ``pong``, ``{"type": "snapshot"}`` re-sends the snapshot;
anything else (bad JSON, binary, unknown types) is ignored; frames over 4 KiB close the connection (1009).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from papertrader.events import BaseListener, CandleVerdict, Fill, PortfolioSnapshot, Prediction
from papertrader.features.cache import TtlCache
from papertrader.market.candle import Candle

if TYPE_CHECKING:
    from papertrader.observability.wiring import Observability

log = logging.getLogger("papertrader.feed")

SLOW_CLIENT_CLOSE_CODE = 1013
MAX_CLIENT_MESSAGE_BYTES = 4096
RECENT_TRADES = 20
MAX_PENDING_TRADES = 1000


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


class _Client:
    __slots__ = ("ws", "queue", "task", "peer")

    def __init__(self, ws: ServerConnection, size: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(size)
        self.task: asyncio.Task[None] | None = None
        self.peer = "%s:%s" % tuple(ws.remote_address[:2]) if ws.remote_address else "?"


class WsFeed(BaseListener):
    """Engine listener + WebSocket server."""

    def __init__(self, obs: Observability, host: str, port: int) -> None:
        self.obs = obs
        self.symbol = obs.runner.engine.symbol
        self.host, self.port = host, port
        self.bound_port: int | None = None
        self.queue_size = obs.runner.settings.ws_client_queue_size
        self.flush_interval = obs.runner.settings.ws_flush_interval
        self.clients: set[_Client] = set()
        self.slow_disconnects = 0
        self.ignored_inputs = 0
        self.messages_sent = 0
        self.recent_trades: deque[Fill] = deque(maxlen=RECENT_TRADES)
        settings = obs.runner.settings
        self.cache: TtlCache[str] = TtlCache(settings.feature_cache_size, settings.cache_ttl_seconds)
        self._trades: deque[Fill] = deque(maxlen=MAX_PENDING_TRADES)
        self._candle: tuple[Candle, CandleVerdict] | None = None
        self._prediction: Prediction | None = None
        self._portfolio: PortfolioSnapshot | None = None
        self._health: dict[str, Any] | None = None
        self._pending = False
        self._wake = asyncio.Event()
        self._server: Server | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def client_count(self) -> int:
        return len(self.clients)

    # --- engine listener (hot path: store and wake) ----------------------------------------------------------
    def on_candle(self, candle: Candle, verdict: CandleVerdict) -> None:
        if self.clients and type(candle) is Candle:
            self._candle = (candle, verdict)
            if not self._pending:
                self._pending = True
                self._wake.set()

    def on_prediction(self, prediction: Prediction) -> None:
        if self.clients:
            self._prediction = prediction

    def on_fill(self, fill: Fill) -> None:
        self.recent_trades.append(fill)
        if self.clients:
            self._trades.append(fill)
            if not self._pending:
                self._pending = True
                self._wake.set()

    def on_portfolio(self, snapshot: PortfolioSnapshot) -> None:
        if self.clients:
            self._portfolio = snapshot

    def publish_health(self, report: dict[str, Any]) -> None:
        if self.clients:
            self._health = report
            if not self._pending:
                self._pending = True
                self._wake.set()

    # --- server ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await serve(self._handler, self.host, self.port, max_size=MAX_CLIENT_MESSAGE_BYTES,
                                   close_timeout=2, ping_interval=20, ping_timeout=20, max_queue=4)
        sockets = list(self._server.sockets)
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        self._flusher = asyncio.create_task(self._flush_loop(), name="ws-flusher")
        log.info("websocket feed listening on %s:%d", self.host, self.bound_port)

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        if self._server is not None:
            self._server.close(close_connections=True)
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                pass
        for task in list(self._closing):
            task.cancel()

    async def _handler(self, ws: ServerConnection) -> None:
        client = _Client(ws, self.queue_size)
        client.queue.put_nowait(self.snapshot())
        self.clients.add(client)
        client.task = asyncio.create_task(self._send_loop(client))
        try:
            async for message in ws:
                self._on_input(client, message)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            if client.task is not None and not client.task.done():
                client.task.cancel()

    async def _send_loop(self, client: _Client) -> None:
        ws, queue = client.ws, client.queue
        try:
            while True:
                text = await queue.get()
                await ws.send(text)
                self.messages_sent += 1
        except ConnectionClosed:
            self.clients.discard(client)
        except asyncio.CancelledError:
            pass

    def _on_input(self, client: _Client, message: str | bytes) -> None:
        kind = None
        if isinstance(message, str):
            try:
                data = json.loads(message)
                kind = data.get("type") if isinstance(data, dict) else None
            except ValueError:
                kind = None
        if kind == "ping":
            self._enqueue(client, dumps(self._message("pong", {})))
        elif kind == "snapshot":
            self._enqueue(client, self.snapshot())
        else:
            self.ignored_inputs += 1
            if self.ignored_inputs <= 10 or self.ignored_inputs % 1000 == 0:
                log.info("websocket client %s: ignored input (%d so far)", client.peer, self.ignored_inputs)

    def _enqueue(self, client: _Client, text: str) -> bool:
        try:
            client.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            self._drop_slow(client)
            return False

    def _drop_slow(self, client: _Client) -> None:
        if client not in self.clients:
            return
        self.clients.discard(client)
        self.slow_disconnects += 1
        log.warning("websocket client %s too slow (%d messages queued): closing with code %d", client.peer,
                    self.queue_size, SLOW_CLIENT_CLOSE_CODE)
        if client.task is not None:
            client.task.cancel()
        task = asyncio.create_task(self._close(client.ws))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, ws: ServerConnection) -> None:
        try:
            await asyncio.wait_for(ws.close(SLOW_CLIENT_CLOSE_CODE, "slow consumer: queue full"), 3)
        except Exception:  # noqa: BLE001 - the handshake could not complete: drop the TCP connection
            ws.transport.abort()

    # --- fan-out -----------------------------------------------------------------------------------------------
    def _message(self, kind: str, data: Any) -> dict[str, Any]:
        return {"type": kind, "symbol": self.symbol, "time": time.time(), "data": data}

    def snapshot(self) -> str:
        """The serialised ``snapshot`` message for a new client. It is built once per engine position (the seed's
        feature cache, FEATURE_CACHE_SIZE / CACHE_TTL_SECONDS): a thousand clients connecting between two candles
        cost one health report, summary and serialisation, not a thousand."""
        engine = self.obs.runner.engine
        return self.cache.get_or_compute((engine.items, engine.portfolio.fills, tuple(engine.risk.state.halts)),
                                         self._build_snapshot)

    def _build_snapshot(self) -> str:
        engine = self.obs.runner.engine
        candle = engine.last_candle
        snapshot = engine.portfolio.snapshot(candle.ts, candle.close) if candle is not None else None
        return dumps(self._message("snapshot", {
            "health": self.obs.health.report(),
            "portfolio": portfolio_data(snapshot) if snapshot is not None else None,
            "candle": candle_data(candle) if candle is not None else None,
            "features": {name: value for name, value in engine.features.values.items() if value == value},
            "recent_trades": [fill_data(fill) for fill in self.recent_trades],
            "summary": engine.summary(),
        }))

    def pending_messages(self) -> list[str]:
        """Serialise what the engine reported since the last flush (each message once)."""
        out: list[dict[str, Any]] = []
        while self._trades:
            out.append(self._message("trade", fill_data(self._trades.popleft())))
        if self._candle is not None:
            out.append(self._message("candle", candle_data(*self._candle)))
            self._candle = None
        if self._prediction is not None:
            out.append(self._message("prediction", prediction_data(self._prediction)))
            self._prediction = None
        if self._portfolio is not None:
            out.append(self._message("portfolio", portfolio_data(self._portfolio)))
            self._portfolio = None
        if self._health is not None:
            out.append(self._message("health", self._health))
            self._health = None
        return [dumps(message) for message in out]

    def broadcast(self, texts: list[str]) -> None:
        for client in list(self.clients):
            queue = client.queue
            for text in texts:
                try:
                    queue.put_nowait(text)
                except asyncio.QueueFull:
                    self._drop_slow(client)
                    break

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._pending = False
            texts = self.pending_messages()
            if texts and self.clients:
                self.broadcast(texts)
            await asyncio.sleep(self.flush_interval)
