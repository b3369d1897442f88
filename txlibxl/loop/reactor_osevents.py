"""
libxl's six osevent hooks on a Twisted reactor.

:class:`ReactorOSEvents` provides :class:`~txlibxl.interfaces.IOSEventHooks`
on any reactor that provides ``IReactorFDSet`` and ``IReactorTime``
(select, poll, epoll, asyncio, and ``MemoryReactorClock`` in tests), and
reports readiness back through an :class:`~txlibxl.interfaces.IOSEventSink`.

The contract (one watch per fd, the private duplicate, hang-ups, timers,
threads, teardown) is kept by the loop-independent
:class:`~txlibxl.loop.osevents_core.OSEventsCore`; this module is its
reactor adapter, and what follows is how each rule looks on Twisted.

File descriptors
    * The watch of a libxl fd number is an :class:`FDWatch`, a
      ``FileDescriptor`` whose ``fileno()`` is the private duplicate while
      the watch is live and -1 afterwards.  Watching it is
      ``addReader``/``addWriter``; ``doRead``/``doWrite`` report ``POLLIN``
      or ``POLLOUT``, swallow and log every exception and return ``None``
      so the reactor never disconnects the watch.
    * The duplicate matters on Twisted because reactors key watches by fd
      number (epoll): without it a deregistration from another thread
      would leave the reactor with a dead or foreign descriptor.
    * When a poll-style reactor sees ``POLLHUP``/``POLLERR`` without
      ``POLLIN`` it calls ``readConnectionLost``/``connectionLost`` instead
      of ``doRead``.  That is the core's hang-up: the watch polls its fd
      once (this path is rare), reports the observed bits to every
      registration and stays paused.  A disconnect that the poll does not
      confirm (a stale event for a reused descriptor number, or the
      reactor's own ``disconnectAll`` at shutdown) just restores the
      watch.  The select and asyncio reactors never take this path: they
      report a hang-up as readable, so libxl sees ``POLLIN``, re-polls and
      finds ``POLLHUP`` itself.

Timeouts
    A timer is ``reactor.callLater(max(0, deadline - clock()), ...)``; "as
    soon as possible" is ``dc.active() and dc.reset(0)``, and a fired
    ``DelayedCall`` is never reset or cancelled.

Threads
    Hooks on a thread other than the reactor's (:func:`on_reactor_thread`
    decides) hand the reactor's part over with ``reactor.callFromThread``.
    The asyncio reactor turns callFromThread into ``callLater(0)``, whose
    order among equal times is not guaranteed; the core's marshalled calls
    do not depend on their order.

Reactor shutdown
    Call :meth:`~txlibxl.loop.osevents_core.OSEventsCore.close` after
    ``libxl_ctx_free`` (the service does this in ``stopService``).  A
    reactor that shuts down with watches still registered calls their
    ``connectionLost`` (``disconnectAll``); that is an unconfirmed
    disconnect, so the watches are restored, not reported.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from twisted.logger import Logger
from twisted.python import threadable
from zope.interface import implementer

from txlibxl.interfaces import IOSEventHooks, IOSEventSink

from .osevents_core import OSEventsCore
from .reactor_fdwatch import FDWatch
from .registrations import WatchedFD

__all__ = ["ReactorOSEvents", "on_reactor_thread"]

log = Logger()


def on_reactor_thread() -> bool:
    """
    Whether the caller may touch the reactor directly: it is on the thread
    that runs (or ran) the reactor, or, before any reactor has run, on the
    main thread, where reactors are started.
    """
    io_thread = threadable.ioThread
    if io_thread is None:
        return threading.current_thread() is threading.main_thread()
    # threadable.getThreadID() is this thread's ident, got the long way.
    return bool(io_thread == threading.get_ident())


class _ReactorLoop:
    """
    The core's L{LoopAdapter<txlibxl.loop.osevents_core.LoopAdapter>} on a
    Twisted reactor.
    """

    name = "reactor"

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    @staticmethod
    def on_loop_thread() -> bool:
        return on_reactor_thread()

    def call_from_thread(self, f: Callable[..., None], *args: Any) -> None:
        self._reactor.callFromThread(f, *args)

    def new_watch(self, owner: OSEventsCore, fd: int, dupfd: int) -> WatchedFD:
        return FDWatch(owner, self._reactor, fd, dupfd)

    def start_reading(self, watch: Any) -> None:
        self._reactor.addReader(watch)

    def stop_reading(self, watch: Any) -> None:
        self._reactor.removeReader(watch)

    def start_writing(self, watch: Any) -> None:
        self._reactor.addWriter(watch)

    def stop_writing(self, watch: Any) -> None:
        self._reactor.removeWriter(watch)

    def call_later(self, delay: float, f: Callable[..., None], *args: Any) -> Any:
        return self._reactor.callLater(delay, f, *args)

    @staticmethod
    def reschedule(call: Any, delay: float, f: Callable[..., None], *args: Any) -> Any:
        if call.active():
            call.reset(delay)
        return call

    @staticmethod
    def cancel(call: Any) -> None:
        if call.active():
            call.cancel()


@implementer(IOSEventHooks)
class ReactorOSEvents(OSEventsCore):
    """
    libxl's osevent hooks on C{reactor}, reporting to C{sink}: the
    L{OSEventsCore<txlibxl.loop.osevents_core.OSEventsCore>} with its
    reactor adapter.

    @param reactor: provides C{IReactorFDSet}, C{IReactorTime} and, if hooks
        may run on other threads, C{IReactorThreads}.
    @param sink: where readiness and timer expiry go (the binding's ctx).
    @param clock: the wall clock libxl's absolute deadlines are measured
        against (C{time.time}; tests pass the fake reactor's C{seconds}).
    """

    def __init__(
        self,
        reactor: Any,
        sink: IOSEventSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reactor = reactor
        super().__init__(_ReactorLoop(reactor), sink, clock, log=log)
