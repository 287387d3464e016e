"""The WebSocket side: connect, subscribe to the candle channel, hand decoded frames on, watch for staleness."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from papertrader.errors import PapertraderError

log = logging.getLogger("papertrader.market.bitvavo")


class StreamError(PapertraderError, RuntimeError):
    """The connection could not be opened, was closed, or went stale."""


class StaleStreamError(StreamError):
    """No message for ``stale_s`` seconds."""


def subscribe_message(symbol: str, interval: str) -> str:
    return json.dumps({"action": "subscribe",
                       "channels": [{"name": "candles", "interval": [interval], "markets": [symbol]}]})


class CandleStream:
    """One WebSocket connection subscribed to ``candles`` for one market and interval."""

    def __init__(self, url: str, symbol: str, interval: str, open_timeout_s: float, stale_s: float) -> None:
        self.url = url
        self.symbol = symbol
        self.interval = interval
        self.open_timeout_s = open_timeout_s
        self.stale_s = stale_s
        self._ws: ClientConnection | None = None

    async def open(self) -> None:
        try:
            self._ws = await connect(self.url, open_timeout=self.open_timeout_s, close_timeout=1.0,
                                     max_size=2**22, ping_interval=20, ping_timeout=20, proxy=None)
            await asyncio.wait_for(self._ws.send(subscribe_message(self.symbol, self.interval)),
                                   self.open_timeout_s)
        except (TimeoutError, OSError, WebSocketException) as exc:
            await self.close()
            kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
            raise StreamError(f"cannot connect to {self.url}: {kind} {str(exc)[:100]}".rstrip()) from None

    async def frames(self) -> AsyncIterator[str | bytes]:
        """Raw frames until the connection fails; raises StreamError / StaleStreamError at the end."""
        ws = self._ws
        if ws is None:
            raise StreamError("stream is not open")
        while True:
            try:
                # asyncio.timeout, not wait_for: wait_for may swallow a cancellation that races a frame (3.11)
                async with asyncio.timeout(self.stale_s):
                    frame = await ws.recv()
            except TimeoutError:
                raise StaleStreamError(f"stream stale: no message for {self.stale_s:g} s") from None
            except WebSocketException as exc:
                raise StreamError(f"stream closed: {type(exc).__name__} {str(exc)[:100]}".rstrip()) from None
            except OSError as exc:
                raise StreamError(f"stream failed: {type(exc).__name__} {str(exc)[:100]}".rstrip()) from None
            yield frame

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), 2.0)
            except (TimeoutError, OSError, WebSocketException):
                pass

    def info(self) -> dict[str, Any]:
        return {"ws_url": self.url, "connected": self._ws is not None}
