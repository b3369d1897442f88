"""
What libxl says while the binding calls it: :class:`LibxlSays`, so that an
error carries libxl's own words and not just its code.

libxl explains a refusal (a configuration it cannot read, a domain it
cannot make) only in its log and returns a bare code.  Around a call::

    with LibxlSays() as said:
        rc = _lib.libxl_domain_config_from_json(ctx, config, text)
    if rc:
        raise errors.from_code(rc, call, said.message())

every message libxl logs at error level *on this thread* during the block
is kept (in C, ``c/txl_capture.c``), whatever the log level passed on to
the logger; the messages still reach the logger as before, unless the
block is quiet (``LibxlSays(quiet=True)``: for checks whose refusals are
expected, which keep libxl's words for the error alone; a block inside a
quiet one is quiet too).  Blocks nest.

A callback libxl makes inside the block (an operation's completion) finds
the block with :meth:`LibxlSays.current` and reads what was said up to
then with :meth:`LibxlSays.so_far`: libxl logs why an operation failed
before it reports the failure.
"""
from __future__ import annotations

import threading
from typing import Any, List, Optional, Tuple

from . import native

__all__ = ["LibxlSays"]

_tls = threading.local()

_ffi: Any = None
_lib: Any = None


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


class LibxlSays:
    """
    The error messages libxl logs on this thread inside a ``with`` block.

    :ivar lines: the messages, in order (set when the block ends).
    """

    __slots__ = ("_capture", "_quiet", "lines")

    def __init__(self, quiet: bool = False) -> None:
        self._capture: Any = None
        self._quiet = quiet
        self.lines: tuple = ()

    @staticmethod
    def current() -> Optional["LibxlSays"]:
        """
        The innermost block open on this thread, or ``None``.
        """
        stack = getattr(_tls, "stack", None)
        return stack[-1] if stack else None

    def __enter__(self) -> "LibxlSays":
        native.load()
        self._capture = _lib.txl_capture_begin()  # NULL without memory: nothing kept
        if self._quiet:
            _lib.txl_capture_quiet(self._capture)
        stack: Optional[List[LibxlSays]] = getattr(_tls, "stack", None)
        if stack is None:
            stack = _tls.stack = []
        stack.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        stack: List[LibxlSays] = _tls.stack
        if stack and stack[-1] is self:
            stack.pop()
        elif self in stack:  # pragma: no cover - blocks end in order
            stack.remove(self)
        text = _lib.txl_capture_end(self._capture)
        self._capture = None
        self.lines = _lines(text)

    def so_far(self) -> Tuple[str, ...]:
        """
        The messages logged in the block up to now (inside it).
        """
        if self._capture is None:
            return self.lines
        return _lines(_lib.txl_capture_peek(self._capture))

    def message(self, default: Optional[str] = None) -> Optional[str]:
        """
        What libxl said, one message after another, or C{default} if it
        said nothing.
        """
        return "; ".join(self.lines) if self.lines else default


def _lines(text: Any) -> Tuple[str, ...]:
    """The lines of the malloc'd C string C{text} (freed), or ()."""
    if text == _ffi.NULL:
        return ()
    try:
        said = _ffi.string(text).decode("utf-8", "replace")
    finally:
        _lib.free(text)
    return tuple(line for line in said.splitlines() if line.strip())
