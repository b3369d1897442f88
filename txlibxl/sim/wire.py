"""
The xenstore wire protocol (``xen/io/xs_wire.h``): packet codec.

Every message in either direction is a header of four native-endian
``uint32_t`` (``type``, ``req_id``, ``tx_id``, ``len``) followed by ``len``
bytes of payload, at most ``XENSTORE_PAYLOAD_MAX`` (4096).  Payloads are
NUL-terminated strings, except a ``WRITE``'s value and a ``READ`` reply,
which are raw bytes.  Errors travel as an ``XS_ERROR`` reply whose payload
is the errno *name* (``b"ENOENT\\0"``).

This module only encodes and decodes; what each operation means lives in
:mod:`txlibxl.sim.store` and :mod:`txlibxl.sim.xenstored`.  The payload
helpers reproduce the C daemon's own parsing (``get_strings``, ``onearg``,
``xs_count_strings``, ``atoi``), so malformed payloads are judged as it judges them.
"""
from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from typing import List, Optional

__all__ = [
    "Op",
    "Packet",
    "PacketDecoder",
    "PayloadTooLarge",
    "HEADER",
    "PAYLOAD_MAX",
    "ERRORS",
    "encode",
    "error_payload",
    "get_strings",
    "onearg",
    "count_strings",
    "strings_payload",
    "c_atoi",
]

#: ``struct xsd_sockmsg``: type, req_id, tx_id, len, in host byte order.
HEADER = struct.Struct("=IIII")

#: ``XENSTORE_PAYLOAD_MAX``.
PAYLOAD_MAX = 4096


class Op(enum.IntEnum):
    """``enum xsd_sockmsg_type``."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    # 20 was XS_RESTRICT, removed.
    RESET_WATCHES = 21
    DIRECTORY_PART = 22
    INVALID = 0xFFFF


#: ``XS_TYPE_COUNT``: types at or above it are unknown.
TYPE_COUNT = 23

#: The errno names of ``xsd_errors[]``, in their order.
ERRORS = (
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC",
    "EIO", "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN",
    "E2BIG", "EPERM",
)


class PayloadTooLarge(Exception):
    """A header announced more than ``XENSTORE_PAYLOAD_MAX`` bytes."""


@dataclass(frozen=True)
class Packet:
    """One message: header fields and payload."""

    op: int
    req_id: int
    tx_id: int
    payload: bytes = b""


def encode(packet: Packet) -> bytes:
    """The bytes of C{packet} on the wire."""
    return HEADER.pack(packet.op, packet.req_id, packet.tx_id, len(packet.payload)) + packet.payload


def error_payload(errno_name: str) -> bytes:
    """The payload of an ``XS_ERROR`` reply; unknown names become
    ``EINVAL``, as ``send_error`` does."""
    if errno_name not in ERRORS:
        errno_name = "EINVAL"
    return errno_name.encode("ascii") + b"\0"


def strings_payload(strings: List[str]) -> bytes:
    """Each string followed by a NUL (``<foo>|*``)."""
    return b"".join(s.encode("latin-1") + b"\0" for s in strings)


def get_strings(payload: bytes) -> List[str]:
    """
    The NUL-terminated strings at the start of C{payload}; bytes after the
    last NUL are ignored (C{get_strings}).  Strings are decoded as Latin-1,
    one character per byte, so nothing is lost.
    """
    parts = payload.split(b"\0")
    return [p.decode("latin-1") for p in parts[:-1]]


def count_strings(payload: bytes) -> int:
    """How many NULs C{payload} has (C{xs_count_strings})."""
    return payload.count(b"\0")


def onearg(payload: bytes) -> Optional[str]:
    """The single argument: the payload must hold exactly one NUL, at its
    end (C{onearg}); C{None} otherwise."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        return None
    return payload[:-1].decode("latin-1")


def c_atoi(text: str) -> int:
    """C ``atoi``: leading blanks, a sign, digits; anything else ends it."""
    match = re.match(r"[ \t\n\v\f\r]*([+-]?)(\d*)", text)
    assert match is not None
    digits = match.group(2)
    if not digits:
        return 0
    value = int(digits)
    if match.group(1) == "-":
        value = -value
    # atoi returns an int: wrap as a 32-bit two's complement value.
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class PacketDecoder:
    """
    Splits a byte stream into packets.

    L{feed} returns the packets completed by the new bytes and keeps any
    partial one.  A header announcing more than L{PAYLOAD_MAX} bytes raises
    L{PayloadTooLarge}; the stream cannot be resynchronised after that
    (xenstored drops such a connection).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> List[Packet]:
        self._buffer += data
        packets = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= HEADER.size:
            op, req_id, tx_id, length = HEADER.unpack_from(buffer, offset)
            if length > PAYLOAD_MAX:
                del buffer[:offset]
                raise PayloadTooLarge(length)
            end = offset + HEADER.size + length
            if len(buffer) < end:
                break
            packets.append(Packet(op, req_id, tx_id, bytes(buffer[offset + HEADER.size:end])))
            offset = end
        del buffer[:offset]
        return packets

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete packet."""
        return len(self._buffer)
