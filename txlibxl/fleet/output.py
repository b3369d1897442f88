"""
The consumer's JSON lines: :class:`LinesOutput`.

Each delivered record is written as one line (its JSON object, as the
daemon published it), with one ``write``.  To a file, :meth:`LinesOutput.resume`
first cuts the file back to the length a checkpoint recorded, so that the
records after the checkpoint, read again, are not there twice.  Standard
output cannot be cut: there the records since the last checkpoint are
printed again after a crash (each line carries its host and seq, so a
reader can drop them).
"""
from __future__ import annotations

import os
from typing import Optional

__all__ = ["LinesOutput"]


class LinesOutput:
    """
    JSON lines to C{path} (``-`` for standard output).

    :raises OSError: the file cannot be opened.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if path == "-":
            self._fd = os.dup(1)
            self.seekable = False
        else:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self.seekable = True
        self._dirty = False

    def resume(self, size: Optional[int]) -> int:
        """
        Cut a file output back to C{size} bytes (nothing for ``None`` or
        standard output); return how many bytes were cut.
        """
        if not self.seekable or size is None:
            return 0
        now = os.fstat(self._fd).st_size
        if now <= size:
            return 0
        os.ftruncate(self._fd, size)
        return now - size

    def write(self, line: bytes) -> None:
        """Write C{line} and a newline."""
        data = line + b"\n"
        while data:
            n = os.write(self._fd, data)
            data = data[n:]
        self._dirty = True

    def size(self) -> Optional[int]:
        """The file's length now (``None`` for standard output)."""
        return os.fstat(self._fd).st_size if self.seekable else None

    def sync(self) -> None:
        """Make what was written durable (before a checkpoint records its length)."""
        if self._dirty and self.seekable:
            os.fsync(self._fd)
        self._dirty = False

    def close(self) -> None:
        self.sync()
        os.close(self._fd)
