"""The WebSocket fan-out process: every client of the feed on 8765 is served here, outside the engine's process.

Python runs one thread at a time per process, so a thousand clients served from the engine's event loop delay
the next candle behind their sends. The worker (``feed/ws.py``) therefore binds the port, starts this process
with the listening socket and one end of a Unix socket pair (``feed/ipc.py``), and only writes each serialised
message once per flush to that pair. This process accepts the connections, sends every message to every client
(one write per client per flush), keeps what a socket cannot take yet in a backlog of at most WS_CLIENT_QUEUE_SIZE
messages and closes a client whose backlog overflows with code 1013, answers ``ping``, ignores bad input, and
serves each new client's ``snapshot`` from state it keeps current from the stream (``snapshot_state.py``): the
worker builds a full snapshot only when the first client arrives. It exits when the worker closes the pair (or
dies); the worker restarts it if it exits on its own.

The worker runs it at WS_FANOUT_CPU_PRIORITY (``idle``: Linux SCHED_IDLE), so when clients keep it busy the engine
still gets the CPU at once.

    python -m papertrader.feed.fanout --listen-fd N --ipc-fd M [--queue-size 256] [--snapshot-ttl 600]
                                      [--cpu-priority idle]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections import deque

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from papertrader.feed import ipc
from papertrader.feed.snapshot_state import SnapshotState

log = logging.getLogger("papertrader.feed")

SLOW_CLIENT_CLOSE_CODE = 1013
MAX_CLIENT_MESSAGE_BYTES = 4096
STATS_INTERVAL_SECONDS = 0.05
HEARTBEAT_SECONDS = 1.0
PONG_TEMPLATE = '{"type":"pong","symbol":%s,"time":%.6f,"data":{}}'


class _Client:
    """One connection: messages the socket could not take yet wait in ``backlog`` (at most the queue size)."""

    __slots__ = ("backlog", "closed", "drainer", "peer", "ws")

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.backlog: deque[bytes] = deque()
        self.drainer: asyncio.Task[None] | None = None
        self.peer = "{}:{}".format(*ws.remote_address[:2]) if ws.remote_address else "?"
        self.closed = False


class FanOut:
    """Clients, their backlogs and the snapshot state; talks to the worker through ``ipc_writer``."""

    def __init__(self, ipc_writer: asyncio.StreamWriter, symbol: str, queue_size: int, snapshot_ttl: float,
                 share_snapshots: bool) -> None:
        self.ipc = ipc_writer
        self.symbol = json.dumps(symbol)
        self.queue_size = queue_size
        self.state = SnapshotState(symbol, snapshot_ttl, share_snapshots)
        self.clients: set[_Client] = set()  # registered: they receive every broadcast
        self.waiting: list[_Client] = []  # connected, waiting for the worker's full snapshot
        self.request_pending = False
        self.counters = {"slow_disconnects": 0, "ignored_inputs": 0, "snapshots_received": 0}
        self._stats_dirty = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        self._batch: list[bytes] = []

    # --- from the worker -------------------------------------------------------------------------------------
    def on_frame(self, kind: int, payload: bytes) -> None:
        """Messages of one flush are collected and sent together at its ``FLUSH`` frame."""
        if kind in (ipc.EVENT, ipc.HEALTH):
            self.state.apply_message(payload)
            self._batch.append(payload)
        elif kind == ipc.STATE:
            self.state.apply_state(payload)
        elif kind == ipc.FLUSH:
            self.end_of_flush()
        elif kind == ipc.SNAPSHOT:
            self.end_of_flush()
            self.on_snapshot(payload)
        else:
            log.warning("websocket fan-out: unknown frame kind %d from the worker ignored", kind)

    def end_of_flush(self) -> None:
        """Send the flush's messages to every registered client, one write per client."""
        if self._batch:
            batch, self._batch = self._batch, []
            for client in list(self.clients):
                self._deliver(client, batch)

    def on_snapshot(self, payload: bytes) -> None:
        self.counters["snapshots_received"] += 1
        self.state.load(payload)
        self.request_pending = False
        waiting, self.waiting = self.waiting, []
        for client in waiting:
            self._give_snapshot(client)
        self._stats_dirty.set()

    # --- clients ---------------------------------------------------------------------------------------------
    async def handler(self, ws: ServerConnection) -> None:
        client = _Client(ws)
        self.send_snapshot(client)
        try:
            async for message in ws:
                self._on_input(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._forget(client)

    def send_snapshot(self, client: _Client) -> None:
        """Serve the snapshot from the state kept here; without a fresh one, ask the worker and wait for it."""
        if self.state.fresh:
            self._give_snapshot(client)
            return
        if client not in self.waiting:
            self.waiting.append(client)
        if not self.request_pending:
            self.request_pending = True
            self.ipc.write(ipc.encode(ipc.SNAPSHOT_REQUEST))

    def _give_snapshot(self, client: _Client) -> None:
        if client.closed:
            return
        self._deliver(client, [self.state.text()])
        if not client.closed:
            self.clients.add(client)
        self._stats_dirty.set()

    def _deliver(self, client: _Client, batch: list[bytes]) -> None:
        """Write now if the socket takes it; else keep it in the client's backlog (a full one: too slow)."""
        if client.backlog or client.ws.paused:
            client.backlog.extend(batch)
            if len(client.backlog) > self.queue_size:
                self._drop_slow(client)
            elif client.drainer is None:
                client.drainer = asyncio.create_task(self._drain(client))
            return
        self._write(client, batch)

    def _write(self, client: _Client, batch: list[bytes]) -> None:
        ws = client.ws
        if ws.protocol.state is not State.OPEN:
            return  # closing: the handler forgets it
        protocol = ws.protocol
        for data in batch:
            protocol.send_text(data)
        ws.transport.write(b"".join(protocol.data_to_send()))  # text frames only: one system call

    async def _drain(self, client: _Client) -> None:
        """Wait until a backed-up socket takes data again, then write the backlog."""
        try:
            while client.backlog and not client.closed:
                await client.ws.drain()
                batch = list(client.backlog)
                client.backlog.clear()
                self._write(client, batch)
        except (ConnectionClosed, ConnectionError):
            self._forget(client)
        finally:
            client.drainer = None

    def _on_input(self, client: _Client, message: str | bytes) -> None:
        kind = None
        if isinstance(message, str):
            try:
                data = json.loads(message)
                kind = data.get("type") if isinstance(data, dict) else None
            except ValueError:
                kind = None
        if kind == "ping":
            self._deliver(client, [(PONG_TEMPLATE % (self.symbol, time.time())).encode()])
        elif kind == "snapshot":
            self.send_snapshot(client)
        else:
            ignored = self.counters["ignored_inputs"] = self.counters["ignored_inputs"] + 1
            self._stats_dirty.set()
            if ignored <= 10 or ignored % 1000 == 0:
                log.info("websocket client %s: ignored input (%d so far)", client.peer, ignored)

    def _forget(self, client: _Client) -> None:
        client.closed = True
        client.backlog.clear()
        self.clients.discard(client)
        if client in self.waiting:
            self.waiting.remove(client)
        if not self.clients:
            self.state.forget()  # the worker stops sending when it hears there are no clients
        self._stats_dirty.set()

    def _drop_slow(self, client: _Client) -> None:
        if client.closed:
            return
        self._forget(client)
        self.counters["slow_disconnects"] += 1
        log.warning("websocket client %s too slow (%d messages queued): closing with code %d", client.peer,
                    self.queue_size, SLOW_CLIENT_CLOSE_CODE)
        if client.drainer is not None:
            client.drainer.cancel()
        task = asyncio.create_task(self._close(client.ws))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, ws: ServerConnection) -> None:
        try:
            await asyncio.wait_for(ws.close(SLOW_CLIENT_CLOSE_CODE, "slow consumer: queue full"), 3)
        except Exception:  # noqa: BLE001 - the handshake could not complete: drop the TCP connection
            ws.transport.abort()

    # --- to the worker ---------------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        return dict(self.counters, clients=len(self.clients), snapshot_hits=self.state.hits,
                    snapshot_misses=self.state.misses)

    async def report_stats(self) -> None:
        """Send the counters when they change, at most every STATS_INTERVAL_SECONDS, and at least every
        HEARTBEAT_SECONDS (the worker's proof that this process is alive, for ``/health``)."""
        self._stats_dirty.set()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stats_dirty.wait(), HEARTBEAT_SECONDS)
            self._stats_dirty.clear()
            self.ipc.write(ipc.encode(ipc.STATS, json.dumps(self.stats()).encode()))
            await asyncio.sleep(STATS_INTERVAL_SECONDS)


class _IpcLogHandler(logging.Handler):
    """Log records go to the worker, which writes them to its own log files."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(ipc.encode(ipc.LOG, f"{record.levelno} {record.getMessage()}".encode()))
        except Exception:  # noqa: BLE001 - the worker has gone; nothing to log to
            pass


async def serve_clients(args: argparse.Namespace) -> None:
    listener = socket.socket(fileno=args.listen_fd)
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=args.ipc_fd))
    root = logging.getLogger("papertrader")
    root.addHandler(_IpcLogHandler(writer))
    root.setLevel(args.log_level)
    root.propagate = False
    fan_out = FanOut(writer, args.symbol, args.queue_size, args.snapshot_ttl, args.share_snapshots)
    server = await serve(fan_out.handler, sock=listener, max_size=MAX_CLIENT_MESSAGE_BYTES, close_timeout=2,
                         ping_interval=20, ping_timeout=20, max_queue=4, compression=None)
    stats = asyncio.create_task(fan_out.report_stats())
    try:
        while True:
            fan_out.on_frame(*await ipc.read(reader))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the worker closed the pair (stopping) or died
    finally:
        stats.cancel()
        server.close(close_connections=True)
        try:
            await asyncio.wait_for(server.wait_closed(), 5)
        except TimeoutError:
            pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m papertrader.feed.fanout", description=__doc__.split("\n")[0])
    parser.add_argument("--listen-fd", type=int, required=True, help="a listening TCP socket (the feed's port)")
    parser.add_argument("--ipc-fd", type=int, required=True, help="this end of the worker's Unix socket pair")
    parser.add_argument("--symbol", default="")
    parser.add_argument("--queue-size", type=int, default=256, help="messages queued per client (1013 beyond)")
    parser.add_argument("--snapshot-ttl", type=float, default=600.0)
    parser.add_argument("--share-snapshots", type=int, choices=(0, 1), default=1)
    parser.add_argument("--cpu-priority", choices=("idle", "low", "normal"), default="normal",
                        help="idle: SCHED_IDLE (runs only on CPU time nothing else wants); low: nice 10")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def lower_cpu_priority(priority: str) -> None:
    """Give the engine's process the CPU first: the clients' work waits, the engine's candles do not."""
    if priority == "idle":
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except (AttributeError, OSError) as exc:  # not Linux, or not allowed: the lowest niceness instead
            log.warning("websocket fan-out: SCHED_IDLE unavailable (%s); running at nice 19", exc)
            os.nice(19)
    elif priority == "low":
        os.nice(10)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lower_cpu_priority(args.cpu_priority)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the worker decides
    asyncio.run(serve_clients(args))


if __name__ == "__main__":
    main()
