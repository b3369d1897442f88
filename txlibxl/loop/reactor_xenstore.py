"""
xenstore watches on the Twisted reactor: :class:`XenstoreWatcher`.

libxl offers no watch on arbitrary xenstore paths; txlibxl opens a
libxenstore connection of its own (:mod:`txlibxl._libxl.xenstore`) and
this module puts its watch pipe in the reactor.  Each firing reaches
C{on_fire(path, token)} on the reactor thread, in the order xenstored sent
them.

A broken connection to xenstored never makes the watch pipe readable
(libxenstore's reader thread closes its socket and says nothing), so the
watcher also checks the connection every C{liveness_interval} seconds; the
check is a local call (``xs_check_watch``), no round trip.  When the
connection is lost, C{on_lost(error)} is called once and the watcher stops.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from twisted.internet.abstract import FileDescriptor
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from txlibxl._libxl.xenstore import XenstoreConnection, XenstoreConnectionLost, XenstoreError

__all__ = ["XenstoreWatcher", "XenstoreError", "XenstoreConnectionLost"]


class _WatchPipe(FileDescriptor):
    """The watch pipe as a reactor reader."""

    def __init__(self, reactor: Any, fd: int, on_readable: Callable[[], None]) -> None:
        super().__init__(reactor)
        self._fd = fd
        self._on_readable = on_readable
        self.connected = 1

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        self._on_readable()

    def connectionLost(self, reason: Any) -> None:
        # The reactor gave up on the fd (poll/epoll saw POLLHUP or
        # POLLNVAL): the next check tells what happened.
        self.connected = 0
        self._on_readable()


class XenstoreWatcher:
    """
    Watches C{paths} on C{connection} (which it then owns and closes).

    :param reactor: ``IReactorFDSet`` and ``IReactorTime``.
    :param on_fire: called as ``on_fire(path, token)`` for each firing.
        xenstored fires every new watch once when it is set.
    :param on_lost: called once with the :class:`XenstoreError` when the
        connection breaks; reporting it is the owner's business (the
        watcher logs it at debug level only, so that two watchers of one
        process do not both say it).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        connection: XenstoreConnection,
        on_fire: Callable[[str, str], None],
        on_lost: Callable[[XenstoreError], None],
        liveness_interval: float = 1.0,
    ) -> None:
        if liveness_interval <= 0:
            raise ValueError(f"liveness_interval must be positive, not {liveness_interval!r}")
        self._reactor = reactor
        self._conn = connection
        self._on_fire = on_fire
        self._on_lost = on_lost
        self._pipe: Optional[_WatchPipe] = None
        self._liveness = LoopingCall(self.check)
        self._liveness.clock = reactor
        self._interval = liveness_interval
        self._watches: List[Tuple[str, str]] = []
        self._stopped = False

    @property
    def connection(self) -> XenstoreConnection:
        """The connection, for reads (it stays the watcher's to close)."""
        return self._conn

    @property
    def running(self) -> bool:
        """Whether the watcher is watching (started, not stopped or lost)."""
        return self._pipe is not None and not self._stopped

    def start(self, paths: List[str]) -> None:
        """
        Set a watch on each of C{paths} (its token is the path itself) and
        start reading.

        :raises XenstoreError: a watch could not be set (the connection is
            then closed).
        """
        try:
            fd = self._conn.fileno()
            for path in paths:
                self._conn.watch(path, path)
                self._watches.append((path, path))
        except XenstoreError:
            self.stop()
            raise
        self._pipe = _WatchPipe(self._reactor, fd, self.check)
        self._reactor.addReader(self._pipe)
        self._liveness.start(self._interval, now=False)

    def watch(self, path: str) -> None:
        """
        Also watch C{path} (its token is the path itself), once started.

        :raises XenstoreError: the watch could not be set.
        """
        if (path, path) in self._watches:
            return
        self._conn.watch(path, path)
        self._watches.append((path, path))

    def unwatch(self, path: str) -> None:
        """Stop watching C{path} (set with :meth:`watch`); nothing if it is not watched."""
        if (path, path) not in self._watches:
            return
        self._watches.remove((path, path))
        if not self._stopped:
            try:
                self._conn.unwatch(path, path)
            except XenstoreError as e:
                self._log.debug("unwatching {path}: {error}", path=path, error=e)

    def check(self) -> None:
        """
        Hand every queued firing to C{on_fire}; notice a lost connection.
        Called when the watch pipe is readable and every
        C{liveness_interval}; safe to call at any time.
        """
        if self._stopped:
            return
        try:
            fired = self._conn.read_watches()
        except XenstoreError as e:
            self._lost(e)
            return
        for path, token in fired:
            try:
                self._on_fire(path, token)
            except Exception:
                self._log.failure("handling the xenstore watch on {path}", path=path)
            if self._stopped:
                return

    def _lost(self, error: XenstoreError) -> None:
        self._log.debug("lost the xenstore connection: {error}", error=error)
        self.stop()
        self._on_lost(error)

    def stop(self) -> None:
        """Stop reading and close the connection (its watches go with it).  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._liveness.running:
            self._liveness.stop()
        if self._pipe is not None:
            self._reactor.removeReader(self._pipe)
            self._pipe.connected = 0
        self._conn.close()
