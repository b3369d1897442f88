"""
libxl's fd hooks, whatever the event loop: :class:`FDHooks`, the fd half
of :class:`~txlibxl.loop.osevents_core.OSEventsCore`.

The rules it keeps are the "File descriptors" and "Threads" sections of
:mod:`txlibxl.loop.osevents_core`: one :class:`~txlibxl.loop.registrations.WatchedFD`
per libxl fd number watching the OR of its registrations' events, a
private duplicate of libxl's fd, hang-ups reported to every registration
and then paused, deregistration synchronous on the loop's thread, and
hooks from other threads reconciled on the loop's thread with the
record's state as it is then.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Set

from .registrations import (
    HANGUP_BITS,
    READ_BITS,
    WRITE_BITS,
    FDRegistration,
    OSEventsClosed,
    WatchedFD,
    check_events,
    check_int,
    poll_now,
)

if TYPE_CHECKING:  # pragma: no cover
    from txlibxl.interfaces import IOSEventSink

    from .logs import LoopLogger
    from .osevents_core import LoopAdapter

__all__ = ["FDHooks"]


class FDHooks:
    """
    C{fd_register}, C{fd_modify} and C{fd_deregister}, and the loop side
    of fds: a mixin of L{OSEventsCore<txlibxl.loop.osevents_core.OSEventsCore>},
    which sets up the state below.
    """

    _loop: "LoopAdapter"
    _sink: "IOSEventSink"
    _log: "LoopLogger"
    _lock: threading.Lock
    _closed: bool
    _watches: Dict[int, WatchedFD]
    _retiring: Set[WatchedFD]
    _apply: Callable[[bool, Callable[[Any], None], Any], None]

    # -- fd hooks --------------------------------------------------------

    def fd_register(self, fd: int, events: int, token: int) -> FDRegistration:
        """
        See L{IOSEventHooks.fd_register}.

        @raise TypeError, ValueError: bad arguments (nothing changed).
        @raise OSError: C{fd} cannot be duplicated (not open, or no fds
            left) or the loop refuses it; nothing changed.
        @raise OSEventsClosed: after L{close}.
        """
        check_int("fd", fd)
        if fd < 0:
            raise ValueError(f"fd must be a descriptor number, not {fd}")
        check_events(events)
        check_int("token", token)
        on_loop = self._loop.on_loop_thread()
        created = False
        with self._lock:
            if self._closed:
                raise OSEventsClosed("fd_register after close()")
            watch = self._watches.get(fd)
            if watch is None:
                watch = self._loop.new_watch(self, fd, os.dup(fd))
                self._watches[fd] = watch
                created = True
            reg = FDRegistration(self, watch, fd, token, events)
            watch.registrations.append(reg)
            was_paused = watch.paused
            watch.paused = False
        try:
            self._apply(on_loop, self._sync, watch)
        except BaseException:
            with self._lock:
                reg.live = False
                watch.registrations.remove(reg)
                watch.paused = was_paused
                if created:
                    del self._watches[fd]
                    watch.retired = True
            if on_loop or created:  # a new watch the loop never saw
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
        on_loop = self._loop.on_loop_thread()
        with self._lock:
            if self._closed:
                raise OSEventsClosed("fd_modify after close()")
            if not reg.live:
                raise ValueError(f"fd_modify of a deregistered registration {reg!r}")
            watch = reg._watch
            old_events, was_paused = reg.events, watch.paused
            reg.events = events
            watch.paused = False
        try:
            self._apply(on_loop, self._sync, watch)
        except BaseException:
            with self._lock:
                reg.events = old_events
                watch.paused = was_paused
            if on_loop:
                self._sync_quietly(watch)
            raise
        return reg

    def fd_deregister(self, fd: int, registration: FDRegistration) -> None:
        """
        See L{IOSEventHooks.fd_deregister}.  On the loop's thread the watch
        is gone when this returns; elsewhere the registration is dead at
        once and the loop follows on its next turn.  A repeated
        deregistration, or one after L{close}, is logged and ignored.

        @raise TypeError: C{registration} is not one of ours.
        """
        reg = self._own_fd_registration(registration)
        if fd != reg.fd:
            self._log.warn(
                "fd_deregister for fd {fd} with a registration for fd {regfd}; "
                "deregistering the registration",
                fd=fd,
                regfd=reg.fd,
            )
        with self._lock:
            if not reg.live:
                if not self._closed:
                    self._log.warn("fd_deregister of a dead registration {reg!r}", reg=reg)
                return
            reg.live = False
            watch = reg._watch
            watch.registrations.remove(reg)
            if not watch.registrations:
                watch.retired = True
                if self._watches.get(reg.fd) is watch:
                    del self._watches[reg.fd]
            on_loop = self._loop.on_loop_thread()
            if not on_loop and watch.retired:
                self._retiring.add(watch)
        if on_loop:
            self._sync_quietly(watch)
        else:
            self._loop.call_from_thread(self._sync_quietly, watch)

    def _own_fd_registration(self, registration: object) -> FDRegistration:
        if not isinstance(registration, FDRegistration) or registration._owner is not self:
            raise TypeError(f"not an fd registration made by this hooks object: {registration!r}")
        return registration

    # -- the loop side of fds (loop thread only) -------------------------

    def _sync(self, watch: WatchedFD) -> None:
        """
        Make the loop watch what C{watch}'s live registrations ask for;
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
        loop = self._loop
        if want_read != watch._reading:
            if want_read:
                loop.start_reading(watch)
            else:
                loop.stop_reading(watch)
            watch._reading = want_read
        if want_write != watch._writing:
            if want_write:
                loop.start_writing(watch)
            else:
                loop.stop_writing(watch)
            watch._writing = want_write
        if retired:
            dupfd, watch._dupfd = watch._dupfd, -1
            with self._lock:
                self._retiring.discard(watch)
            os.close(dupfd)

    def _sync_quietly(self, watch: WatchedFD) -> None:
        try:
            self._sync(watch)
        except Exception:
            self._log.failure("could not update the {loop} for libxl fd {fd}",
                              loop=self._loop.name, fd=watch.fd)

    def _dispatch(self, watch: WatchedFD, bits: int, revents: int) -> None:
        """
        The loop found C{watch} ready: report C{revents} to every live
        registration asking for any of C{bits}.  Never raises.
        """
        with self._lock:
            regs = tuple(watch.registrations)  # the loop below picks the interested
        sink = self._sink
        for reg in regs:
            # An earlier call may have deregistered or modified this one.
            events = reg.events
            if not (reg.live and events & bits):
                continue
            try:
                sink.occurred_fd(reg.token, reg.fd, events, revents)
            except Exception:
                self._log.failure("occurred_fd raised for libxl fd {fd}", fd=reg.fd)

    def _ready_polled(self, watch: WatchedFD, bits: int, revents: int) -> None:
        """
        For loops that report a hang-up as readiness (asyncio's selectors):
        poll C{watch} once; a hang-up or error without C{POLLIN} is a
        hang-up (L{_hangup}), anything else is readiness (L{_dispatch}).
        """
        observed = watch.poll_now()
        if observed & HANGUP_BITS and not observed & READ_BITS:
            self._hangup(watch, observed)
        else:
            self._dispatch(watch, bits, revents)

    def _hangup(self, watch: WatchedFD, observed: Optional[int] = None) -> None:
        """
        The loop saw a hang-up or error on C{watch} (and may have stopped
        watching it).  Unwatch it; confirm with poll(2) unless C{observed}
        says what the fd shows; report a real hang-up to every live
        registration and pause; otherwise restore the watch.  Never raises.
        """
        try:
            loop = self._loop
            loop.stop_reading(watch)
            loop.stop_writing(watch)
            watch._reading = watch._writing = False
            if watch._dupfd < 0:
                return
            if observed is None:
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
            self._log.failure("handling a hang-up on libxl fd {fd}", fd=watch.fd)
            return
        revents = observed & (HANGUP_BITS | READ_BITS | WRITE_BITS)
        sink = self._sink
        for reg in regs:
            if not reg.live:
                continue
            try:
                sink.occurred_fd(reg.token, reg.fd, reg.events, revents)
            except Exception:
                self._log.failure("occurred_fd raised for libxl fd {fd}", fd=reg.fd)

