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
the logger; the messages still reach the logger as before.  Blocks nest.
"""
from __future__ import annotations

from typing import Any, Optional

from . import native

__all__ = ["LibxlSays"]

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

    __slots__ = ("_capture", "lines")

    def __init__(self) -> None:
        self._capture: Any = None
        self.lines: tuple = ()

    def __enter__(self) -> "LibxlSays":
        native.load()
        self._capture = _lib.txl_capture_begin()  # NULL without memory: nothing kept
        return self

    def __exit__(self, *exc: Any) -> None:
        text = _lib.txl_capture_end(self._capture)
        self._capture = None
        if text != _ffi.NULL:
            try:
                said = _ffi.string(text).decode("utf-8", "replace")
            finally:
                _lib.free(text)
            self.lines = tuple(line for line in said.splitlines() if line.strip())

    def message(self, default: Optional[str] = None) -> Optional[str]:
        """
        What libxl said, one message after another, or C{default} if it
        said nothing.
        """
        return "; ".join(self.lines) if self.lines else default
