"""One client's WebSocket on the gateway: its pairs and a bounded queue of frames drained by its own task.

The upstream frame loop only ever puts frames into queues, so a client that stops reading (a frozen pod, a
full network path) never holds up the other clients or the upstream connection. A client whose queue is full
is closed with 1013 (try again later): it reconnects and gap-fills through REST like after any drop.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

Pair = tuple[str, str]

log = logging.getLogger("papertrader.gateway")

SLOW_CLIENT_CLOSE = 1013


class ClientLink:
    """The frames owed to one client, sent in order by one task."""

    def __init__(self, ws: web.WebSocketResponse, max_queued: int, peer: str) -> None:
        self.ws = ws
        self.peer = peer
        self.pairs: set[Pair] = set()
        self._queue: asyncio.Queue[str] = asyncio.Queue(max(1, max_queued))
        self.overflowed = False
        self._task = asyncio.get_running_loop().create_task(self._drain())

    def offer(self, text: str) -> bool:
        """Queue a frame; False (and the client is being closed) when its queue is full."""
        if self.overflowed:
            return False
        try:
            self._queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("client %s stopped reading (%d frames queued): closing it with %d", self.peer,
                        self._queue.qsize(), SLOW_CLIENT_CLOSE)
            self._task.cancel()
            asyncio.get_running_loop().create_task(
                self.ws.close(code=SLOW_CLIENT_CLOSE, message=b"too slow: reconnect and gap-fill"))
            return False

    async def _drain(self) -> None:
        while True:
            text = await self._queue.get()
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def close(self, code: int, message: bytes) -> None:
        self._task.cancel()
        await self.ws.close(code=code, message=message)

    def stop(self) -> None:
        """The client has gone: stop its sender."""
        self._task.cancel()
