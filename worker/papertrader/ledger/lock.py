"""``<state-dir>/worker.lock``: one worker per state directory.

An exclusive ``fcntl.flock`` on a file inside the state directory, held from before the ledger is opened until
the worker exits. The kernel drops the lock when the process dies (even SIGKILL), so a crashed worker never
leaves a stale lock behind; the file only carries the holder's pid for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from papertrader.ledger.store import LedgerError

LOCK_NAME = "worker.lock"


class StateDirBusy(LedgerError):
    """Another live process holds the state directory's lock. The message names its pid."""


class StateDirLock:
    """An exclusive, non-blocking lock on one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StateDirBusy` naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateDirBusy(f"state directory {self.path.parent} is in use by another worker (pid {holder}); "
                               "stop it first or use another --state-dir") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (safe to call more than once). The file stays: removing it would race a new holder."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
