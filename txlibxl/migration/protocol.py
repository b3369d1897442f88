"""
The migration protocol's wire format, and the two pipe ends that carry
libxl's stream between libxl and the connection.

Every message is a frame: one octet saying what it is, a 4-octet
big-endian length, then that many octets.  Control frames carry a JSON
object; stream frames carry libxl's stream as it comes.  Version 1:

* ``H`` hello, from the source: ``{"protocol": "txlibxl-migration",
  "version": 1, "config": {...}}``, the domain's configuration.
* ``A`` accept, from the target: ``{"version": 1}``, send the stream.
* ``D`` data, from the source: the next octets of libxl's stream (at
  most ``MAX_DATA`` octets per frame).
* ``E`` end, from the source, empty: libxl's stream is complete.
* ``R`` ready, from the target: ``{"domid": N}``, restored and paused.
* ``G`` go, from the source, empty: the permission to run it; from here
  on the source never resumes its copy.
* ``K`` done, from the target: ``{"domid": N}``, unpaused; the source
  destroys its copy.
* ``X`` error, from either: ``{"message": "...", "code": rc}``; its
  sender stops, the other side undoes its part.

libxl's stream is framed (not sent raw, as ``xl migrate`` does) so that
its end is known without parsing it, and so that it can cross TLS: libxl
writes and reads a pipe, and the connection is Twisted's.
"""
from __future__ import annotations

import fcntl
import json
import os
import struct
from typing import Any, Callable, Dict, Optional

from twisted.internet import abstract, fdesc, main
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from .errors import MigrationProtocolError

__all__ = [
    "PROTOCOL", "VERSION", "MAX_DATA", "HELLO", "ACCEPT", "DATA", "END", "READY", "GO", "DONE", "ERROR",
    "header", "frame", "control", "FrameProtocol", "PipeReader", "PipeWriter", "PIPE_SIZE", "enlarge_pipe",
]

PROTOCOL = "txlibxl-migration"
VERSION = 1
#: The most stream octets one data frame carries (a receiver is given
#: them in pieces, as they arrive).
MAX_DATA = 1 << 22
#: The longest control frame accepted.
MAX_CONTROL = 1 << 22

HELLO, ACCEPT, DATA, END, READY, GO, DONE, ERROR = (bytes([c]) for c in b"HADERGKX")
_KINDS = {HELLO, ACCEPT, DATA, END, READY, GO, DONE, ERROR}
_HEADER = struct.Struct(">cI")


def header(kind: bytes, length: int) -> bytes:
    """The header of a frame of C{kind} carrying C{length} octets."""
    return _HEADER.pack(kind, length)


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame of C{kind} carrying C{payload}."""
    return _HEADER.pack(kind, len(payload)) + payload


def control(kind: bytes, **fields: Any) -> bytes:
    """A control frame of C{kind} carrying C{fields} as JSON."""
    return frame(kind, json.dumps(fields, separators=(",", ":")).encode("utf-8"))


class FrameProtocol(Protocol):
    """
    A connection speaking frames: :meth:`frameReceived` gets each one
    (control payloads decoded); a malformed frame ends the connection
    through :meth:`protocolBroken`.
    """

    _buffer = b""
    _broken = False
    #: Octets of the data frame being received still to come.
    _data_left = 0

    def dataReceived(self, data: bytes) -> None:
        # A data frame's payload is handed on as it arrives, in pieces,
        # never gathered: frames of a MiB arrive in reads of 64 KiB, and
        # gathering them was copying each payload several times.
        while data and not self._broken:
            if self._data_left:
                if len(data) <= self._data_left:
                    piece, data = data, b""
                else:
                    piece, data = data[:self._data_left], data[self._data_left:]
                self._data_left -= len(piece)
                self.frameReceived(DATA, piece)
                continue
            self._buffer += data
            data = b""
            while not self._broken and len(self._buffer) >= _HEADER.size:
                kind, length = _HEADER.unpack_from(self._buffer)
                if kind not in _KINDS or length > (MAX_DATA if kind == DATA else MAX_CONTROL):
                    self._break(f"a malformed frame ({kind!r}, {length} octets)")
                    return
                if kind == DATA:
                    data, self._buffer = self._buffer[_HEADER.size:], b""
                    self._data_left = length
                    break
                if len(self._buffer) < _HEADER.size + length:
                    return
                payload = self._buffer[_HEADER.size:_HEADER.size + length]
                self._buffer = self._buffer[_HEADER.size + length:]
                fields: Dict[str, Any] = {}
                if payload:
                    try:
                        fields = json.loads(payload.decode("utf-8"))
                    except ValueError:
                        fields = None  # type: ignore[assignment]
                    if not isinstance(fields, dict):
                        self._break(f"frame {kind!r} does not carry a JSON object")
                        return
                self.frameReceived(kind, fields)

    def _break(self, why: str) -> None:
        self._broken = True
        self.protocolBroken(MigrationProtocolError(f"the peer broke the migration protocol: {why}",
                                                   side=self.peer_side))

    peer_side = "target"

    def send(self, kind: bytes, **fields: Any) -> None:
        """Send a control frame."""
        if self.transport is not None:
            self.transport.write(control(kind, **fields) if fields else frame(kind))

    def frameReceived(self, kind: bytes, payload: Any) -> None:  # pragma: no cover - subclasses'
        raise NotImplementedError

    def protocolBroken(self, error: Exception) -> None:  # pragma: no cover - subclasses'
        raise NotImplementedError


#: The capacity asked for the stream's pipes (Linux's default most for an
#: unprivileged process), and the most read from one at once: a pipe of
#: the default 64 KiB read 8 KiB at a time made every MiB of the stream
#: some 130 reactor turns.
PIPE_SIZE = 1 << 20


def enlarge_pipe(fd: int) -> None:
    """Ask for a pipe of :data:`PIPE_SIZE` (kept as it is if refused)."""
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except OSError:
        pass


class PipeReader(abstract.FileDescriptor):
    """
    The reading end of the pipe libxl saves into: what it reads goes to
    C{on_data}; C{on_end(reason)} once the pipe's other end is closed.
    Its pause and resume (it is a push producer) follow the connection's
    buffer.  It owns C{fd} and closes it.
    """

    def __init__(self, reactor: Any, fd: int, on_data: Callable[[bytes], None],
                 on_end: Callable[[Failure], None]) -> None:
        super().__init__(reactor)
        fdesc.setNonBlocking(fd)
        self._fd = fd
        self._on_data = on_data
        self._on_end = on_end
        self.connected = 1
        self._writeDisconnected = True

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> Any:
        try:
            data = os.read(self._fd, PIPE_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return main.CONNECTION_LOST
        if not data:
            return main.CONNECTION_DONE
        self._on_data(data)
        return None

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._on_end(reason)


class PipeWriter(abstract.FileDescriptor):
    """
    The writing end of the pipe libxl restores from: :meth:`write` queues
    what the connection brings (the connection, registered as its
    producer, is paused while the pipe is full); :meth:`loseConnection`
    closes it once everything is written.  C{on_lost(reason)} when it is
    closed (libxl stopped reading: an error, unless everything was
    written).  It owns C{fd}.
    """

    def __init__(self, reactor: Any, fd: int, on_lost: Optional[Callable[[Failure], None]] = None) -> None:
        super().__init__(reactor)
        fdesc.setNonBlocking(fd)
        self._fd = fd
        self._on_lost = on_lost
        self.connected = 1

    def fileno(self) -> int:
        return self._fd

    def writeSomeData(self, data: bytes) -> Any:
        return fdesc.writeToFD(self._fd, data)

    def doRead(self) -> None:  # pragma: no cover - never reading
        pass

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self._on_lost is not None:
                self._on_lost(reason)
