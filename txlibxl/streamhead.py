"""
The start of a libxl save stream, checked before libxl reads it.

libxl 4.17 jumps to NULL when a restore stream fails before its
``LIBXC_CONTEXT`` record (its clean-up aborts a save helper it never
started): an empty stream, a header that is not libxl's v2 little-endian
one, a first record it does not know.  So every restore's first
:data:`HEAD_SIZE` octets are checked here first: libxl's 16-octet header
(``"LibxlFmt"``, version 2, little-endian) and a ``LIBXC_CONTEXT``
record.  What follows is libxl's to check (a truncated or corrupt body
fails the restore with libxl's error, and leaves no domain).

This module imports nothing native.
"""
from __future__ import annotations

import struct
from typing import Optional

from .errors import ERROR_INVAL, InvalidArgument

__all__ = ["HEAD_SIZE", "InvalidSaveStream", "check", "refusal"]

_HEADER = struct.Struct(">QII")
_RECORD = struct.Struct("<II")
_IDENT = 0x4C6962786C466D74  # "LibxlFmt"
_VERSION = 2
_BIG_ENDIAN = 1
_REC_LIBXC_CONTEXT = 1

#: How many octets of a stream's start :func:`check` needs.
HEAD_SIZE = _HEADER.size + _RECORD.size


class InvalidSaveStream(InvalidArgument):
    """
    A restore source that is not the start of a libxl v2 save stream
    (``ERROR_INVAL``); libxl was not called.

    :ivar reason: why, in a few words (``"empty stream"``...).
    """

    def __init__(self, reason: str, call: str = "libxl_domain_create_restore") -> None:
        super().__init__(ERROR_INVAL, call, f"refused before libxl read it: {reason}")
        self.reason = reason


def refusal(head: bytes) -> Optional[str]:
    """
    Why a stream starting with C{head} (its first :data:`HEAD_SIZE`
    octets, or all of it if shorter) must not reach libxl, or ``None``.
    """
    if not isinstance(head, (bytes, bytearray, memoryview)):
        raise TypeError(f"a stream's start is bytes, not {type(head).__name__}")
    head = bytes(head[:HEAD_SIZE])
    if not head:
        return "empty stream"
    if len(head) < HEAD_SIZE:
        return "truncated libxl header"
    ident, version, options = _HEADER.unpack_from(head)
    rtype, length = _RECORD.unpack_from(head, _HEADER.size)
    if ident != _IDENT:
        return "not a libxl stream"
    if version != _VERSION or options & _BIG_ENDIAN:
        return "not a little-endian libxl v2 stream"
    if rtype != _REC_LIBXC_CONTEXT or length != 0:
        return "no LIBXC_CONTEXT record first"
    return None


def check(head: bytes) -> None:
    """
    :raises InvalidSaveStream: C{head} is not the start of a libxl v2
        stream (:func:`refusal`).
    """
    reason = refusal(head)
    if reason is not None:
        raise InvalidSaveStream(reason)
