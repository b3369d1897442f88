"""
What txlibxl takes as a domain id: :func:`check_domid`.

Every call of the public API that names a domain checks its domid before
libxl is asked anything, with one rule:

* a domid that is not an ``int`` (a ``str``, a ``float``, ``None``; a
  ``bool`` too, although Python counts it as an int) is a ``TypeError``;
* an int that is negative, or at or above ``DOMID_FIRST_RESERVED``
  (``0x7FF0``: Xen's reserved ids such as ``DOMID_SELF`` and
  ``DOMID_INVALID``, and everything above), is a ``ValueError``.

Neither is a :class:`~txlibxl.errors.LibxlError`: libxl was never called.
The calls report them as they report the caller's other mistakes: a watch
or a synchronous call raises them, an operation's Deferred fails with
them.  A domid in range that names no domain is libxl's to answer
(:class:`~txlibxl.errors.DomainNotFound`).
"""
from __future__ import annotations

from ._libxl.constants import DOMID_FIRST_RESERVED

__all__ = ["DOMID_FIRST_RESERVED", "check_domid"]


def check_domid(domid: object) -> int:
    """
    C{domid}, if it can name a domain.

    :raises TypeError: it is not an ``int`` (or it is a ``bool``).
    :raises ValueError: it is negative or one of Xen's reserved ids.
    """
    if isinstance(domid, bool) or not isinstance(domid, int):
        raise TypeError(f"a domid is an int, not {type(domid).__name__} ({domid!r})")
    if domid < 0:
        raise ValueError(f"a domid is from 0 to {DOMID_FIRST_RESERVED - 1}, not negative ({domid})")
    if domid >= DOMID_FIRST_RESERVED:
        raise ValueError(
            f"a domid is from 0 to {DOMID_FIRST_RESERVED - 1}; {domid:#x} is "
            + ("one of Xen's reserved ids" if domid <= 0xFFFF else "not a domid at all")
        )
    return domid
