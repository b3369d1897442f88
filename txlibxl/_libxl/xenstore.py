"""
A libxenstore connection of txlibxl's own: :class:`XenstoreConnection`.

libxl keeps its xenstore connection to itself and offers no watch on
arbitrary paths, but an application that follows a whole host needs one:
``@introduceDomain`` fires when a new domain is introduced to xenstored.
This module wraps the few ``xs_*`` calls of the real client library
(``libxenstore``) that txlibxl needs.  libxenstore finds xenstored as libxl
does (``XENSTORED_PATH``, then the socket, then ``/dev/xen/xenbus``), so
the same code runs on real Xen and on the simulated host.

Like the rest of :mod:`txlibxl._libxl`, it is code that touches cffi
objects and C memory, so nothing above this package does: every ``char **`` and buffer libxenstore returns is
copied into Python values and ``free``'d here.  It knows no reactor: the
reactor side is :mod:`txlibxl.loop.reactor_xenstore`.

Threads and the watch pipe (libxenstore 4.17, ``xs.c``): the first
``xs_watch`` starts a reader thread.  When a watch fires, the thread
queues the event and writes one byte to the *watch pipe* (``xs_fileno``)
if the queue was empty; :meth:`XenstoreConnection.read_watches` drains the
queue, and the byte is consumed when the queue becomes empty.  When the
connection to xenstored breaks, the reader thread closes the socket but
writes nothing to the pipe: a broken connection is only seen by the next
call (:meth:`~XenstoreConnection.read_watches` raises
:class:`XenstoreConnectionLost`), so callers poll now and then.
"""
from __future__ import annotations

import errno
import os
from typing import Any, List, Optional, Tuple

from .. import errors
from . import loader

__all__ = ["XenstoreError", "XenstoreConnectionLost", "XenstoreConnection"]


class XenstoreError(errors.TxlibxlError):
    """
    A libxenstore call failed: C{call} is the C function, C{errno} the
    error number it left (``None`` if it left none).
    """

    def __init__(self, call: str, errnum: Optional[int], detail: str = "") -> None:
        self.call = call
        self.errno = errnum
        reason = os.strerror(errnum) if errnum else "failed"
        text = f"{call}: {reason}" + (f" ({detail})" if detail else "")
        super().__init__(text)


class XenstoreConnectionLost(XenstoreError):
    """
    The connection to xenstored is gone (xenstored died or restarted, or
    the connection was closed here).  Open a new one to go on.
    """


_LOST_ERRNOS = (errno.EBADF, errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN)


def _native() -> Tuple[Any, Any]:
    return loader.load()


def _text(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value or "\0" in value:
        raise errors.InvalidArgument(call="xenstore", message=f"{what} must be a non-empty string without NUL, not {value!r}")
    return value.encode()


class XenstoreConnection:
    """
    One ``xs_open(0)`` connection to xenstored.

    Every method raises :class:`XenstoreConnectionLost` once the
    connection is known to be broken or after :meth:`close`, and
    :class:`XenstoreError` for other failures; arguments that are not
    non-empty strings raise :class:`~txlibxl.errors.InvalidArgument`.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._lost = False

    @classmethod
    def open(cls) -> "XenstoreConnection":
        """
        Connect to xenstored (``xs_open(0)``).

        :raises XenstoreError: xenstored cannot be reached (no Xen, no
            socket, no permission); ``errno`` says why.
        """
        ffi, lib = _native()
        handle = lib.xs_open(0)
        if handle == ffi.NULL:
            raise XenstoreError("xs_open", ffi.errno, "is xenstored running? XENSTORED_PATH=" + os.environ.get("XENSTORED_PATH", "(unset)"))
        return cls(handle)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle is None

    def _live(self, call: str) -> Any:
        if self._handle is None:
            raise XenstoreConnectionLost(call, errno.EBADF, "the connection is closed")
        if self._lost:
            raise XenstoreConnectionLost(call, errno.EPIPE, "xenstored went away")
        return self._handle

    def _failed(self, call: str, lost_errnos: Tuple[int, ...] = ()) -> XenstoreError:
        ffi, _ = _native()
        err = ffi.errno
        # Calls on a connection whose socket the reader thread closed fail
        # with EBADF/EPIPE/ECONNRESET (requests) or EINVAL (xs_check_watch).
        if err in _LOST_ERRNOS or err in lost_errnos:
            self._lost = True
            return XenstoreConnectionLost(call, err)
        return XenstoreError(call, err)

    def fileno(self) -> int:
        """
        The watch pipe's read end (``xs_fileno``): readable while watch
        events are queued.  Owned by the connection; closed by :meth:`close`.
        """
        _, lib = _native()
        fd = lib.xs_fileno(self._live("xs_fileno"))
        if fd < 0:
            raise self._failed("xs_fileno")
        return fd

    def watch(self, path: str, token: str) -> None:
        """
        ``xs_watch``: watch C{path} (a node and its descendants, or
        ``@introduceDomain`` / ``@releaseDomain``); xenstored fires every
        new watch once at once.
        """
        _, lib = _native()
        if not lib.xs_watch(self._live("xs_watch"), _text(path, "path"), _text(token, "token")):
            raise self._failed("xs_watch")

    def unwatch(self, path: str, token: str) -> None:
        """``xs_unwatch``: stop the watch set with the same C{path} and C{token}."""
        _, lib = _native()
        if not lib.xs_unwatch(self._live("xs_unwatch"), _text(path, "path"), _text(token, "token")):
            raise self._failed("xs_unwatch")

    def read_watches(self) -> List[Tuple[str, str]]:
        """
        Every watch event queued now, oldest first, as ``(path, token)``
        (``xs_check_watch`` until ``EAGAIN``); an empty list if none.

        :raises XenstoreConnectionLost: the connection broke (libxenstore
            answers ``EINVAL`` once its socket is closed and the queue is
            empty).
        """
        ffi, lib = _native()
        handle = self._live("xs_check_watch")
        fired: List[Tuple[str, str]] = []
        while True:
            strings = lib.xs_check_watch(handle)
            if strings == ffi.NULL:
                if ffi.errno == errno.EAGAIN:
                    return fired
                raise self._failed("xs_check_watch", (errno.EINVAL,))
            try:
                fired.append(
                    (ffi.string(strings[0]).decode("utf-8", "replace"), ffi.string(strings[1]).decode("utf-8", "replace"))
                )
            finally:
                lib.free(strings)

    def read(self, path: str) -> Optional[str]:
        """The value of node C{path}, or ``None`` if there is no such node."""
        ffi, lib = _native()
        length = ffi.new("unsigned int *")
        value = lib.xs_read(self._live("xs_read"), lib.XBT_NULL, _text(path, "path"), length)
        if value == ffi.NULL:
            if ffi.errno == errno.ENOENT:
                return None
            raise self._failed("xs_read")
        try:
            return ffi.unpack(ffi.cast("char *", value), length[0]).decode("utf-8", "replace")
        finally:
            lib.free(value)

    def directory(self, path: str) -> List[str]:
        """The names of C{path}'s children; an empty list if there is no such node."""
        ffi, lib = _native()
        count = ffi.new("unsigned int *")
        names = lib.xs_directory(self._live("xs_directory"), lib.XBT_NULL, _text(path, "path"), count)
        if names == ffi.NULL:
            if ffi.errno == errno.ENOENT:
                return []
            raise self._failed("xs_directory")
        try:
            return [ffi.string(names[i]).decode("utf-8", "replace") for i in range(count[0])]
        finally:
            lib.free(names)

    def close(self) -> None:
        """
        ``xs_close``: end the connection (its watches, its reader thread
        and its watch pipe go with it).  Idempotent.  Remove the watch
        pipe from the reactor first: its fd is closed here.
        """
        if self._handle is None:
            return
        _, lib = _native()
        handle, self._handle = self._handle, None
        lib.xs_close(handle)

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else ("lost" if self._lost else "open")
        return f"<XenstoreConnection {state}>"
