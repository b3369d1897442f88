"""
xenstore watches on an asyncio loop: :class:`AsyncioXenstoreWatcher`.

The asyncio counterpart of :class:`~txlibxl.loop.reactor_xenstore.XenstoreWatcher`,
with the same contract (:class:`~txlibxl.loop.xenstore_watches.XenstoreWatcherCore`):
watch paths on a libxenstore connection of txlibxl's own, hand each firing
to ``on_fire(path, token)`` in order, and call ``on_lost(error)`` once when
the connection breaks.  The watch pipe is read with ``loop.add_reader``;
the liveness check is a ``loop.call_later`` that re-arms itself after each
check.  Make, start, check and stop the watcher on the loop's thread.
Nothing here imports Twisted.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from txlibxl._libxl.xenstore import XenstoreConnection, XenstoreConnectionLost, XenstoreError

from .asyncio_osevents import check_loop
from .logs import LoopLogger, loop_logger
from .xenstore_watches import XenstoreWatcherCore

__all__ = ["AsyncioXenstoreWatcher", "XenstoreError", "XenstoreConnectionLost"]


class AsyncioXenstoreWatcher(XenstoreWatcherCore):
    """
    Watches paths on C{connection} (which it then owns and closes), on the
    asyncio loop C{loop}.

    :param loop: an asyncio selector event loop.
    :param on_fire: called as ``on_fire(path, token)`` for each firing.
        xenstored fires every new watch once when it is set.
    :param on_lost: called once with the :class:`XenstoreError` when the
        connection breaks.
    :param liveness_interval: seconds between checks of the connection.
    :param log: a txaio-style logger (see :mod:`txlibxl.loop.logs`); by
        default the standard library's ``txlibxl.loop.asyncio_xenstore``.
    :raises TypeError: C{loop} is not an asyncio selector event loop.
    """

    def __init__(
        self,
        loop: Any,
        connection: XenstoreConnection,
        on_fire: Callable[[str, str], None],
        on_lost: Callable[[XenstoreError], None],
        liveness_interval: float = 1.0,
        log: Optional[LoopLogger] = None,
    ) -> None:
        super().__init__(connection, on_fire, on_lost, liveness_interval)
        self._loop = check_loop(loop)
        self._log = loop_logger(log, __name__)
        self._fd = -1
        self._timer: Any = None

    def _start_reading(self, fd: int) -> None:
        self._loop.add_reader(fd, self.check)
        self._fd = fd

    def _stop_reading(self) -> None:
        self._loop.remove_reader(self._fd)
        self._fd = -1

    def _start_checks(self, interval: float) -> None:
        self._timer = self._loop.call_later(interval, self._periodic_check)

    def _stop_checks(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _periodic_check(self) -> None:
        self._timer = None
        self.check()
        if not self._stopped:
            self._start_checks(self._interval)
