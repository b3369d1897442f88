"""
libxl's and Xen's numbers, as the binding's callers use them: event types
and masks, xentoollog levels, poll(2) bits, the first reserved domid, the
nil UUID.  The tests check each against the compiled module's.
"""
from __future__ import annotations

import select

from .. import errors

__all__ = [
    "event_mask",
    "EVENTMASK_ALL",
    "EVENT_DOMAIN_SHUTDOWN",
    "EVENT_DOMAIN_DEATH",
    "EVENT_DISK_EJECT",
    "EVENT_OPERATION_COMPLETE",
    "EVENT_DOMAIN_CREATE_CONSOLE_AVAILABLE",
    "XTL_DEBUG",
    "XTL_VERBOSE",
    "XTL_DETAIL",
    "XTL_PROGRESS",
    "XTL_INFO",
    "XTL_NOTICE",
    "XTL_WARN",
    "XTL_ERROR",
    "XTL_CRITICAL",
    "POLLIN",
    "POLLPRI",
    "POLLOUT",
    "POLLERR",
    "POLLHUP",
    "POLLNVAL",
    "DOMID_FIRST_RESERVED",
    "NIL_UUID",
]

# libxl_event_type (libxl_types.idl).  Bit N of an event mask stands for
# type N: a mask is ``1 << type``, never ``type``.
EVENT_DOMAIN_SHUTDOWN = 1
EVENT_DOMAIN_DEATH = 2
EVENT_DISK_EJECT = 3
EVENT_OPERATION_COMPLETE = 4
EVENT_DOMAIN_CREATE_CONSOLE_AVAILABLE = 5

#: ``LIBXL_EVENTMASK_ALL``: every event type.
EVENTMASK_ALL = (1 << 64) - 1

# xentoollog_level (xentoollog.h).
XTL_DEBUG = 1
XTL_VERBOSE = 2
XTL_DETAIL = 3
XTL_PROGRESS = 4
XTL_INFO = 5
XTL_NOTICE = 6
XTL_WARN = 7
XTL_ERROR = 8
XTL_CRITICAL = 9
XTL_NUM_LEVELS = 10

# poll(2) bits, as libxl uses them.
POLLIN = select.POLLIN
POLLPRI = select.POLLPRI
POLLOUT = select.POLLOUT
POLLERR = select.POLLERR
POLLHUP = select.POLLHUP
POLLNVAL = select.POLLNVAL

#: Domain ids at and above this are Xen's reserved ids, never a domain's.
DOMID_FIRST_RESERVED = 0x7FF0

#: The nil UUID, libxl's "no UUID" (``libxl_uuid_is_nil``).
NIL_UUID = "00000000-0000-0000-0000-000000000000"

# Limits of the C types the argument checks guard.
UINT64_LIMIT = 1 << 64
SHORT_LIMIT = 1 << 15

DOMAIN_TYPES = {1: "hvm", 2: "pv", 3: "pvh"}  # LIBXL_DOMAIN_TYPE_*


def event_mask(*types: int) -> int:
    """
    The event mask selecting the event types C{types} (bit N for type N).
    """
    mask = 0
    for kind in types:
        if isinstance(kind, bool) or not isinstance(kind, int) or not 0 <= kind < 64:
            raise errors.InvalidArgument(call="event_mask", message=f"bad event type {kind!r}")
        mask |= 1 << kind
    return mask
