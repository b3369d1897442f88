"""
The save stream's constants, its two sim records, the marker page, the
pattern of the memory image, and the framing around it (libxl's stream,
xl's save file).  The format is described in :mod:`txlibxl.sim.savestream`;
the shim's C side (``xcshim_save.h``) has the same numbers.
"""
from __future__ import annotations

import struct
import uuid as _uuid
from typing import Tuple

import attr

__all__ = [
    "DOMAIN_TYPES",
    "MARKER_MAX",
    "MAX_BATCH",
    "PAGE_SIZE",
    "SimDomain",
    "SimGuest",
    "StreamError",
    "decode_marker_page",
    "encode_marker_page",
    "libxl_stream",
    "pattern_page",
    "pattern_word",
    "split_libxl_stream",
    "xl_header_length",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
#: Pages per PAGE_DATA record at most (libxc's ``MAX_BATCH_SIZE``).
MAX_BATCH = 1024
#: The longest marker a guest keeps in its marker page.
MARKER_MAX = 1024

IHDR = struct.Struct(">QIIH6x")
IHDR_MARKER = 0xFFFFFFFFFFFFFFFF
IHDR_ID = 0x58454E46
IHDR_VERSION = 3
DHDR = struct.Struct("<IHHII")
DHDR_TYPE_X86_PV = 1
DHDR_TYPE_X86_HVM = 2
XEN_MAJOR, XEN_MINOR = 4, 17

RECORD = struct.Struct("<II")
REC_END = 0x00000000
REC_PAGE_DATA = 0x00000001
REC_STATIC_DATA_END = 0x00000010
REC_OPTIONAL = 0x80000000
REC_SIM_DOMAIN = 0x80545801
REC_SIM_GUEST = 0x80545802
PAGE_DATA_HEADER = struct.Struct("<II")
#: Bits 63-60 of a PAGE_DATA pfn: the page's type (0: a normal page).
PFN_TYPE_MASK = 0xF << 60
PFN_MASK = (1 << 52) - 1
#: The largest record body a reader accepts (a full PAGE_DATA).
MAX_BODY = PAGE_DATA_HEADER.size + MAX_BATCH * (8 + PAGE_SIZE)

SIM_DOMAIN = struct.Struct("<8sII16sIIQQQQQ")
SIM_DOMAIN_MAGIC = b"TXSIMDOM"
SIM_GUEST = struct.Struct("<8sIIQ16s")
SIM_GUEST_MAGIC = b"TXSIMGST"
SIM_VERSION = 1
MARKER_HEADER = struct.Struct("<8sII")
MARKER_MAGIC = b"TXSIMMRK"

#: Domain types, by their code in SIM_DOMAIN.
DOMAIN_TYPES = ("pv", "pvh", "hvm")

# libxl's framing (libxl_sr_stream_format.h) and xl's save file header.
LIBXL_HEADER = struct.Struct(">QII")
LIBXL_IDENT = 0x4C6962786C466D74  # "LibxlFmt"
LIBXL_VERSION = 2
LIBXL_REC_END = 0
LIBXL_REC_LIBXC_CONTEXT = 1
XL_MAGIC = b"Xen saved domain, xl format\n \0 \r"
XL_HEADER = struct.Struct("<32sIIII")

_MASK64 = (1 << 64) - 1


class StreamError(ValueError):
    """The stream is truncated, corrupt or not a simulated host's."""


def padded(length: int) -> int:
    """C{length} rounded up to a multiple of 8 (a record's footprint)."""
    return (length + 7) & ~7


def pattern_word(seed: int, pfn: int) -> int:
    """The word page C{pfn} of an image with C{seed} repeats (splitmix64)."""
    z = (seed + (pfn + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def pattern_page(seed: int, pfn: int) -> bytes:
    """The 4096 octets of pattern page C{pfn}."""
    return struct.pack("<Q", pattern_word(seed, pfn)) * (PAGE_SIZE // 8)


def encode_marker_page(marker: bytes) -> bytes:
    """Page 0 of the image, holding the guest's C{marker}."""
    if len(marker) > MARKER_MAX:
        raise ValueError("a marker is at most %d octets" % MARKER_MAX)
    head = MARKER_HEADER.pack(MARKER_MAGIC, len(marker), 0)
    return (head + marker).ljust(PAGE_SIZE, b"\0")


def decode_marker_page(page: bytes) -> bytes:
    """The marker page 0 holds.  @raise StreamError: it is no marker page."""
    if len(page) != PAGE_SIZE:
        raise StreamError("the marker page is %d octets" % len(page))
    magic, length, _ = MARKER_HEADER.unpack_from(page)
    if magic != MARKER_MAGIC or length > MARKER_MAX:
        raise StreamError("page 0 is not a marker page")
    end = MARKER_HEADER.size + length
    if page[end:].strip(b"\0"):
        raise StreamError("the marker page has bytes after its marker")
    return page[MARKER_HEADER.size:end]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SimDomain:
    """The SIM_DOMAIN record: what the domain is."""

    type: str
    uuid: _uuid.UUID
    vcpus: int
    max_memory_kb: int
    image_pages: int
    seed: int
    store_pfn: int
    console_pfn: int

    def encode(self) -> bytes:
        return SIM_DOMAIN.pack(
            SIM_DOMAIN_MAGIC, SIM_VERSION, DOMAIN_TYPES.index(self.type), self.uuid.bytes,
            self.vcpus, 0, self.max_memory_kb, self.image_pages, self.seed,
            self.store_pfn, self.console_pfn,
        )

    @classmethod
    def decode(cls, body: bytes) -> "SimDomain":
        if len(body) != SIM_DOMAIN.size:
            raise StreamError("SIM_DOMAIN is %d octets, not %d" % (len(body), SIM_DOMAIN.size))
        magic, version, code, raw_uuid, vcpus, _, max_kb, pages, seed, store, console = (
            SIM_DOMAIN.unpack(body))
        if magic != SIM_DOMAIN_MAGIC or version != SIM_VERSION:
            raise StreamError("not a simulated host's SIM_DOMAIN record (version %d)" % version)
        if code >= len(DOMAIN_TYPES) or not vcpus or not pages:
            raise StreamError("SIM_DOMAIN: type %d, %d vCPUs, %d pages" % (code, vcpus, pages))
        return cls(DOMAIN_TYPES[code], _uuid.UUID(bytes=raw_uuid), vcpus, max_kb, pages, seed,
                   store, console)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SimGuest:
    """The SIM_GUEST record: the guest's state when it suspended."""

    memory_kb: int
    online_vcpus: frozenset

    def encode(self) -> bytes:
        mask = sum(1 << v for v in self.online_vcpus)
        return SIM_GUEST.pack(SIM_GUEST_MAGIC, SIM_VERSION, 0, self.memory_kb,
                              mask.to_bytes(16, "little"))

    @classmethod
    def decode(cls, body: bytes) -> "SimGuest":
        if len(body) != SIM_GUEST.size:
            raise StreamError("SIM_GUEST is %d octets, not %d" % (len(body), SIM_GUEST.size))
        magic, version, _, memory_kb, raw_mask = SIM_GUEST.unpack(body)
        if magic != SIM_GUEST_MAGIC or version != SIM_VERSION:
            raise StreamError("not a simulated host's SIM_GUEST record (version %d)" % version)
        mask = int.from_bytes(raw_mask, "little")
        return cls(memory_kb, frozenset(v for v in range(128) if mask >> v & 1))


def libxl_stream(libxc_part: bytes, hvm_records: bytes = b"") -> bytes:
    """A whole libxl stream around C{libxc_part}, as libxl writes one
    (header, LIBXC_CONTEXT, the helper's part, C{hvm_records}, END)."""
    return (LIBXL_HEADER.pack(LIBXL_IDENT, LIBXL_VERSION, 0)
            + RECORD.pack(LIBXL_REC_LIBXC_CONTEXT, 0) + libxc_part + hvm_records
            + RECORD.pack(LIBXL_REC_END, 0))


def xl_header_length(data: bytes) -> int:
    """The length of xl's save file header (with its optional data) at
    the start of C{data}, or 0 if C{data} does not start with one."""
    if data[:len(XL_MAGIC)] != XL_MAGIC:
        return 0
    if len(data) < XL_HEADER.size:
        raise StreamError("xl's header is truncated")
    return XL_HEADER.size + XL_HEADER.unpack_from(data)[4]


def split_libxl_stream(data: bytes) -> Tuple[int, int]:
    """
    Where the helper's part of a libxl stream (optionally behind xl's
    header) starts and ends: offsets into C{data} (bytes, or an mmap of a
    file).  Only the framing is read (libxl's header and first record,
    libxc's headers and record headers up to END).

    @raise StreamError: the framing is not libxl's and libxc's.
    """
    offset = xl_header_length(data)
    if len(data) < offset + LIBXL_HEADER.size + RECORD.size:
        raise StreamError("no libxl stream header")
    ident, version, _ = LIBXL_HEADER.unpack_from(data, offset)
    rtype, length = RECORD.unpack_from(data, offset + LIBXL_HEADER.size)
    if ident != LIBXL_IDENT or version != LIBXL_VERSION or rtype != LIBXL_REC_LIBXC_CONTEXT or length:
        raise StreamError("not a libxl v2 stream starting with LIBXC_CONTEXT")
    start = offset + LIBXL_HEADER.size + RECORD.size
    pos = start + IHDR.size + DHDR.size
    while True:
        if len(data) < pos + RECORD.size:
            raise StreamError("the helper's part ends without END")
        rtype, length = RECORD.unpack_from(data, pos)
        pos += RECORD.size + padded(length)
        if rtype == REC_END:
            return start, pos
