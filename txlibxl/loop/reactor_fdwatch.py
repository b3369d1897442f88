"""
One libxl fd number as a Twisted selectable: :class:`FDWatch`.
"""
from __future__ import annotations

import select
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.python.failure import Failure

from .registrations import READ_BITS, WRITE_BITS, WatchedFD

__all__ = ["FDWatch"]


class FDWatch(FileDescriptor, WatchedFD):
    """
    The reactor's view of one libxl fd number: a reader and/or writer over a
    private duplicate of the fd, carrying every registration on it (a
    L{WatchedFD<txlibxl.loop.registrations.WatchedFD>}, whose state the
    owner's core keeps).
    """

    def __init__(self, owner: Any, reactor: Any, fd: int, dupfd: int) -> None:
        FileDescriptor.__init__(self, reactor=reactor)
        WatchedFD.__init__(self, owner, fd, dupfd)

    def fileno(self) -> int:
        """
        The descriptor the reactor watches: a duplicate of libxl's fd, or -1
        once the watch has been dropped.
        """
        return self._dupfd

    def logPrefix(self) -> str:
        return "libxl-fd"

    def doRead(self) -> None:
        """
        Report C{POLLIN} to every live registration asking for
        C{POLLIN|POLLPRI}.  Never raises, always returns C{None}.
        """
        self._owner._dispatch(self, READ_BITS, select.POLLIN)
        return None

    def doWrite(self) -> None:
        """
        Report C{POLLOUT} to every live registration asking for it.  Never
        raises, always returns C{None}.
        """
        self._owner._dispatch(self, WRITE_BITS, select.POLLOUT)
        return None

    def readConnectionLost(self, reason: Failure) -> None:
        """
        The reactor saw a hang-up while reading (it has removed the reader).
        Reported to libxl, never torn down: see L{txlibxl.loop.reactor_osevents.ReactorOSEvents}.
        """
        self._owner._hangup(self)

    def connectionLost(self, reason: Failure) -> None:
        """
        The reactor saw a hang-up or error (it has removed reader and
        writer), or is shutting down.  Reported to libxl when confirmed,
        never torn down, libxl's fd never closed: see L{txlibxl.loop.reactor_osevents.ReactorOSEvents}.
        """
        self._owner._hangup(self)

    def writeConnectionLost(self, reason: Failure) -> None:
        self._owner._hangup(self)

    def loseConnection(self, _connDone: object = None) -> None:
        """
        Not for us: only libxl ends a registration, via C{fd_deregister}.
        """
