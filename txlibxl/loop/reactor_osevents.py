"""
libxl's six osevent hooks on a Twisted reactor.

:class:`ReactorOSEvents` provides :class:`~txlibxl.interfaces.IOSEventHooks`
on any reactor that provides ``IReactorFDSet`` and ``IReactorTime``
(select, poll, epoll, asyncio, and ``MemoryReactorClock`` in tests), and
reports readiness back through an :class:`~txlibxl.interfaces.IOSEventSink`.

The contract it keeps (libxl_event.h, and the pitfalls in
``libxl-event-contract.md`` (c)):

File descriptors
    * One :class:`FDWatch` (a ``FileDescriptor``) per libxl fd number,
      multiplexing every registration libxl made on that fd.  It is a reader
      iff the OR of the registrations' events has ``POLLIN|POLLPRI`` and a
      writer iff it has ``POLLOUT``; ``events == 0`` keeps the registration
      but watches nothing.
    * ``doRead``/``doWrite`` call ``sink.occurred_fd`` for every live
      registration interested in that direction, with ``revents`` ``POLLIN``
      or ``POLLOUT`` (libxl ignores it and re-polls; over-reporting is
      harmless).  They swallow and log every exception and return ``None``
      so the reactor never disconnects the watch.
    * When a poll-style reactor sees ``POLLHUP``/``POLLERR`` without
      ``POLLIN`` it calls ``readConnectionLost``/``connectionLost`` instead
      of ``doRead``.  The watch then polls its fd once (this path is rare) to
      confirm the hang-up, reports the observed bits (``POLLHUP``,
      ``POLLERR``) to every registration, and stays *paused*: no reader, no
      writer, so the reactor does not spin on a dead fd, until libxl calls
      ``fd_modify`` or ``fd_register`` on that fd (normally it deregisters).
      A disconnect that the poll does not confirm (a stale event for a
      reused descriptor number, or the reactor's own ``disconnectAll`` at
      shutdown) just restores the watch.  The select and asyncio reactors
      never take this path: they report a hang-up as readable, so libxl sees
      ``POLLIN``, re-polls and finds ``POLLHUP`` itself.
    * The reactor watches a private duplicate (``os.dup``) of libxl's fd, and
      ``fileno()`` returns that duplicate while the watch is live and -1
      afterwards.  libxl's own fd is never closed; only the duplicate is,
      when the last registration on it goes.  The duplicate is what makes
      deregistration from a non-reactor thread safe: libxl closes (and may
      reuse) its fd number as soon as ``fd_deregister`` returns, before the
      reactor thread can drop it, and reactors that key by fd number (epoll)
      would otherwise be left with a dead or foreign descriptor.  On the
      reactor thread the duplicate is closed inside ``fd_deregister``, so the
      underlying file's lifetime is exactly as libxl expects.
    * ``fd_deregister`` drops the registration at once: on the reactor
      thread the reader/writer is removed before it returns.  A later
      ``fd_register`` on the same number gets a fresh watch; events still
      queued for the old watch (or for a dead registration) reach nobody.

Timeouts
    * ``timeout_register(deadline, token)`` arms
      ``reactor.callLater(max(0, deadline - clock()), ...)``; deadlines are
      absolute wall-clock seconds, past ones fire on the next reactor turn.
    * ``timeout_modify(reg, None)`` means "fire as soon as possible":
      ``dc.active() and dc.reset(0)``; a timer that already fired or is
      firing is left alone, and a fired call is never cancelled.
    * ``occurred_timeout(token)`` is called exactly once per registration,
      unless it was deregistered first (``timeout_deregister``, which libxl
      4.17 never calls, cancels defensively) or :meth:`ReactorOSEvents.close` ran.

Reentrancy
    No ``occurred_*`` call is ever made from inside a hook: everything is
    reported from a reactor callback (a reader, writer, or DelayedCall).

Threads
    Hooks may run on any thread (a user calling blocking libxl in
    ``deferToThread``).  The registration record and its desired state
    (events, alive, deadline) are updated synchronously under a private
    lock, so the hook's return value is valid at once; changes to the
    reactor (add/remove reader and writer, arm/reset/cancel DelayedCalls,
    closing the duplicate) are made on the reactor thread, marshalled with
    ``reactor.callFromThread`` (:func:`on_reactor_thread` decides).  Those
    marshalled calls carry no state of their own: each one reconciles the
    reactor with the record's state *as it is when the call runs*.  Hence
    their order does not matter (the asyncio reactor turns callFromThread
    into ``callLater(0)``, whose order among equal times is not
    guaranteed), and
    a deregistration always wins over a register or modify made before it,
    whatever order their marshalled calls run in.  Between a non-reactor
    thread's ``fd_deregister`` and the reactor thread's next turn the
    duplicate keeps the underlying file open (peers see the close one turn
    late), and an ``occurred_*`` call already on its way on the reactor
    thread may still reach libxl with the token just deregistered; libxl's
    hook nexus discards such calls (and both sides serialise on libxl's ctx
    lock).  On the reactor thread no call ever uses a dead registration.
    The lock is never held while calling the sink (libxl_event.h locking
    rule (a)).

Reactor shutdown
    Call :meth:`ReactorOSEvents.close` after ``libxl_ctx_free`` (the service does this in
    ``stopService``): it removes every reader and writer, closes every
    duplicate and cancels every pending DelayedCall, logging what libxl left
    behind.  After it, every ``*_register``/``*_modify`` raises
    :class:`OSEventsClosed` and deregistrations are no-ops.  A reactor that
    shuts down with watches still registered calls their
    ``connectionLost`` (``disconnectAll``); that is an unconfirmed
    disconnect, so the watches are restored, not reported.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Dict, Optional, Set

from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure
from zope.interface import implementer

from txlibxl.interfaces import IOSEventHooks, IOSEventSink

from .reactor_fdwatch import FDWatch
from .registrations import (
    CANCELLED,
    FIRED,
    HANGUP_BITS,
    PENDING,
    READ_BITS,
    WRITE_BITS,
    FDRegistration,
    OSEventsClosed,
    OSEventStats,
    TimeoutRegistration,
    check_deadline,
    check_events,
    check_int,
    poll_now,
)

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
    return bool(io_thread == threadable.getThreadID())


@implementer(IOSEventHooks)
class ReactorOSEvents:
    """
    libxl's osevent hooks on C{reactor}, reporting to C{sink}.

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
        self._sink = sink
        self._clock = clock
        self._lock = threading.Lock()
        self._watches: Dict[int, FDWatch] = {}
        # Watches dropped by a non-reactor thread whose reactor side has
        # not been reconciled yet (close() must still find them).
        self._retiring: Set[FDWatch] = set()
        self._timers: Set[TimeoutRegistration] = set()
        self._closed = False

    # -- introspection -------------------------------------------------

    def stats(self) -> OSEventStats:
        """
        How many fds, fd registrations and pending timers libxl holds.
        """
        with self._lock:
            return OSEventStats(
                fds=len(self._watches),
                fd_registrations=sum(len(w.registrations) for w in self._watches.values()),
                timers=len(self._timers),
            )

    # -- fd hooks --------------------------------------------------------

    def fd_register(self, fd: int, events: int, token: int) -> FDRegistration:
        """
        See L{IOSEventHooks.fd_register}.

        @raise TypeError, ValueError: bad arguments (nothing changed).
        @raise OSError: C{fd} cannot be duplicated (not open, or no fds
            left); nothing changed.
        @raise OSEventsClosed: after L{close}.
        """
        check_int("fd", fd)
        if fd < 0:
            raise ValueError(f"fd must be a descriptor number, not {fd}")
        check_events(events)
        check_int("token", token)
        on_reactor = on_reactor_thread()
        created = False
        with self._lock:
            if self._closed:
                raise OSEventsClosed("fd_register after close()")
            watch = self._watches.get(fd)
            if watch is None:
                watch = FDWatch(self, fd, os.dup(fd))
                self._watches[fd] = watch
                created = True
            reg = FDRegistration(self, watch, fd, token, events)
            watch.registrations.append(reg)
            was_paused = watch.paused
            watch.paused = False
        if not on_reactor:
            self._reactor.callFromThread(self._sync, watch)
            return reg
        try:
            self._sync(watch)
        except BaseException:
            with self._lock:
                reg.live = False
                watch.registrations.remove(reg)
                watch.paused = was_paused
                if created:
                    del self._watches[fd]
                    watch.retired = True
            self._sync_quietly(watch)
            raise
        return reg

    def fd_modify(self, fd: int, registration: FDRegistration, events: int) -> FDRegistration:
        """
        See L{IOSEventHooks.fd_modify}.  Also ends a hang-up pause on the fd.

        @raise TypeError, ValueError: bad arguments, a registration that is
            not ours or is dead, or C{fd} is not the registration's
            (nothing changed).
        @raise OSEventsClosed: after L{close}.
        """
        reg = self._own_fd_registration(registration)
        check_events(events)
        if fd != reg.fd:
            raise ValueError(f"fd_modify for fd {fd} with a registration for fd {reg.fd}")
        on_reactor = on_reactor_thread()
        with self._lock:
            if self._closed:
                raise OSEventsClosed("fd_modify after close()")
            if not reg.live:
                raise ValueError(f"fd_modify of a deregistered registration {reg!r}")
            watch = reg._watch
            old_events, was_paused = reg.events, watch.paused
            reg.events = events
            watch.paused = False
        if not on_reactor:
            self._reactor.callFromThread(self._sync, watch)
            return reg
        try:
            self._sync(watch)
        except BaseException:
            with self._lock:
                reg.events = old_events
                watch.paused = was_paused
            self._sync_quietly(watch)
            raise
        return reg

    def fd_deregister(self, fd: int, registration: FDRegistration) -> None:
        """
        See L{IOSEventHooks.fd_deregister}.  On the reactor thread the
        reader/writer is gone when this returns; elsewhere the registration
        is dead at once and the reactor follows on its next turn.  A repeated
        deregistration, or one after L{close}, is logged and ignored.

        @raise TypeError: C{registration} is not one of ours.
        """
        reg = self._own_fd_registration(registration)
        if fd != reg.fd:
            log.warn(
                "fd_deregister for fd {fd} with a registration for fd {regfd}; "
                "deregistering the registration",
                fd=fd,
                regfd=reg.fd,
            )
        with self._lock:
            if not reg.live:
                if not self._closed:
                    log.warn("fd_deregister of a dead registration {reg!r}", reg=reg)
                return
            reg.live = False
            watch = reg._watch
            watch.registrations.remove(reg)
            if not watch.registrations:
                watch.retired = True
                if self._watches.get(reg.fd) is watch:
                    del self._watches[reg.fd]
            on_reactor = on_reactor_thread()
            if not on_reactor and watch.retired:
                self._retiring.add(watch)
        if on_reactor:
            self._sync_quietly(watch)
        else:
            self._reactor.callFromThread(self._sync_quietly, watch)

    def _own_fd_registration(self, registration: object) -> FDRegistration:
        if not isinstance(registration, FDRegistration) or registration._owner is not self:
            raise TypeError(f"not an fd registration made by this hooks object: {registration!r}")
        return registration

    # -- the reactor side of fds (reactor thread only) -------------------

    def _sync(self, watch: FDWatch) -> None:
        """
        Make the reactor watch what C{watch}'s live registrations ask for;
        drop a retired watch and close its duplicate.
        """
        with self._lock:
            retired = watch.retired
            want_read = want_write = False
            if not (retired or watch.paused):
                for reg in watch.registrations:
                    want_read = want_read or bool(reg.events & READ_BITS)
                    want_write = want_write or bool(reg.events & WRITE_BITS)
        if retired and watch._dupfd < 0:
            return
        reactor = self._reactor
        if want_read != watch._reading:
            if want_read:
                reactor.addReader(watch)
            else:
                reactor.removeReader(watch)
            watch._reading = want_read
        if want_write != watch._writing:
            if want_write:
                reactor.addWriter(watch)
            else:
                reactor.removeWriter(watch)
            watch._writing = want_write
        if retired:
            dupfd, watch._dupfd = watch._dupfd, -1
            with self._lock:
                self._retiring.discard(watch)
            os.close(dupfd)

    def _sync_quietly(self, watch: FDWatch) -> None:
        try:
            self._sync(watch)
        except Exception:
            log.failure("could not update the reactor for libxl fd {fd}", fd=watch.fd)

    def _dispatch(self, watch: FDWatch, bits: int, revents: int) -> None:
        with self._lock:
            interested = [r for r in watch.registrations if r.events & bits]
        sink = self._sink
        for reg in interested:
            # An earlier call may have deregistered or modified this one.
            events = reg.events
            if not (reg.live and events & bits):
                continue
            try:
                sink.occurred_fd(reg.token, reg.fd, events, revents)
            except Exception:
                log.failure("occurred_fd raised for libxl fd {fd}", fd=reg.fd)

    def _hangup(self, watch: FDWatch, reason: Failure) -> None:
        """
        The reactor disconnected C{watch}: it has removed the reader (and
        usually the writer).  Confirm with poll(2); report a real hang-up to
        every live registration and pause; otherwise restore the watch.
        """
        try:
            reactor = self._reactor
            reactor.removeReader(watch)
            reactor.removeWriter(watch)
            watch._reading = watch._writing = False
            if watch._dupfd < 0:
                return
            observed = poll_now(watch._dupfd)
            if not observed & HANGUP_BITS:
                self._sync(watch)
                return
            with self._lock:
                if watch.retired:
                    return
                watch.paused = True
                regs = list(watch.registrations)
        except Exception:
            log.failure("handling a hang-up on libxl fd {fd}", fd=watch.fd)
            return
        revents = observed & (HANGUP_BITS | READ_BITS | WRITE_BITS)
        sink = self._sink
        for reg in regs:
            if not reg.live:
                continue
            try:
                sink.occurred_fd(reg.token, reg.fd, reg.events, revents)
            except Exception:
                log.failure("occurred_fd raised for libxl fd {fd}", fd=reg.fd)

    # -- timeout hooks ---------------------------------------------------

    def timeout_register(self, deadline: float, token: int) -> TimeoutRegistration:
        """
        See L{IOSEventHooks.timeout_register}.

        @raise TypeError, ValueError: bad arguments (nothing changed).
        @raise OSEventsClosed: after L{close}.
        """
        deadline = check_deadline(deadline)
        check_int("token", token)
        on_reactor = on_reactor_thread()
        with self._lock:
            if self._closed:
                raise OSEventsClosed("timeout_register after close()")
            reg = TimeoutRegistration(self, token, deadline)
            self._timers.add(reg)
        if not on_reactor:
            self._reactor.callFromThread(self._arm, reg)
            return reg
        try:
            self._arm(reg)
        except BaseException:
            with self._lock:
                reg.state = CANCELLED
                self._timers.discard(reg)
            raise
        return reg

    def timeout_modify(
        self, registration: TimeoutRegistration, deadline: Optional[float]
    ) -> TimeoutRegistration:
        """
        See L{IOSEventHooks.timeout_modify}.  C{None} fires as soon as
        possible; a timer that has fired, is firing or was deregistered is
        left alone.

        @raise TypeError, ValueError: bad arguments (nothing changed).
        @raise OSEventsClosed: after L{close}.
        """
        reg = self._own_timeout(registration)
        if deadline is not None:
            deadline = check_deadline(deadline)
        on_reactor = on_reactor_thread()
        with self._lock:
            if self._closed:
                raise OSEventsClosed("timeout_modify after close()")
            if reg.state != PENDING:
                return reg
            if deadline is None:
                reg.asap = True
            else:
                reg.asap = False
                reg.deadline = deadline
        if on_reactor:
            self._rearm(reg)
        else:
            self._reactor.callFromThread(self._rearm, reg)
        return reg

    def timeout_deregister(self, registration: TimeoutRegistration) -> None:
        """
        See L{IOSEventHooks.timeout_deregister}: cancel without firing, if it
        has not fired yet.

        @raise TypeError: C{registration} is not one of ours.
        """
        reg = self._own_timeout(registration)
        with self._lock:
            if reg.state != PENDING:
                return
            reg.state = CANCELLED
            self._timers.discard(reg)
        if on_reactor_thread():
            self._disarm(reg)
        else:
            self._reactor.callFromThread(self._disarm, reg)

    def _own_timeout(self, registration: object) -> TimeoutRegistration:
        if not isinstance(registration, TimeoutRegistration) or registration._owner is not self:
            raise TypeError(
                f"not a timeout registration made by this hooks object: {registration!r}"
            )
        return registration

    # -- the reactor side of timeouts (reactor thread only) --------------

    def _delay(self, reg: TimeoutRegistration) -> float:
        if reg.asap:
            return 0.0
        return max(0.0, reg.deadline - self._clock())

    def _arm(self, reg: TimeoutRegistration) -> None:
        with self._lock:
            if reg.state != PENDING or reg._call is not None:
                return
            delay = self._delay(reg)
        reg._call = self._reactor.callLater(delay, self._fire, reg)

    def _rearm(self, reg: TimeoutRegistration) -> None:
        call = reg._call
        if call is not None and call.active():
            with self._lock:
                delay = self._delay(reg)
            call.reset(delay)

    def _disarm(self, reg: TimeoutRegistration) -> None:
        call, reg._call = reg._call, None
        if call is not None and call.active():
            call.cancel()

    def _fire(self, reg: TimeoutRegistration) -> None:
        with self._lock:
            reg._call = None
            if reg.state != PENDING:
                return
            reg.state = FIRED
            self._timers.discard(reg)
        try:
            self._sink.occurred_timeout(reg.token)
        except Exception:
            log.failure("occurred_timeout raised")

    # -- teardown --------------------------------------------------------

    def close(self) -> OSEventStats:
        """
        Stop watching everything: remove every reader and writer, close
        every duplicate, cancel every pending timer; later registrations
        raise L{OSEventsClosed}.  Call on the reactor thread, after
        ``libxl_ctx_free`` (which deregisters libxl's fds itself).

        @return: what libxl had left registered (logged as a warning when
            not empty).
        """
        if not on_reactor_thread():
            raise RuntimeError("ReactorOSEvents.close() must run on the reactor thread")
        with self._lock:
            left = OSEventStats(
                fds=len(self._watches),
                fd_registrations=sum(len(w.registrations) for w in self._watches.values()),
                timers=len(self._timers),
            )
            self._closed = True
            watches = list(self._watches.values()) + list(self._retiring)
            self._watches.clear()
            for watch in watches:
                for fd_reg in watch.registrations:
                    fd_reg.live = False
                watch.registrations.clear()
                watch.retired = True
            timers = list(self._timers)
            self._timers.clear()
            for timer in timers:
                timer.state = CANCELLED
        for watch in watches:
            self._sync_quietly(watch)
        for timer in timers:
            self._disarm(timer)
        if left.fds or left.timers:
            log.warn(
                "closing libxl's osevent hooks with {fds} fds ({regs} registrations) "
                "and {timers} timers still registered",
                fds=left.fds,
                regs=left.fd_registrations,
                timers=left.timers,
            )
        return left
