"""The credential of the worker's control endpoints (``POST /control/halt``, ``/control/resume``).

In a cluster the operator creates one Secret per PaperTrader (``<trader>-control``, key ``token``), mounts it
into every worker of that trader and sets ``CONTROL_TOKEN_FILE``; the operator (and the fleet notifier) present
it as ``Authorization: Bearer <token>``. A request without it, or with another token, gets 401 and is logged.
The file is read again when it changes on disk, so a rotated Secret takes effect without a restart.

Outside a cluster, with neither ``CONTROL_TOKEN`` nor ``CONTROL_TOKEN_FILE`` set, control stays open (a single
``papertrader run`` on a laptop) and the worker says so once at start-up.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

log = logging.getLogger("papertrader.http")


class ControlCredential:
    """Decides whether a control request carries the configured bearer token."""

    def __init__(self, token: str | None = None, token_file: Path | None = None) -> None:
        self._token = token.strip() if token else None
        self._file = token_file
        self._file_stamp: tuple[int, int] | None = None
        if token_file is not None:
            self._current()  # say at start-up, not at the first halt, when the mounted Secret is unreadable

    @property
    def required(self) -> bool:
        """True when control requests must present a token."""
        return self._token is not None or self._file is not None

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value grants control (always, when no token is configured)."""
        if not self.required:
            return True
        expected = self._current()
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip() or expected is None:
            return False
        return hmac.compare_digest(presented.strip().encode(), expected.encode())

    def _current(self) -> str | None:
        if self._file is None:
            return self._token
        try:
            stat = self._file.stat()
            if (stat.st_mtime_ns, stat.st_size) == self._file_stamp:
                return self._token
            token = self._file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            self._unusable(f"cannot be read ({exc})")
            return None
        if not token:
            self._unusable("the file is empty")
            return None
        self._token, self._file_stamp = token, (stat.st_mtime_ns, stat.st_size)
        return token

    def _unusable(self, why: str) -> None:
        """Fail closed: no token, every control request refused (trading itself goes on)."""
        log.error("CONTROL_TOKEN_FILE %s: %s; control requests are refused", self._file, why)
        self._token, self._file_stamp = None, None
