"""
xenstore watches on the Twisted reactor: :class:`XenstoreWatcher`.

The watcher's logic (watch paths, hand firings to ``on_fire`` in order,
notice a lost connection once) is
:class:`~txlibxl.loop.xenstore_watches.XenstoreWatcherCore`; this is the
reactor's part: the watch pipe as a reactor reader, and the liveness check
as a ``LoopingCall`` on the reactor.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.abstract import FileDescriptor
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from txlibxl._libxl.xenstore import XenstoreConnection, XenstoreConnectionLost, XenstoreError

from .xenstore_watches import XenstoreWatcherCore

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


class XenstoreWatcher(XenstoreWatcherCore):
    """
    Watches paths on C{connection} (which it then owns and closes), on
    C{reactor}.

    :param reactor: ``IReactorFDSet`` and ``IReactorTime``.
    :param on_fire: called as ``on_fire(path, token)`` for each firing.
        xenstored fires every new watch once when it is set.
    :param on_lost: called once with the :class:`XenstoreError` when the
        connection breaks; reporting it is the owner's business (the
        watcher logs it at debug level only, so that two watchers of one
        process do not both say it).
    :param liveness_interval: seconds between checks of the connection.
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
        super().__init__(connection, on_fire, on_lost, liveness_interval)
        self._reactor = reactor
        self._pipe: Optional[_WatchPipe] = None
        self._liveness = LoopingCall(self.check)
        self._liveness.clock = reactor

    def _start_reading(self, fd: int) -> None:
        self._pipe = _WatchPipe(self._reactor, fd, self.check)
        self._reactor.addReader(self._pipe)

    def _stop_reading(self) -> None:
        if self._pipe is not None:
            self._reactor.removeReader(self._pipe)
            self._pipe.connected = 0

    def _start_checks(self, interval: float) -> None:
        self._liveness.start(interval, now=False)

    def _stop_checks(self) -> None:
        if self._liveness.running:
            self._liveness.stop()
