"""
Writing a save stream as the shim's ``xc_domain_save`` does (for tests,
and to make streams the shim's restore must take or refuse).
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Iterable, Optional, Sequence

from .format import (
    DHDR,
    DHDR_TYPE_X86_HVM,
    DHDR_TYPE_X86_PV,
    IHDR,
    IHDR_ID,
    IHDR_MARKER,
    IHDR_VERSION,
    MAX_BATCH,
    PAGE_DATA_HEADER,
    PAGE_SHIFT,
    RECORD,
    REC_END,
    REC_PAGE_DATA,
    REC_SIM_DOMAIN,
    REC_SIM_GUEST,
    REC_STATIC_DATA_END,
    XEN_MAJOR,
    XEN_MINOR,
    SimDomain,
    SimGuest,
    encode_marker_page,
    padded,
    pattern_page,
)

__all__ = ["record", "write_stream"]


def record(rtype: int, body: bytes = b"") -> bytes:
    """One record: header, body, padding."""
    return RECORD.pack(rtype, len(body)) + body + b"\0" * (padded(len(body)) - len(body))


def write_stream(out: BinaryIO, domain: SimDomain, guest: SimGuest, marker: bytes = b"",
                 rounds: Optional[Sequence[Iterable[int]]] = None,
                 page0: Optional[bytes] = None) -> int:
    """
    Write a stream for C{domain} to C{out}: its pages in C{rounds} (lists
    of pfns, sent in that order; by default one round of every page),
    page 0 holding C{marker} (or the raw C{page0}).  Returns the number
    of octets written.
    """
    hvm = domain.type != "pv"
    first = page0 if page0 is not None else encode_marker_page(marker)
    written = 0

    def put(data: bytes) -> None:
        nonlocal written
        out.write(data)
        written += len(data)

    put(IHDR.pack(IHDR_MARKER, IHDR_ID, IHDR_VERSION, 0))
    put(DHDR.pack(DHDR_TYPE_X86_HVM if hvm else DHDR_TYPE_X86_PV, PAGE_SHIFT, 0, XEN_MAJOR, XEN_MINOR))
    put(record(REC_SIM_DOMAIN, domain.encode()))
    put(record(REC_STATIC_DATA_END))
    for pfns in rounds if rounds is not None else [range(domain.image_pages)]:
        batch = list(pfns)
        for start in range(0, len(batch), MAX_BATCH):
            chunk = batch[start:start + MAX_BATCH]
            body = [PAGE_DATA_HEADER.pack(len(chunk), 0), struct.pack("<%dQ" % len(chunk), *chunk)]
            body += [first if pfn == 0 else pattern_page(domain.seed, pfn) for pfn in chunk]
            put(record(REC_PAGE_DATA, b"".join(body)))
    put(record(REC_SIM_GUEST, guest.encode()))
    put(record(REC_END))
    return written
