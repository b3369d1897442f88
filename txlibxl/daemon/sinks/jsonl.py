"""
JSON lines: one :class:`~txlibxl.daemon.records.EventRecord` object per line.

``--output -`` writes to the process's real standard output (file
descriptor 1, not ``sys.stdout``, which twistd redirects into its log when
it logs to a file); ``--output FILE`` appends to C{FILE}.  Each line is
written as a whole with one unbuffered ``write``, so a reader never sees
half a record.

A closed output (the reader of a pipe went away: ``--output - | head -3``)
ends the sink: ``JSONLinesSink.publish`` raises
:class:`~txlibxl.daemon.sinks.SinkClosed` once, the sink closes its file
and takes no more records.
"""
from __future__ import annotations

import errno
import io
import os
from typing import IO, Any, Optional

from twisted.logger import Logger
from zope.interface import implementer

from ..records import EventRecord
from . import IEventSink, SinkClosed

__all__ = ["JSONLinesSink"]

#: What a write to an output whose reader has gone fails with.
_CLOSED = (errno.EPIPE, errno.ECONNRESET)


@implementer(IEventSink)
class JSONLinesSink:
    """
    Writes records as JSON lines to C{stream}: a text file object, or a
    binary one (each line is then encoded as UTF-8 and written in one
    call).  The sink closes the stream when it is closed if C{owns_stream}.

    :ivar description: what the sink writes to, for logs.
    """

    name = "jsonl"
    _log = Logger()

    def __init__(self, stream: IO[Any], owns_stream: bool = True, description: str = "") -> None:
        self._stream: Optional[IO[Any]] = stream
        self._owns = owns_stream
        self._binary = not isinstance(stream, io.TextIOBase)
        self.description = description or getattr(stream, "name", "") or "a stream"

    @classmethod
    def to_path(cls, path: str) -> "JSONLinesSink":
        """
        A sink writing to C{path}: ``-`` for standard output (file
        descriptor 1, duplicated), anything else a file opened for
        appending (created if needed).  Both unbuffered: one ``write`` per
        record.

        :raises OSError: the file cannot be opened.
        """
        if path == "-":
            return cls(open(os.dup(1), "wb", buffering=0), description="standard output")
        return cls(open(path, "ab", buffering=0), description=path)

    def queue_depth(self) -> int:
        """Always 0: each record is written before :meth:`publish` returns."""
        return 0

    @property
    def closed(self) -> bool:
        """Whether the sink takes no more records."""
        return self._stream is None

    def publish(self, record: EventRecord) -> None:
        stream = self._stream
        if stream is None:
            return
        line = record.to_json() + "\n"
        try:
            if self._binary:
                data = memoryview(line.encode("utf-8"))
                while data:
                    written = stream.write(data)
                    data = data[written if written is not None else len(data):]
            else:
                stream.write(line)
                stream.flush()
        except OSError as e:
            if e.errno not in _CLOSED:
                raise
            self.close()
            raise SinkClosed(f"{self.description} was closed ({e.strerror})") from None

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.flush()
        except OSError:
            pass  # the reader has gone: nothing more to say to it
        finally:
            if self._owns:
                try:
                    stream.close()
                except OSError:
                    pass
