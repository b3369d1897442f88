"""
libxl's six osevent hooks on an asyncio event loop.

:class:`AsyncioOSEvents` provides :class:`~txlibxl.interfaces.IOSEventHooks`
on an asyncio selector event loop (the default loop on Linux, with its
``EpollSelector``, or one built on any other ``selectors`` selector such as
``SelectSelector``) and reports readiness back through an
:class:`~txlibxl.interfaces.IOSEventSink`.  The contract is kept by the
loop-independent :class:`~txlibxl.loop.osevents_core.OSEventsCore`; this
module is its asyncio adapter, and what follows is how each rule looks on
asyncio.  Nothing here imports Twisted.

File descriptors
    * The watch of a libxl fd number is an :class:`AsyncioFDWatch`; the
      loop watches its private duplicate with ``loop.add_reader`` and
      ``loop.add_writer``, and removes it before the duplicate is closed.
    * Hang-ups: asyncio's selectors report them as readiness.  With epoll
      (and poll) any event other than ``EPOLLIN`` makes the fd writable and
      any other than ``EPOLLOUT`` makes it readable, so ``POLLHUP`` and
      ``POLLERR`` wake both a reader and a writer; with select(2) Linux
      puts a hung-up or failed fd in the read set and a failed one in the
      write set.  So every readiness callback polls the duplicate once
      (a cached ``select.poll``, one system call): ``POLLHUP``/``POLLERR``
      without ``POLLIN`` is the core's hang-up, reported with the
      observed bits to every registration and then paused, so the loop
      does not spin on a dead fd; anything else is readiness, reported as
      ``POLLIN`` or ``POLLOUT`` (a hang-up with data still to read is
      readiness until the data is gone, as on Twisted's poll reactors).
      libxl sees the hang-up either way.

Timeouts
    libxl's deadlines are wall-clock (``clock``, ``time.time``); the loop's
    timers run on its monotonic clock.  A deadline becomes
    ``loop.call_at(loop.time() + max(0, deadline - clock()), ...)`` when it
    is armed, so a deadline already past fires on the next loop turn and a
    wall-clock jump after arming does not move the timer (as on Twisted).
    "As soon as possible" cancels the pending ``TimerHandle`` and arms a
    new one for now; a timer that already ran is left alone.

Threads
    Hooks on another thread never touch the loop: the loop's part goes
    through ``loop.call_soon_threadsafe``.  :class:`LoopThread` decides:
    while the loop runs, only the thread running it is the loop's thread;
    before it runs (or after it stopped) the thread that created the hooks
    is.  :meth:`~txlibxl.loop.osevents_core.OSEventsCore.close` must run on
    the loop's thread.

Loops
    Any ``asyncio.SelectorEventLoop`` works.  uvloop is not supported: it
    has ``add_reader`` too, but libuv reports hang-ups its own way and
    nothing here has been checked against it.
"""
from __future__ import annotations

import asyncio
import select
import threading
import time
from typing import Any, Callable, Optional

from zope.interface import implementer

from txlibxl.interfaces import IOSEventHooks, IOSEventSink

from .logs import LoopLogger, loop_logger
from .osevents_core import OSEventsCore
from .registrations import READ_BITS, WRITE_BITS, WatchedFD

__all__ = ["AsyncioOSEvents", "AsyncioFDWatch", "LoopThread"]

_LOOP_METHODS = ("add_reader", "remove_reader", "add_writer", "remove_writer",
                 "call_at", "time", "call_soon_threadsafe", "is_running")


def check_loop(loop: Any) -> Any:
    """
    C{loop} if it has what the asyncio modules call.

    @raise TypeError: it does not (not an asyncio loop, or one without
        ``add_reader`` such as the proactor loop).
    """
    missing = [m for m in _LOOP_METHODS if not callable(getattr(loop, m, None))]
    if missing:
        raise TypeError(f"loop must be an asyncio selector event loop; {loop!r} has no {', '.join(missing)}")
    return loop


class LoopThread:
    """
    Which thread may touch C{loop} directly, and the way to reach it from
    the others.

    While the loop runs, the thread running it (the one where
    ``asyncio.get_running_loop()`` is C{loop}); while it does not, the
    thread that made this object (calls from elsewhere are queued until it
    runs).
    """

    __slots__ = ("_loop", "_home")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._home = threading.get_ident()

    def on_loop_thread(self) -> bool:
        """Whether the caller may touch the loop directly."""
        if self._loop.is_running():
            try:
                return asyncio.get_running_loop() is self._loop
            except RuntimeError:
                return False
        return threading.get_ident() == self._home

    def call_from_thread(self, f: Callable[..., None], *args: Any) -> None:
        """Run C{f(*args)} on the loop's thread, soon (``call_soon_threadsafe``)."""
        self._loop.call_soon_threadsafe(f, *args)


class AsyncioFDWatch(WatchedFD):
    """
    One libxl fd number on the loop: the loop's reader and writer callbacks
    for its duplicate.
    """

    def on_readable(self) -> None:
        """The loop found the duplicate readable (or hung up).  Never raises."""
        self._owner._ready_polled(self, READ_BITS, select.POLLIN)

    def on_writable(self) -> None:
        """The loop found the duplicate writable (or failed).  Never raises."""
        self._owner._ready_polled(self, WRITE_BITS, select.POLLOUT)

    def __repr__(self) -> str:
        return f"<AsyncioFDWatch fd={self.fd} dup={self._dupfd} regs={len(self.registrations)}>"


class _AsyncioLoop(LoopThread):
    """
    The core's L{LoopAdapter<txlibxl.loop.osevents_core.LoopAdapter>} on an
    asyncio loop.
    """

    __slots__ = ()

    name = "asyncio loop"

    def new_watch(self, owner: OSEventsCore, fd: int, dupfd: int) -> WatchedFD:
        return AsyncioFDWatch(owner, fd, dupfd)

    def start_reading(self, watch: Any) -> None:
        self._loop.add_reader(watch._dupfd, watch.on_readable)

    def stop_reading(self, watch: Any) -> None:
        if watch._dupfd >= 0:
            self._loop.remove_reader(watch._dupfd)

    def start_writing(self, watch: Any) -> None:
        self._loop.add_writer(watch._dupfd, watch.on_writable)

    def stop_writing(self, watch: Any) -> None:
        if watch._dupfd >= 0:
            self._loop.remove_writer(watch._dupfd)

    def call_later(self, delay: float, f: Callable[..., None], *args: Any) -> Any:
        loop = self._loop
        return loop.call_at(loop.time() + delay, f, *args)

    def reschedule(self, call: Any, delay: float, f: Callable[..., None], *args: Any) -> Any:
        call.cancel()
        return self.call_later(delay, f, *args)

    @staticmethod
    def cancel(call: Any) -> None:
        call.cancel()


@implementer(IOSEventHooks)
class AsyncioOSEvents(OSEventsCore):
    """
    libxl's osevent hooks on the asyncio loop C{loop}, reporting to
    C{sink}: the L{OSEventsCore<txlibxl.loop.osevents_core.OSEventsCore>}
    with its asyncio adapter.

    @param loop: an asyncio selector event loop.  Make the hooks on the
        loop's thread (inside it, or before it runs).
    @param sink: where readiness and timer expiry go (the binding's ctx).
    @param clock: the wall clock libxl's absolute deadlines are measured
        against (C{time.time}; tests pass a fake).
    @param log: a txaio-style logger (see L{txlibxl.loop.logs}); by
        default the standard library's ``txlibxl.loop.asyncio_osevents``.

    @raise TypeError: C{loop} is not an asyncio selector event loop.
    """

    def __init__(
        self,
        loop: Any,
        sink: IOSEventSink,
        clock: Callable[[], float] = time.time,
        log: Optional[LoopLogger] = None,
    ) -> None:
        self._asyncio_loop = check_loop(loop)
        super().__init__(_AsyncioLoop(loop), sink, clock, log=loop_logger(log, __name__))
