"""Frames between a worker and its WebSocket fan-out process over a Unix socket pair.

A frame is a 4-byte big-endian payload length, a 1-byte kind and the payload. Worker -> fan-out: ``EVENT`` and
``HEALTH`` (a serialised feed message to broadcast), ``SNAPSHOT`` (a full snapshot's data, answering a request),
``STATE`` (portfolio at the last candle, features, summary: with each flush that had engine events), ``FLUSH``
(ends a flush: the messages since the last one go out together).
Fan-out -> worker: ``SNAPSHOT_REQUEST`` (a client needs a fresh snapshot), ``STATS`` (JSON counters) and ``LOG``
(``"<levelno> <message>"``, logged by the worker so the fan-out's lines land in the worker's log files).
"""

from __future__ import annotations

import asyncio
import struct

from papertrader.errors import PapertraderError

HEADER = struct.Struct("!IB")
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024

EVENT = ord("e")
HEALTH = ord("h")
STATE = ord("d")
FLUSH = ord("f")
SNAPSHOT = ord("s")
SNAPSHOT_REQUEST = ord("r")
STATS = ord("t")
LOG = ord("l")


class FrameError(PapertraderError, ValueError):
    """The peer sent something that is not a frame (a bug, or the wrong file descriptor)."""


def encode(kind: int, payload: bytes = b"") -> bytes:
    """One frame."""
    return HEADER.pack(len(payload), kind) + payload


async def read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame's kind and payload; ``asyncio.IncompleteReadError`` when the peer has gone."""
    length, kind = HEADER.unpack(await reader.readexactly(HEADER.size))
    if length > MAX_PAYLOAD_BYTES:
        raise FrameError(f"frame of {length} bytes (kind {kind}) exceeds {MAX_PAYLOAD_BYTES}")
    return kind, (await reader.readexactly(length) if length else b"")
