"""
Record numbers that are never reused: :class:`SequenceStore`.

``seq`` numbers every published record.  A consumer (an SSE client's
``Last-Event-ID``, a broker sink's deduplication) relies on one number
meaning one record, across restarts and crashes of the daemon, so the
numbers are kept in a state directory (``--state-dir``):

* ``seq.json`` holds a *high-water mark* ``reserved``: no number at or
  above it has ever been given out.  Before the daemon gives out numbers
  from a new block, it durably raises the mark past the block (the file
  is written to a temporary file, ``fsync``'ed, renamed over the old one,
  and the directory ``fsync``'ed), so a crash at any moment leaves a mark
  above every number used.
* A start begins at the mark and reserves its first block at once.
* A clean stop writes the mark down to the number after the last one
  used, so the next start continues without a gap.  After a crash the
  numbers reserved but not used are skipped: gaps are allowed, reuse
  never.
* ``seq.lock`` is held (``flock``) while the store is open: a second
  daemon on the same state directory refuses to start.

The directory is created ``0700`` and the files ``0600``.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from typing import Any, Dict, Optional

from .startup import StartupError

__all__ = ["SequenceStore", "MemorySequence", "STATE_FILE", "DEFAULT_BLOCK"]

STATE_FILE = "seq.json"
LOCK_FILE = "seq.lock"
STATE_VERSION = 1
#: Numbers reserved per durable write.
DEFAULT_BLOCK = 1000


class MemorySequence:
    """Numbers from C{first} on, kept nowhere (an embedding application's default)."""

    def __init__(self, first: int = 1) -> None:
        self.last = first - 1
        self.first = first

    def next(self) -> int:
        self.last += 1
        return self.last

    def close(self) -> None:
        pass


class SequenceStore:
    """
    The record numbers of a state directory; see the module docstring.

    :param directory: the state directory (created ``0700`` if missing).
    :param block: how many numbers one durable write reserves.
    :param remove: remove the directory on :meth:`close` (a temporary one).
    :raises StartupError: the directory cannot be made or used, its state
        file is unreadable, or another process holds it.
    """

    def __init__(self, directory: str, block: int = DEFAULT_BLOCK, remove: bool = False) -> None:
        if block < 1:
            raise ValueError(f"block must be positive, not {block!r}")
        self.directory = os.path.abspath(directory)
        self.block = block
        self._remove = remove
        self._lock_fd: Optional[int] = None
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._lock_fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StartupError(f"state directory {self.directory!r}: {e.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._lock_fd)
            self._lock_fd = None
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StartupError(f"state directory {self.directory!r} is in use by another process") from None
            raise StartupError(f"state directory {self.directory!r}: {e.strerror}") from None
        try:
            start = self._read()
            #: The first number this run gives out.
            self.first = start
            #: The last number given out (C{first - 1} before the first).
            self.last = start - 1
            self._limit = start
            self._reserve()
        except BaseException:
            self._unlock()
            raise

    @property
    def path(self) -> str:
        return os.path.join(self.directory, STATE_FILE)

    def _read(self) -> int:
        try:
            with open(self.path, encoding="utf-8") as f:
                state: Dict[str, Any] = json.load(f)
        except FileNotFoundError:
            return 1
        except (OSError, ValueError) as e:
            raise StartupError(f"{self.path}: unreadable ({e}); move it away only if no consumer relies on seq") from None
        reserved = state.get("reserved") if isinstance(state, dict) else None
        if state.get("version") != STATE_VERSION or isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 1:
            raise StartupError(f"{self.path}: not a version {STATE_VERSION} state file with a reserved mark")
        return reserved

    def _write(self, reserved: int) -> None:
        temporary = self.path + ".tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps({"version": STATE_VERSION, "reserved": reserved}).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _reserve(self) -> None:
        """Durably raise the mark by a block, before any of it is used."""
        limit = self._limit + self.block
        try:
            self._write(limit)
        except OSError as e:
            raise StartupError(f"cannot write {self.path}: {e.strerror}") from None
        self._limit = limit

    def next(self) -> int:
        """
        The next number.

        :raises OSError: a new block could not be reserved (the number is
            then not given out).
        """
        if self._lock_fd is None:
            raise RuntimeError("the sequence store is closed")
        if self.last + 1 >= self._limit:
            try:
                self._reserve()
            except StartupError as e:
                raise OSError(str(e)) from None
        self.last += 1
        return self.last

    def close(self) -> None:
        """
        A clean stop: lower the mark to the number after the last used (no
        gap at the next start), release the directory (remove it if it
        was temporary).  Idempotent.
        """
        if self._lock_fd is None:
            return
        try:
            if not self._remove:
                self._write(self.last + 1)
        finally:
            self._unlock()
            if self._remove:
                shutil.rmtree(self.directory, ignore_errors=True)

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)
