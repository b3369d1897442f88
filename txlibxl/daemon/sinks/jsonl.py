"""
JSON lines: one :class:`~txlibxl.daemon.records.EventRecord` object per line.

``--output -`` writes to the process's real standard output (file
descriptor 1, not ``sys.stdout``, which twistd redirects into its log when
it logs to a file); ``--output FILE`` appends to C{FILE}.  Each line is
written and flushed as a whole, so a reader never sees half a record.
"""
from __future__ import annotations

import os
from typing import IO, Optional

from twisted.logger import Logger
from zope.interface import implementer

from ..records import EventRecord
from . import IEventSink

__all__ = ["JSONLinesSink"]


@implementer(IEventSink)
class JSONLinesSink:
    """
    Writes records as JSON lines to C{stream} (a text file object).  The
    sink closes the stream when it is closed if C{owns_stream}.
    """

    name = "jsonl"
    _log = Logger()

    def __init__(self, stream: IO[str], owns_stream: bool = True) -> None:
        self._stream: Optional[IO[str]] = stream
        self._owns = owns_stream

    @classmethod
    def to_path(cls, path: str) -> "JSONLinesSink":
        """
        A sink writing to C{path}: ``-`` for standard output (file
        descriptor 1, duplicated), anything else a file opened for
        appending (created if needed).

        :raises OSError: the file cannot be opened.
        """
        if path == "-":
            return cls(os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1))
        return cls(open(path, "a", encoding="utf-8", buffering=1))

    def publish(self, record: EventRecord) -> None:
        if self._stream is None:
            return
        self._stream.write(record.to_json() + "\n")
        self._stream.flush()

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.flush()
            finally:
                if self._owns:
                    stream.close()
