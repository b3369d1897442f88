"""
xenstore watches, whatever the event loop: :class:`XenstoreWatcherCore`.

libxl offers no watch on arbitrary xenstore paths; txlibxl opens a
libxenstore connection of its own (:mod:`txlibxl._libxl.xenstore`) and an
event loop reads its watch pipe.  Each firing reaches
C{on_fire(path, token)} on the loop's thread, in the order xenstored sent
them.

A broken connection to xenstored never makes the watch pipe readable
(libxenstore's reader thread closes its socket and says nothing), so the
watcher also checks the connection every C{liveness_interval} seconds; the
check is a local call (``xs_check_watch``), no round trip.  When the
connection is lost, C{on_lost(error)} is called once and the watcher stops.

This class is that logic; each loop's watcher
(:class:`~txlibxl.loop.reactor_xenstore.XenstoreWatcher`,
:class:`~txlibxl.loop.asyncio_xenstore.AsyncioXenstoreWatcher`) adds the
four loop calls: start and stop reading the pipe, start and stop the
periodic check.  Every method runs on the loop's thread.
"""
from __future__ import annotations

from typing import Callable, List, Tuple

from txlibxl._libxl.xenstore import XenstoreConnection, XenstoreError

from .logs import LoopLogger

__all__ = ["XenstoreWatcherCore"]


class XenstoreWatcherCore:
    """
    Watches paths on C{connection} (which it then owns and closes).

    :param on_fire: called as ``on_fire(path, token)`` for each firing.
        xenstored fires every new watch once when it is set.
    :param on_lost: called once with the :class:`XenstoreError` when the
        connection breaks; reporting it is the owner's business (the
        watcher logs it at debug level only, so that two watchers of one
        process do not both say it).
    :param liveness_interval: seconds between checks of the connection.
    :raises ValueError: C{liveness_interval} is not positive.
    """

    _log: LoopLogger

    def __init__(
        self,
        connection: XenstoreConnection,
        on_fire: Callable[[str, str], None],
        on_lost: Callable[[XenstoreError], None],
        liveness_interval: float,
    ) -> None:
        if not liveness_interval > 0:
            raise ValueError(f"liveness_interval must be positive, not {liveness_interval!r}")
        self._conn = connection
        self._on_fire = on_fire
        self._on_lost = on_lost
        self._interval = liveness_interval
        self._watches: List[Tuple[str, str]] = []
        self._reading = False
        self._stopped = False

    # -- what each loop supplies -----------------------------------------

    def _start_reading(self, fd: int) -> None:
        """Call L{check} whenever C{fd} (the watch pipe) is readable."""
        raise NotImplementedError

    def _stop_reading(self) -> None:
        """Undo L{_start_reading}."""
        raise NotImplementedError

    def _start_checks(self, interval: float) -> None:
        """Call L{check} every C{interval} seconds, the first one from now."""
        raise NotImplementedError

    def _stop_checks(self) -> None:
        """Undo L{_start_checks}; harmless if not started."""
        raise NotImplementedError

    # -- the watcher -----------------------------------------------------

    @property
    def connection(self) -> XenstoreConnection:
        """The connection, for reads (it stays the watcher's to close)."""
        return self._conn

    @property
    def running(self) -> bool:
        """Whether the watcher is watching (started, not stopped or lost)."""
        return self._reading and not self._stopped

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
        self._start_reading(fd)
        self._reading = True
        self._start_checks(self._interval)

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
        self._stop_checks()
        if self._reading:
            self._stop_reading()
        self._conn.close()

    def __repr__(self) -> str:
        state = "running" if self.running else ("stopped" if self._stopped else "new")
        return f"<{type(self).__name__} {state} paths={[p for p, _ in self._watches]}>"
