"""
The vocabulary of a layout: a :class:`Node` to write, permissions in wire
notation, and the xenbus states devices are in.

Permissions use the xenstore wire notation: a tuple of ``"<letter><domid>"``
strings whose first entry names the owner and the access of everybody else
(``n`` none, ``r`` read, ``w`` write, ``b`` both), as in ``("n0", "r5")``.
A node whose ``perms`` is ``None`` inherits its parent's, which is what
xenstored does for a node that dom0 creates with a plain write.
"""
from typing import Optional, Tuple

import attr

__all__ = [
    "XENBUS_INITIALISING",
    "XENBUS_CONNECTED",
    "XENBUS_CLOSING",
    "XENBUS_CLOSED",
    "Perms",
    "Node",
]

# Xenbus states (xen/io/xenbus.h).
XENBUS_INITIALISING = 1
XENBUS_CONNECTED = 4
XENBUS_CLOSING = 5
XENBUS_CLOSED = 6


Perms = Tuple[str, ...]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Node:
    """One xenstore node to write: its path, value and, if set, its perms."""

    path: str
    value: str
    perms: Optional[Perms] = None


def _domid_perm(letter: str, domid: int) -> str:
    return "%s%d" % (letter, domid)


def _ro(domid: int) -> Perms:
    """libxl's ``roperm``: owned by dom0, readable by the guest."""
    return ("n0", _domid_perm("r", domid))


def _rw(domid: int) -> Perms:
    """libxl's ``rwperm``: owned by the guest."""
    return (_domid_perm("n", domid),)


_NOPERM: Perms = ("n0",)
