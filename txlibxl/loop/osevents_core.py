"""
libxl's six osevent hooks, whatever the event loop: :class:`OSEventsCore`.

The bookkeeping every loop needs lives here once; each loop supplies a
small :class:`LoopAdapter` (watch a descriptor for reading or writing, arm,
move and cancel a timer, run a call on the loop's thread, tell whether the
caller is on it).  :class:`~txlibxl.loop.reactor_osevents.ReactorOSEvents`
(Twisted) and :class:`~txlibxl.loop.asyncio_osevents.AsyncioOSEvents`
(asyncio) are this class with their adapter.

The contract it keeps (libxl_event.h, and ``libxl-event-contract.md``):

File descriptors
    * One :class:`~txlibxl.loop.registrations.WatchedFD` per libxl fd
      number, carrying every registration libxl made on it.  The loop
      reads it iff the OR of the registrations' events has
      ``POLLIN|POLLPRI`` and writes it iff it has ``POLLOUT``;
      ``events == 0`` keeps the registration but watches nothing.
    * Readiness reaches ``sink.occurred_fd`` for every live registration
      interested in that direction, with ``revents`` ``POLLIN`` or
      ``POLLOUT`` (libxl ignores it and re-polls; over-reporting is
      harmless).  Every exception is logged and swallowed.
    * A hang-up (``POLLHUP``/``POLLERR`` without ``POLLIN``) is confirmed
      with poll(2) and reported with the observed bits to *every* live
      registration (libxl wants hang-ups even where it asked for
      ``POLLIN`` only, or for nothing); then the fd is *paused*, watched
      for nothing so the loop does not spin on a dead fd, until libxl calls
      ``fd_modify`` or ``fd_register`` on it (normally it deregisters).
      An unconfirmed hang-up restores the watch and reports nothing.
    * The loop watches a private duplicate (``os.dup``) of libxl's fd.
      libxl's own fd is never closed; the duplicate is, when the last
      registration on the fd goes.  The duplicate is what makes
      deregistration from another thread safe: libxl closes (and may
      reuse) its fd number as soon as ``fd_deregister`` returns, before
      the loop's thread can drop the watch.  On the loop's thread the
      duplicate is closed inside ``fd_deregister``, so the underlying
      file's lifetime is exactly as libxl expects.
    * ``fd_deregister`` drops the registration at once: on the loop's
      thread the watch is gone before it returns.  A later ``fd_register``
      on the same number gets a fresh watch; events still queued for the
      old watch (or for a dead registration) reach nobody.

Timeouts
    * ``timeout_register(deadline, token)`` arms a loop timer
      ``max(0, deadline - clock())`` seconds from now: deadlines are
      absolute wall-clock seconds, past ones fire on the next loop turn.
    * ``timeout_modify(reg, None)`` means "fire as soon as possible": a
      pending timer is moved to now; one that fired or is firing is left
      alone, and a fired timer is never cancelled.
    * ``occurred_timeout(token)`` is called exactly once per registration,
      unless it was deregistered first (``timeout_deregister``, which libxl
      4.17 never calls, cancels defensively) or :meth:`OSEventsCore.close` ran.

Reentrancy
    No ``occurred_*`` call is ever made from inside a hook: everything is
    reported from a loop callback (a reader, a writer or a timer).

Threads
    Hooks may run on any thread (a blocking libxl call on a worker
    thread).  The registration record and its desired state (events,
    alive, deadline) are updated synchronously under a private lock, so
    the hook's return value is valid at once; changes to the loop (watch
    and unwatch, arm, move and cancel timers, close the duplicate) are
    made on the loop's thread, marshalled with the adapter's
    ``call_from_thread``.  Those marshalled calls carry no state of their
    own: each one reconciles the loop with the record's state *as it is
    when the call runs*.  Hence their order does not matter, and a
    deregistration always wins over a register or modify made before it.
    Between another thread's ``fd_deregister`` and the loop's next turn
    the duplicate keeps the underlying file open (peers see the close one
    turn late), and an ``occurred_*`` call already on its way may still
    reach libxl with the token just deregistered; libxl's hook nexus
    discards such calls.  On the loop's thread no call ever uses a dead
    registration.  The lock is never held while calling the sink
    (libxl_event.h locking rule (a)).

Teardown
    Call :meth:`~OSEventsCore.close` after ``libxl_ctx_free``: it unwatches
    everything, closes every duplicate and cancels every pending timer,
    logging what libxl left behind.  After it, every ``*_register`` and
    ``*_modify`` raises :class:`~txlibxl.loop.registrations.OSEventsClosed`
    and deregistrations are no-ops.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Optional, Protocol, Set

from txlibxl.interfaces import IOSEventSink

from .logs import LoopLogger
from .osevents_fds import FDHooks
from .registrations import (
    CANCELLED,
    FIRED,
    PENDING,
    OSEventsClosed,
    OSEventStats,
    TimeoutRegistration,
    WatchedFD,
    check_deadline,
    check_int,
)


__all__ = ["LoopAdapter", "OSEventsCore"]


class LoopAdapter(Protocol):
    """
    What :class:`OSEventsCore` needs of an event loop.  Only
    C{on_loop_thread} and C{call_from_thread} may be called off the loop's
    thread; the rest are called on it.
    """

    #: How the loop is named in messages ("reactor", "asyncio loop").
    name: str

    def on_loop_thread(self) -> bool:
        """Whether the caller may touch the loop directly."""

    def call_from_thread(self, f: Callable[..., None], *args: Any) -> None:
        """Run C{f(*args)} on the loop's thread, soon; never inline."""

    def new_watch(self, owner: "OSEventsCore", fd: int, dupfd: int) -> WatchedFD:
        """A fresh watch of C{dupfd} for libxl's C{fd} (not watched yet)."""

    def start_reading(self, watch: WatchedFD) -> None:
        """Call C{owner._readable(watch)} (or its equivalent) on readiness."""

    def stop_reading(self, watch: WatchedFD) -> None:
        """Undo L{start_reading}; harmless if not reading."""

    def start_writing(self, watch: WatchedFD) -> None:
        """Call C{owner._writable(watch)} (or its equivalent) on readiness."""

    def stop_writing(self, watch: WatchedFD) -> None:
        """Undo L{start_writing}; harmless if not writing."""

    def call_later(self, delay: float, f: Callable[..., None], *args: Any) -> Any:
        """Arm a timer running C{f(*args)} C{delay} seconds from now."""

    def reschedule(self, call: Any, delay: float, f: Callable[..., None], *args: Any) -> Any:
        """Move a timer that has not run to C{delay} seconds from now."""

    def cancel(self, call: Any) -> None:
        """Cancel a timer; harmless if it ran or was cancelled."""


class OSEventsCore(FDHooks):
    """
    libxl's osevent hooks (L{txlibxl.interfaces.IOSEventHooks}) on the loop
    behind C{loop}, reporting to C{sink}.  The fd hooks come from
    L{FDHooks<txlibxl.loop.osevents_fds.FDHooks>}; the timeout hooks,
    L{stats} and L{close} are here.

    @param loop: the loop's adapter.
    @param sink: where readiness and timer expiry go (the binding's ctx).
    @param clock: the wall clock libxl's absolute deadlines are measured
        against (C{time.time}; tests pass a fake clock).
    @param log: where failures and leftovers are logged.
    """

    def __init__(
        self,
        loop: LoopAdapter,
        sink: IOSEventSink,
        clock: Callable[[], float] = time.time,
        *,
        log: LoopLogger,
    ) -> None:
        self._loop = loop
        self._sink = sink
        self._clock = clock
        self._log = log
        self._lock = threading.Lock()
        self._watches: Dict[int, WatchedFD] = {}
        # Watches dropped by another thread whose loop side has not been
        # reconciled yet (close() must still find them).
        self._retiring: Set[WatchedFD] = set()
        self._timers: Set[TimeoutRegistration] = set()
        self._closed = False

    def stats(self) -> OSEventStats:
        """
        How many fds, fd registrations and pending timers libxl holds.
        """
        with self._lock:
            return self._stats()

    def _stats(self) -> OSEventStats:
        return OSEventStats(
            fds=len(self._watches),
            fd_registrations=sum(len(w.registrations) for w in self._watches.values()),
            timers=len(self._timers),
        )

    def _apply(self, on_loop: bool, f: Callable[[Any], None], arg: Any) -> None:
        if on_loop:
            f(arg)
        else:
            self._loop.call_from_thread(f, arg)

    # -- timeout hooks ---------------------------------------------------

    def timeout_register(self, deadline: float, token: int) -> TimeoutRegistration:
        """
        See L{IOSEventHooks.timeout_register}.

        @raise TypeError, ValueError: bad arguments (nothing changed).
        @raise OSEventsClosed: after L{close}.
        """
        deadline = check_deadline(deadline)
        check_int("token", token)
        on_loop = self._loop.on_loop_thread()
        with self._lock:
            if self._closed:
                raise OSEventsClosed("timeout_register after close()")
            reg = TimeoutRegistration(self, token, deadline)
            self._timers.add(reg)
        try:
            self._apply(on_loop, self._arm, reg)
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
        on_loop = self._loop.on_loop_thread()
        with self._lock:
            if self._closed:
                raise OSEventsClosed("timeout_modify after close()")
            if reg.state != PENDING:
                return reg
            old = reg.asap, reg.deadline
            if deadline is None:
                reg.asap = True
            else:
                reg.asap = False
                reg.deadline = deadline
        try:
            self._apply(on_loop, self._rearm, reg)
        except BaseException:
            with self._lock:
                reg.asap, reg.deadline = old
            raise
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
        self._apply(self._loop.on_loop_thread(), self._disarm, reg)

    def _own_timeout(self, registration: object) -> TimeoutRegistration:
        if not isinstance(registration, TimeoutRegistration) or registration._owner is not self:
            raise TypeError(
                f"not a timeout registration made by this hooks object: {registration!r}"
            )
        return registration

    # -- the loop side of timeouts (loop thread only) --------------------

    def _delay(self, reg: TimeoutRegistration) -> float:
        if reg.asap:
            return 0.0
        return max(0.0, reg.deadline - self._clock())

    def _arm(self, reg: TimeoutRegistration) -> None:
        with self._lock:
            if reg.state != PENDING or reg._call is not None:
                return
            delay = self._delay(reg)
        reg._call = self._loop.call_later(delay, self._fire, reg)

    def _rearm(self, reg: TimeoutRegistration) -> None:
        # reg._call is None once the timer ran (or was disarmed): a modify
        # racing the firing timer is then a no-op.
        call = reg._call
        if call is not None:
            with self._lock:
                delay = self._delay(reg)
            reg._call = self._loop.reschedule(call, delay, self._fire, reg)

    def _disarm(self, reg: TimeoutRegistration) -> None:
        call, reg._call = reg._call, None
        if call is not None:
            self._loop.cancel(call)

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
            self._log.failure("occurred_timeout raised")

    # -- teardown --------------------------------------------------------

    def close(self) -> OSEventStats:
        """
        Stop watching everything: unwatch every fd, close every duplicate,
        cancel every pending timer; later registrations raise
        L{OSEventsClosed}.  Call on the loop's thread, after
        ``libxl_ctx_free`` (which deregisters libxl's fds itself).

        @return: what libxl had left registered (logged as a warning when
            not empty).
        @raise RuntimeError: called off the loop's thread.
        """
        if not self._loop.on_loop_thread():
            raise RuntimeError(
                f"{type(self).__name__}.close() must run on the {self._loop.name} thread"
            )
        with self._lock:
            left = self._stats()
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
            self._log.warn(
                "closing libxl's osevent hooks with {fds} fds ({regs} registrations) "
                "and {timers} timers still registered",
                fds=left.fds,
                regs=left.fd_registrations,
                timers=left.timers,
            )
        return left
