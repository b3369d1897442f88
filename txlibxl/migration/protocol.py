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

import json
import os
import struct
from typing import Any, Callable, Dict, Optional

from twisted.internet import abstract, fdesc
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from .errors import MigrationProtocolError

__all__ = [
    "PROTOCOL", "VERSION", "MAX_DATA", "HELLO", "ACCEPT", "DATA", "END", "READY", "GO", "DONE", "ERROR",
    "frame", "control", "FrameProtocol", "PipeReader", "PipeWriter",
]

PROTOCOL = "txlibxl-migration"
VERSION = 1
#: The most stream octets one data frame carries.
MAX_DATA = 1 << 16
#: The longest control frame accepted.
MAX_CONTROL = 1 << 22

HELLO, ACCEPT, DATA, END, READY, GO, DONE, ERROR = (bytes([c]) for c in b"HADERGKX")
_KINDS = {HELLO, ACCEPT, DATA, END, READY, GO, DONE, ERROR}
_HEADER = struct.Struct(">cI")


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

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while not self._broken and len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if kind not in _KINDS or (kind != DATA and length > MAX_CONTROL) or length > max(MAX_DATA, MAX_CONTROL):
                self._break(f"a malformed frame ({kind!r}, {length} octets)")
                return
            if len(self._buffer) < _HEADER.size + length:
                return
            payload = self._buffer[_HEADER.size:_HEADER.size + length]
            self._buffer = self._buffer[_HEADER.size + length:]
            if kind == DATA:
                self.frameReceived(kind, payload)
                continue
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
        return fdesc.readFromFD(self._fd, self._on_data)

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
