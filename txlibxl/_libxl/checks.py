"""
The binding's argument checks: the caller's mistakes raise
:class:`~txlibxl.errors.InvalidArgument`, naming the C call, before C is
called.  The checks of a value return it as C takes it (``check_text``:
UTF-8 bytes).
"""
from __future__ import annotations

from typing import Any, Sequence

from .. import errors
from .constants import DOMID_FIRST_RESERVED, UINT64_LIMIT


def is_int(value: Any) -> bool:
    """Whether C{value} is an int and not a bool (a plain int asks once)."""
    return type(value) is int or (type(value) is not bool and isinstance(value, int))


def check_domid(call: str, domid: Any) -> int:
    if not is_int(domid) or not 0 <= domid < DOMID_FIRST_RESERVED:
        raise errors.InvalidArgument(
            call=call,
            message=f"domid must be an int from 0 to {DOMID_FIRST_RESERVED - 1}, not {domid!r}",
        )
    return domid


def check_uint64(call: str, what: str, value: Any, minimum: int = 0) -> int:
    if not is_int(value) or not minimum <= value < UINT64_LIMIT:
        raise errors.InvalidArgument(
            call=call, message=f"{what} must be an int from {minimum} to 2**64-1, not {value!r}"
        )
    return value


def check_c_int(call: str, what: str, value: Any, low: int, high: int) -> int:
    if not is_int(value) or not low <= value < high:
        raise errors.InvalidArgument(
            call=call, message=f"{what} must be an int from {low} to {high - 1}, not {value!r}"
        )
    return value


def check_text(call: str, what: str, value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise errors.InvalidArgument(
            call=call, message=f"{what} must be a non-empty str, not {value!r}"
        )
    if "\0" in value:
        raise errors.InvalidArgument(call=call, message=f"{what} must not contain NUL: {value!r}")
    return value.encode("utf-8")


def check_uuid(call: str, value: Any) -> None:
    """A UUID in its text form (``"60f7...-..."``), or ``None``."""
    if value is not None and not (isinstance(value, str) and len(value) == 36 and value.count("-") == 4):
        raise errors.InvalidArgument(call=call, message=f"uuid must be a UUID's text or None, not {value!r}")


def check_callable(call: str, what: str, value: Any) -> None:
    if not callable(value):
        raise errors.InvalidArgument(call=call, message=f"{what} must be callable, not {value!r}")


def check_provides(call: str, what: str, value: Any, methods: Sequence[str]) -> None:
    missing = [m for m in methods if not callable(getattr(value, m, None))]
    if missing:
        raise errors.InvalidArgument(
            call=call, message=f"{what} {value!r} lacks {', '.join(missing)}"
        )
