"""
Reading a save stream as the shim's ``xc_domain_restore`` does: every
check it makes, in the same order, so that what one accepts the other
accepts.  For tests and for looking into a saved file.
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Optional, Tuple

import attr

from .format import (
    DHDR,
    DHDR_TYPE_X86_HVM,
    DHDR_TYPE_X86_PV,
    IHDR,
    IHDR_ID,
    IHDR_MARKER,
    IHDR_VERSION,
    MAX_BATCH,
    MAX_BODY,
    PAGE_DATA_HEADER,
    PAGE_SHIFT,
    PAGE_SIZE,
    PFN_MASK,
    RECORD,
    REC_END,
    REC_OPTIONAL,
    REC_PAGE_DATA,
    REC_SIM_DOMAIN,
    REC_SIM_GUEST,
    REC_STATIC_DATA_END,
    SimDomain,
    SimGuest,
    StreamError,
    decode_marker_page,
    padded,
    pattern_page,
)

__all__ = ["StreamSummary", "read_stream"]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StreamSummary:
    """What a stream carried, once every check passed."""

    #: "pv" or "hvm" (the domain header's type: PVH is an HVM container).
    header_type: str
    domain: SimDomain
    guest: SimGuest
    marker: bytes
    #: PAGE_DATA records and pages in them (a page sent twice counts twice).
    page_records: int
    pages_sent: int
    #: Octets of the stream, from the image header to the END record.
    length: int


def _exactly(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if data is None or len(data) != n:
        raise StreamError("truncated in %s (%d of %d octets)" % (what, len(data or b""), n))
    return data


def read_stream(f: BinaryIO, header_type: Optional[str] = None) -> StreamSummary:
    """
    Read one simulated host's stream from C{f} (positioned at its image
    header), up to and including its END record, and nothing after it.

    @param header_type: the domain header type the domain needs ("pv" or
        "hvm"), as the restore checks it against the domain libxl made.
    @raise StreamError: truncated, corrupt, or not a simulated host's.
    """
    marker, ident, version, options = IHDR.unpack(_exactly(f, IHDR.size, "the image header"))
    if marker != IHDR_MARKER or ident != IHDR_ID:
        raise StreamError("not a libxc v2 stream (marker %#x, id %#x)" % (marker, ident))
    if version != IHDR_VERSION or options & 1:
        raise StreamError("image version %d, options %#x" % (version, options))
    dtype, page_shift, _, _, _ = DHDR.unpack(_exactly(f, DHDR.size, "the domain header"))
    if dtype not in (DHDR_TYPE_X86_PV, DHDR_TYPE_X86_HVM) or page_shift != PAGE_SHIFT:
        raise StreamError("domain header type %d, page shift %d" % (dtype, page_shift))
    htype = "pv" if dtype == DHDR_TYPE_X86_PV else "hvm"
    if header_type is not None and htype != header_type:
        raise StreamError("a %s stream cannot restore a %s domain" % (htype, header_type))
    length = IHDR.size + DHDR.size
    domain: Optional[SimDomain] = None
    guest: Optional[SimGuest] = None
    static_end = False
    page0: Optional[bytes] = None
    received = bytearray()
    records = pages = 0
    while True:
        rtype, body_length = RECORD.unpack(_exactly(f, RECORD.size, "a record header"))
        if body_length > MAX_BODY:
            raise StreamError("record %#x of %d octets" % (rtype, body_length))
        body = _exactly(f, padded(body_length), "record %#x" % rtype)[:body_length]
        length += RECORD.size + padded(body_length)
        if domain is None:
            if rtype != REC_SIM_DOMAIN:
                raise StreamError("not a simulated host's stream (first record %#x)" % rtype)
            domain = SimDomain.decode(body)
            if (domain.type == "pv") != (htype == "pv"):
                raise StreamError("a %s domain in a %s stream" % (domain.type, htype))
            received = bytearray(domain.image_pages)
        elif rtype == REC_END:
            if body_length:
                raise StreamError("END has a body")
            break
        elif rtype == REC_SIM_DOMAIN:
            raise StreamError("a second SIM_DOMAIN")
        elif rtype == REC_STATIC_DATA_END:
            if static_end or body_length:
                raise StreamError("a second STATIC_DATA_END, or one with a body")
            static_end = True
        elif rtype == REC_PAGE_DATA:
            if not static_end or guest is not None:
                raise StreamError("PAGE_DATA out of place")
            count, page0 = _pages(body, domain, received, page0)
            records += 1
            pages += count
        elif rtype == REC_SIM_GUEST:
            if guest is not None or not static_end:
                raise StreamError("SIM_GUEST out of place")
            guest = SimGuest.decode(body)
        elif not rtype & REC_OPTIONAL:
            raise StreamError("not a simulated host's stream (record %#x)" % rtype)
    if not static_end or guest is None or domain is None:
        raise StreamError("the stream lacks STATIC_DATA_END or SIM_GUEST")
    missing = received.count(0)
    if missing or page0 is None:
        raise StreamError("%d pages of the image never came" % missing)
    return StreamSummary(htype, domain, guest, decode_marker_page(page0), records, pages, length)


def _pages(body: bytes, domain: SimDomain, received: bytearray,
           page0: Optional[bytes]) -> Tuple[int, Optional[bytes]]:
    """Check one PAGE_DATA body and mark its pages received: its page
    count, and the newest copy of page 0."""
    if len(body) < PAGE_DATA_HEADER.size:
        raise StreamError("PAGE_DATA too short")
    count, _ = PAGE_DATA_HEADER.unpack_from(body)
    if not 0 < count <= MAX_BATCH or len(body) != 8 + count * (8 + PAGE_SIZE):
        raise StreamError("PAGE_DATA of %d pages in %d octets" % (count, len(body)))
    data = 8 + 8 * count
    for i, (raw,) in enumerate(struct.iter_unpack("<Q", body[8:data])):
        pfn = raw & PFN_MASK
        if raw & ~PFN_MASK or pfn >= domain.image_pages:
            raise StreamError("PAGE_DATA: pfn %#x" % raw)
        page = body[data + i * PAGE_SIZE:data + (i + 1) * PAGE_SIZE]
        if pfn == 0:
            page0 = page
        elif page != pattern_page(domain.seed, pfn):
            raise StreamError("page %#x does not hold its pattern" % pfn)
        received[pfn] = 1
    return count, page0
