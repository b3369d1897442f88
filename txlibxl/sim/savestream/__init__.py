"""
The simulated host's save stream: what the shim's ``xc_domain_save`` writes
into libxl's stream and its ``xc_domain_restore`` reads back.

Where it sits
=============

libxl's stream (``docs/specs/libxl-migration-stream.pandoc``) is libxl's:
its ``LibxlFmt`` header, a ``LIBXC_CONTEXT`` record with no body, then
whatever ``libxl-save-helper`` writes, then libxl's own records (for an HVM
guest the emulator's) and libxl's ``END``.  ``xl save`` puts its own
header (``Xen saved domain, xl format``, with the domain's configuration)
in front of all that.  The part in the middle is the helper's, and on the
simulated host the helper's ``xc_domain_save`` is the shim's
(``txlibxl/sim/shim/xcshim_save.c``): it writes the stream below, which
follows the *outer framing* of libxc's v2 stream
(``docs/specs/libxc-migration-stream.pandoc``) exactly, so that anything
that walks records walks it, and it ends with libxc's ``END`` record after
which libxl reads on.  Its contents are the simulator's.

The format
==========

Image header, 24 octets, big-endian (libxc's): marker
``0xFFFFFFFFFFFFFFFF``, id ``0x58454E46`` ("XENF"), version 3, options 0
(little-endian), 6 reserved octets.

Domain header, 16 octets, little-endian (libxc's): type (1 x86 PV, 2 x86
HVM: an HVM container, PVH or HVM), page shift 12, 2 reserved octets, Xen
major 4 and minor 17.

Records, little-endian (libxc's framing): ``uint32 type, uint32
body_length``, the body, zeros to the next multiple of 8 octets.  A record
type with bit 31 set is optional (a reader that does not know it skips
it); any other unknown type makes the restore fail.  The stream has, in
this order:

``SIM_DOMAIN`` (``0x80545801``, 80 octets, sim-specific): what the domain
    is: ``"TXSIMDOM"``, version 1, the type (0 PV, 1 PVH, 2 HVM), the UUID
    (16 octets), the number of vCPUs, 4 reserved octets, the maximum
    memory (KiB), the number of pages of its *memory image* (below), the
    image's seed, and the pfns of its xenstore and console rings
    (``<8sII16sIIQQQQQ``).  For the sim it is mandatory; it is the first
    record.
``STATIC_DATA_END`` (``0x10``, libxc's, empty): the end of the static
    data.  The stream has no CPUID or MSR policy records (the simulated
    hypervisor has no policies), so the restore reports both as missing
    to libxl's ``static_data_done`` callback, as libxc does for a stream
    from before Xen 4.14; libxl then applies the policy as on a create.
``PAGE_DATA`` (``1``, libxc's layout): ``uint32 count, uint32 reserved``,
    ``count`` pfns (``uint64``; bits 63-60, the page type, are 0: normal
    pages) and ``count`` pages of 4096 octets.  At most 1024 pages a record
    (libxc's batch).  A page may come several times (a live save's rounds);
    the last copy counts.
``SIM_GUEST`` (``0x80545802``, 40 octets, sim-specific): the guest's state
    when it suspended: ``"TXSIMGST"``, version 1, 4 reserved octets, its
    memory (KiB) and the bitmap of its online vCPUs (16 octets, bit *n* for
    vCPU *n*), ``<8sIIQ16s>``.
``END`` (``0``, libxc's, empty).

The memory image
================

The simulated hypervisor has no guest memory, but a save must move real
bytes, as many as a real one would for the memory it carries, so that it
takes real time and its integrity can be checked.  Each domain has a
*memory image*: its first ``image_pages`` pages (at most its memory; 1 MiB
unless the ``guest_image`` control op set another size).  Page 0 is the
*marker page*, the one page the guest writes: ``"TXSIMMRK"``, ``uint32``
length, 4 reserved octets, the guest's marker (what the ``guest_marker``
control op set, at most 1024 octets), zeros.  Every other page *pfn* holds
the 8-octet little-endian word ``pattern_word(seed, pfn)`` (a splitmix64
of the two) 512 times: the guest's untouched memory, a deterministic
pattern, so that the restore checks every page it receives.  The rest of
the domain's memory is accounted for (the restored domain has the same
memory) but carries no bytes.

A restore checks the headers, the order and size of every record, that
every pattern page holds its pattern and that every page of the image
came; only then does it hand the domain's state to the hypervisor, which
checks the marker page and recreates the domain's state in the domain
libxl created for it.  A stream that is truncated, corrupt or not a
simulator's fails, and the hypervisor is left untouched.

What a live save sends is in :mod:`txlibxl.sim.hypervisor.saverestore`.

Modules: :mod:`.format` (the constants, the two sim records, the marker
page, the pattern, libxl's and xl's framing), :mod:`.reader` (parse and
check a stream, as the shim's restore does), :mod:`.writer` (write one, as
the shim's save does).  The C side is the shim's; the two are checked
against each other by the tests.
"""
from .format import (
    MARKER_MAX,
    MAX_BATCH,
    PAGE_SIZE,
    REC_END,
    REC_PAGE_DATA,
    REC_SIM_DOMAIN,
    REC_SIM_GUEST,
    REC_STATIC_DATA_END,
    SimDomain,
    SimGuest,
    StreamError,
    decode_marker_page,
    encode_marker_page,
    libxl_stream,
    pattern_page,
    pattern_word,
    split_libxl_stream,
)
from .reader import StreamSummary, read_stream
from .writer import write_stream

__all__ = [
    "MARKER_MAX",
    "MAX_BATCH",
    "PAGE_SIZE",
    "REC_END",
    "REC_PAGE_DATA",
    "REC_SIM_DOMAIN",
    "REC_SIM_GUEST",
    "REC_STATIC_DATA_END",
    "SimDomain",
    "SimGuest",
    "StreamError",
    "StreamSummary",
    "decode_marker_page",
    "encode_marker_page",
    "libxl_stream",
    "pattern_page",
    "pattern_word",
    "read_stream",
    "split_libxl_stream",
    "write_stream",
]
