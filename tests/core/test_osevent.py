"""
The reactor side of libxl's osevent hooks (txlibxl.loop.reactor_osevents).

Unit tests run on MemoryReactorClock with real pipe fds (the hooks duplicate
libxl's fd, so it must exist).  The integration tests at the end run on the
reactor trial was started with (``--reactor=select|poll|epoll|asyncio``).

The sink is a recording fake of our own IOSEventSink seam.  Every test runs
the hooks through a guard that fails the test if the sink is ever called
while a hook is running (libxl's ``osevent_in_hook`` assertion).
"""
from __future__ import annotations

import os
import select
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from twisted.internet import defer, error as ierror, reactor as global_reactor, threads
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from txlibxl.interfaces import IOSEventHooks, IOSEventSink
from txlibxl.loop.reactor_osevents import ReactorOSEvents
from txlibxl.loop.registrations import (
    FDRegistration,
    OSEventsClosed,
    OSEventStats,
    TimeoutRegistration,
)

POLLIN, POLLOUT, POLLPRI = select.POLLIN, select.POLLOUT, select.POLLPRI
POLLHUP, POLLERR = select.POLLHUP, select.POLLERR


@implementer(IOSEventSink)
class RecordingSink:
    """
    Records every occurred_* call; optional callbacks play libxl's part
    (e.g. deregistering from inside occurred_fd).  C{in_hook} counts, per
    thread, the hooks running (libxl's C{osevent_in_hook} is per ctx, but
    another thread's occurred_* call just waits for libxl's ctx lock).
    """

    def __init__(self) -> None:
        self.fds: List[Tuple[int, int, int, int]] = []
        self.timeouts: List[int] = []
        self._local = threading.local()
        self.reentrant: List[str] = []
        self.on_fd: Optional[Callable[[int, int, int, int], None]] = None
        self.on_timeout: Optional[Callable[[int], None]] = None

    @property
    def in_hook(self) -> int:
        return getattr(self._local, "depth", 0)

    @in_hook.setter
    def in_hook(self, depth: int) -> None:
        self._local.depth = depth

    def occurred_fd(self, token: int, fd: int, events: int, revents: int) -> None:
        if self.in_hook:
            self.reentrant.append(f"occurred_fd({token})")
        self.fds.append((token, fd, events, revents))
        if self.on_fd is not None:
            self.on_fd(token, fd, events, revents)

    def occurred_timeout(self, token: int) -> None:
        if self.in_hook:
            self.reentrant.append(f"occurred_timeout({token})")
        self.timeouts.append(token)
        if self.on_timeout is not None:
            self.on_timeout(token)

    def tokens(self) -> List[int]:
        return [call[0] for call in self.fds]


class GuardedHooks:
    """
    Forwards the six hooks, counting "inside a hook" on the sink the way
    libxl's OSEVENT_HOOK macro sets osevent_in_hook.
    """

    def __init__(self, real: ReactorOSEvents, sink: RecordingSink) -> None:
        self.real = real
        self._sink = sink

    def _guard(self, name: str, *args: Any) -> Any:
        self._sink.in_hook += 1
        try:
            return getattr(self.real, name)(*args)
        finally:
            self._sink.in_hook -= 1

    def fd_register(self, fd: int, events: int, token: int) -> Any:
        return self._guard("fd_register", fd, events, token)

    def fd_modify(self, fd: int, reg: Any, events: int) -> Any:
        return self._guard("fd_modify", fd, reg, events)

    def fd_deregister(self, fd: int, reg: Any) -> None:
        self._guard("fd_deregister", fd, reg)

    def timeout_register(self, deadline: float, token: int) -> Any:
        return self._guard("timeout_register", deadline, token)

    def timeout_modify(self, reg: Any, deadline: Optional[float]) -> Any:
        return self._guard("timeout_modify", reg, deadline)

    def timeout_deregister(self, reg: Any) -> None:
        self._guard("timeout_deregister", reg)


class ThreadedMemoryReactor(MemoryReactorClock):
    """
    MemoryReactorClock plus callFromThread, queueing the calls so a test
    decides when (and in which order) the reactor thread runs them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: List[Tuple[Callable[..., Any], tuple]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.from_threads.append((f, args))

    def run_thread_calls(self, reverse: bool = False) -> None:
        calls, self.from_threads = self.from_threads, []
        for f, args in reversed(calls) if reverse else calls:
            f(*args)


def in_thread(f: Callable[..., Any], *args: Any) -> Any:
    """
    Run C{f(*args)} on a fresh non-reactor thread and return its result.
    """
    result: List[Any] = []

    def run() -> None:
        try:
            result.append((True, f(*args)))
        except BaseException as e:  # handed back to the test thread
            result.append((False, e))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def open_pipe(case: TestCase) -> Tuple[int, int]:
    """
    A pipe whose ends are closed after the test unless the test closed them
    with L{close_fd} first (a blind second close could hit a reused number,
    such as the reactor's own waker).
    """
    r, w = os.pipe()
    owned = case.__dict__.setdefault("_open_fds", set())
    if not owned:
        case.addCleanup(_close_owned, owned)
    owned.update((r, w))
    return r, w


def close_fd(case: TestCase, fd: int) -> None:
    case.__dict__.setdefault("_open_fds", set()).discard(fd)
    os.close(fd)


def _close_owned(owned: set) -> None:
    while owned:
        os.close(owned.pop())


class HooksTestMixin:
    """
    A MemoryReactorClock, a recording sink, guarded hooks and pipes that
    are closed after the test.
    """

    def setUp(self) -> None:
        self.reactor = ThreadedMemoryReactor()
        self.sink = RecordingSink()
        self.real = ReactorOSEvents(self.reactor, self.sink, clock=self.reactor.seconds)
        self.hooks = GuardedHooks(self.real, self.sink)
        self.addCleanup(self.assertNoReentrantCalls)

    def assertNoReentrantCalls(self) -> None:
        self.assertEqual(self.sink.reentrant, [])

    def pipe(self) -> Tuple[int, int]:
        return open_pipe(self)

    def close(self, fd: int) -> None:
        close_fd(self, fd)

    def watch_of(self, reg: FDRegistration) -> Any:
        return reg._watch


class FDRegistrationTests(HooksTestMixin, TestCase):
    """
    fd_register / fd_modify / fd_deregister on MemoryReactorClock.
    """

    def test_provides_IOSEventHooks(self) -> None:
        self.assertTrue(verifyObject(IOSEventHooks, self.real))

    def test_pollin_registration_makes_a_reader(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.assertEqual(self.reactor.readers, {self.watch_of(reg)})
        self.assertEqual(self.reactor.writers, set())

    def test_pollpri_alone_makes_a_reader(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLPRI, 1)
        self.assertEqual(self.reactor.readers, {self.watch_of(reg)})

    def test_pollout_registration_makes_a_writer(self) -> None:
        _, w = self.pipe()
        reg = self.hooks.fd_register(w, POLLOUT, 1)
        self.assertEqual(self.reactor.writers, {self.watch_of(reg)})
        self.assertEqual(self.reactor.readers, set())

    def test_zero_events_keeps_the_registration_but_watches_nothing(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, 0, 1)
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), set()))
        self.assertEqual(self.real.stats(), OSEventStats(fds=1, fd_registrations=1, timers=0))
        self.assertTrue(reg.live)

    def test_one_watch_per_fd_carries_every_registration(self) -> None:
        r, _ = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        b = self.hooks.fd_register(r, POLLIN | POLLPRI, 2)
        self.assertIs(self.watch_of(a), self.watch_of(b))
        self.assertEqual(len(self.reactor.readers), 1)
        self.watch_of(a).doRead()
        self.assertEqual(sorted(self.sink.tokens()), [1, 2])

    def test_interest_is_the_or_of_the_registrations(self) -> None:
        r, _ = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        b = self.hooks.fd_register(r, POLLOUT, 2)
        watch = self.watch_of(a)
        self.assertEqual((self.reactor.readers, self.reactor.writers), ({watch}, {watch}))
        self.hooks.fd_deregister(r, a)
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), {watch}))
        self.hooks.fd_deregister(r, b)

    def test_doRead_reports_pollin_to_read_registrations_only(self) -> None:
        r, _ = self.pipe()
        self.hooks.fd_register(r, POLLIN, 1)
        out = self.hooks.fd_register(r, POLLOUT, 2)
        self.watch_of(out).doRead()
        self.assertEqual(self.sink.fds, [(1, r, POLLIN, POLLIN)])

    def test_doWrite_reports_pollout_to_write_registrations_only(self) -> None:
        r, _ = self.pipe()
        self.hooks.fd_register(r, POLLIN, 1)
        out = self.hooks.fd_register(r, POLLOUT, 2)
        self.watch_of(out).doWrite()
        self.assertEqual(self.sink.fds, [(2, r, POLLOUT, POLLOUT)])

    def test_doRead_and_doWrite_return_None_so_the_reactor_never_disconnects(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN | POLLOUT, 1)
        self.assertIsNone(self.watch_of(reg).doRead())
        self.assertIsNone(self.watch_of(reg).doWrite())

    def test_sink_exception_is_logged_and_the_other_registrations_still_run(self) -> None:
        r, _ = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_register(r, POLLIN, 2)

        def explode(token: int, *rest: int) -> None:
            if token == 1:
                raise ZeroDivisionError("libxl binding failed")

        self.sink.on_fd = explode
        self.assertIsNone(self.watch_of(a).doRead())
        self.assertEqual(self.sink.tokens(), [1, 2])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertIn(self.watch_of(a), self.reactor.readers)

    def test_modify_changes_the_interest(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        watch = self.watch_of(reg)
        self.assertIs(self.hooks.fd_modify(r, reg, POLLOUT), reg)
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), {watch}))
        watch.doWrite()
        self.assertEqual(self.sink.fds, [(1, r, POLLOUT, POLLOUT)])

    def test_modify_to_zero_stops_watching_but_keeps_the_registration(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_modify(r, reg, 0)
        self.assertEqual(self.reactor.readers, set())
        self.assertEqual(self.real.stats().fd_registrations, 1)

    def test_deregister_removes_the_reader_synchronously(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN | POLLOUT, 1)
        self.hooks.fd_deregister(r, reg)
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), set()))
        self.assertFalse(reg.live)
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))

    def test_libxl_fd_is_never_closed(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        watch = self.watch_of(reg)
        watch.connectionLost(Failure(ierror.ConnectionLost()))
        self.hooks.fd_deregister(r, reg)
        self.assertTrue(is_open(r))

    def test_fileno_is_a_private_duplicate_while_registered_and_minus_one_after(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        watch = self.watch_of(reg)
        dup = watch.fileno()
        self.assertNotEqual(dup, r)
        self.assertEqual(os.fstat(dup).st_ino, os.fstat(r).st_ino)
        self.hooks.fd_deregister(r, reg)
        self.assertEqual(watch.fileno(), -1)
        self.assertFalse(is_open(dup))

    def test_deregister_inside_dispatch_silences_a_later_registration(self) -> None:
        r, _ = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        b = self.hooks.fd_register(r, POLLIN, 2)

        def libxl(token: int, *rest: int) -> None:
            if token == 1:
                self.hooks.fd_deregister(r, b)

        self.sink.on_fd = libxl
        self.watch_of(a).doRead()
        self.assertEqual(self.sink.tokens(), [1])
        self.hooks.fd_deregister(r, a)

    def test_fd_number_can_be_registered_again_at_once(self) -> None:
        r, _ = self.pipe()
        old = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_deregister(r, old)
        new = self.hooks.fd_register(r, POLLIN, 2)
        self.assertIsNot(self.watch_of(new), self.watch_of(old))
        self.assertEqual(self.reactor.readers, {self.watch_of(new)})
        self.watch_of(new).doRead()
        self.assertEqual(self.sink.tokens(), [2])

    def test_stale_event_for_a_dropped_watch_reaches_nobody(self) -> None:
        r, _ = self.pipe()
        old = self.hooks.fd_register(r, POLLIN | POLLOUT, 1)
        stale = self.watch_of(old)
        self.hooks.fd_deregister(r, old)
        self.hooks.fd_register(r, POLLIN | POLLOUT, 2)
        stale.doRead()
        stale.doWrite()
        stale.connectionLost(Failure(ierror.ConnectionDone()))
        self.assertEqual(self.sink.fds, [])

    def test_bad_arguments_raise_typed_errors_and_change_nothing(self) -> None:
        r, _ = self.pipe()
        self.assertRaises(TypeError, self.hooks.fd_register, "3", POLLIN, 1)
        self.assertRaises(TypeError, self.hooks.fd_register, r, True, 1)
        self.assertRaises(ValueError, self.hooks.fd_register, -1, POLLIN, 1)
        self.assertRaises(ValueError, self.hooks.fd_register, r, 0x10000, 1)
        self.assertRaises(TypeError, self.hooks.fd_register, r, POLLIN, None)
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.assertRaises(TypeError, self.hooks.fd_modify, r, object(), POLLIN)
        self.assertRaises(ValueError, self.hooks.fd_modify, r + 1, reg, POLLOUT)
        other = ReactorOSEvents(self.reactor, self.sink, clock=self.reactor.seconds)
        self.assertRaises(TypeError, other.fd_deregister, r, reg)
        self.assertEqual(reg.events, POLLIN)
        self.assertEqual(self.real.stats(), OSEventStats(1, 1, 0))

    def test_registering_a_closed_fd_fails_and_changes_nothing(self) -> None:
        r, w = self.pipe()
        self.close(r)
        self.close(w)
        self.assertRaises(OSError, self.hooks.fd_register, r, POLLIN, 1)
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))
        self.assertEqual(self.reactor.readers, set())

    def test_modify_of_a_deregistered_registration_raises(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_deregister(r, reg)
        self.assertRaises(ValueError, self.hooks.fd_modify, r, reg, POLLOUT)

    def test_second_deregister_is_ignored(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_deregister(r, reg)
        self.hooks.fd_deregister(r, reg)
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))

    def test_no_occurred_fd_from_inside_a_hook_even_when_the_fd_is_ready(self) -> None:
        r, w = self.pipe()
        os.write(w, b"x")
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_modify(r, reg, POLLIN | POLLOUT)
        self.assertEqual(self.sink.fds, [])
        self.hooks.fd_deregister(r, reg)


class HangupTests(HooksTestMixin, TestCase):
    """
    POLLHUP/POLLERR: what poll-style reactors turn into connectionLost.
    """

    def hangup(self) -> Tuple[int, FDRegistration, FDRegistration]:
        r, w = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        b = self.hooks.fd_register(r, 0, 2)
        self.close(w)
        # What _disconnectSelectable does for a reader that saw POLLHUP:
        self.reactor.removeReader(self.watch_of(a))
        return r, a, b

    def test_hangup_reaches_every_registration_as_pollhup(self) -> None:
        r, a, b = self.hangup()
        self.watch_of(a).connectionLost(Failure(ierror.ConnectionDone()))
        self.assertEqual(sorted(self.sink.tokens()), [1, 2])
        for token, fd, events, revents in self.sink.fds:
            self.assertTrue(revents & POLLHUP)
            self.assertEqual(fd, r)

    def test_hangup_keeps_the_registrations_for_libxl_to_deregister(self) -> None:
        r, a, b = self.hangup()
        self.watch_of(a).connectionLost(Failure(ierror.ConnectionDone()))
        self.assertTrue(a.live and b.live)
        self.assertEqual(self.real.stats(), OSEventStats(1, 2, 0))
        self.hooks.fd_deregister(r, a)
        self.hooks.fd_deregister(r, b)
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))

    def test_hung_up_fd_is_not_watched_so_the_reactor_cannot_spin(self) -> None:
        r, a, b = self.hangup()
        self.watch_of(a).connectionLost(Failure(ierror.ConnectionDone()))
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), set()))

    def test_half_close_path_is_a_hangup_too_and_drops_the_writer(self) -> None:
        r, a, b = self.hangup()
        self.hooks.fd_modify(r, b, POLLOUT)
        self.watch_of(a).readConnectionLost(Failure(ierror.ConnectionDone()))
        self.assertEqual(sorted(self.sink.tokens()), [1, 2])
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), set()))

    def test_modify_ends_the_hangup_pause(self) -> None:
        r, a, b = self.hangup()
        self.watch_of(a).connectionLost(Failure(ierror.ConnectionDone()))
        self.hooks.fd_modify(r, a, POLLIN)
        self.assertEqual(self.reactor.readers, {self.watch_of(a)})

    def test_new_registration_ends_the_hangup_pause(self) -> None:
        r, a, b = self.hangup()
        self.watch_of(a).connectionLost(Failure(ierror.ConnectionDone()))
        self.hooks.fd_register(r, POLLIN, 3)
        self.assertEqual(self.reactor.readers, {self.watch_of(a)})

    def test_pollerr_is_reported_as_observed(self) -> None:
        r, w = self.pipe()
        reg = self.hooks.fd_register(w, POLLOUT, 1)
        self.close(r)
        self.reactor.removeWriter(self.watch_of(reg))
        self.watch_of(reg).connectionLost(Failure(ierror.ConnectionLost()))
        [(token, fd, events, revents)] = self.sink.fds
        self.assertEqual((token, fd, events), (1, w, POLLOUT))
        self.assertTrue(revents & POLLERR)

    def test_unconfirmed_disconnect_restores_the_watch_silently(self) -> None:
        # A stale HUP for a reused descriptor number, or the reactor's
        # disconnectAll at shutdown: the fd itself is fine.
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN | POLLOUT, 1)
        watch = self.watch_of(reg)
        self.reactor.removeReader(watch)
        self.reactor.removeWriter(watch)
        watch.connectionLost(Failure(ierror.ConnectionLost()))
        self.assertEqual(self.sink.fds, [])
        self.assertEqual((self.reactor.readers, self.reactor.writers), ({watch}, {watch}))


class TimeoutTests(HooksTestMixin, TestCase):
    """
    timeout_register / timeout_modify / timeout_deregister on
    MemoryReactorClock, whose clock is also the hooks' wall clock.
    """

    def setUp(self) -> None:
        super().setUp()
        self.reactor.advance(1_000_000.0)

    def test_timeout_fires_once_the_wall_clock_reaches_the_deadline(self) -> None:
        now = self.reactor.seconds()
        self.hooks.timeout_register(now + 5.0, 7)
        self.reactor.advance(4.9)
        self.assertEqual(self.sink.timeouts, [])
        self.reactor.advance(0.1)
        self.assertEqual(self.sink.timeouts, [7])

    def test_delay_is_deadline_minus_the_injected_wall_clock(self) -> None:
        hooks = ReactorOSEvents(self.reactor, self.sink, clock=lambda: 500.0)
        hooks.timeout_register(503.0, 1)
        [call] = self.reactor.getDelayedCalls()
        self.assertEqual(call.getTime(), self.reactor.seconds() + 3.0)
        hooks.close()

    def test_past_deadline_fires_on_the_next_reactor_turn_not_inside_the_hook(self) -> None:
        self.hooks.timeout_register(self.reactor.seconds() - 60.0, 7)
        self.hooks.timeout_register(0.0, 8)  # abs={0,0}
        self.assertEqual(self.sink.timeouts, [])
        self.reactor.advance(0)
        self.assertEqual(sorted(self.sink.timeouts), [7, 8])

    def test_modify_to_None_fires_as_soon_as_possible(self) -> None:
        reg = self.hooks.timeout_register(self.reactor.seconds() + 3600.0, 7)
        self.assertIs(self.hooks.timeout_modify(reg, None), reg)
        self.assertEqual(self.sink.timeouts, [])
        self.reactor.advance(0)
        self.assertEqual(self.sink.timeouts, [7])

    def test_modify_to_a_deadline_moves_the_timer(self) -> None:
        reg = self.hooks.timeout_register(self.reactor.seconds() + 3600.0, 7)
        self.hooks.timeout_modify(reg, self.reactor.seconds() + 2.0)
        self.reactor.advance(2.0)
        self.assertEqual(self.sink.timeouts, [7])

    def test_occurred_timeout_is_called_exactly_once_per_registration(self) -> None:
        reg = self.hooks.timeout_register(self.reactor.seconds() + 1.0, 7)
        self.hooks.timeout_modify(reg, None)
        self.hooks.timeout_modify(reg, None)
        self.reactor.advance(0)
        self.hooks.timeout_modify(reg, None)
        self.reactor.advance(3600)
        self.assertEqual(self.sink.timeouts, [7])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.real.stats().timers, 0)

    def test_modify_after_the_timer_fired_is_harmless(self) -> None:
        reg = self.hooks.timeout_register(self.reactor.seconds(), 7)
        self.reactor.advance(0)
        self.assertIs(self.hooks.timeout_modify(reg, None), reg)
        self.reactor.advance(0)
        self.assertEqual(self.sink.timeouts, [7])

    def test_modify_racing_the_firing_timer_is_harmless(self) -> None:
        reg = self.hooks.timeout_register(self.reactor.seconds(), 7)
        self.sink.on_timeout = lambda token: self.hooks.timeout_modify(reg, None)
        self.reactor.advance(0)
        self.reactor.advance(0)
        self.assertEqual(self.sink.timeouts, [7])

    def test_deregister_cancels_the_timer(self) -> None:
        reg = self.hooks.timeout_register(self.reactor.seconds() + 1.0, 7)
        self.hooks.timeout_deregister(reg)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.advance(10)
        self.assertEqual(self.sink.timeouts, [])
        self.assertEqual(self.real.stats().timers, 0)

    def test_deregister_after_firing_is_harmless(self) -> None:
        reg = self.hooks.timeout_register(self.reactor.seconds(), 7)
        self.reactor.advance(0)
        self.hooks.timeout_deregister(reg)
        self.assertEqual(self.sink.timeouts, [7])

    def test_bad_timeout_arguments_raise_typed_errors(self) -> None:
        self.assertRaises(TypeError, self.hooks.timeout_register, "soon", 1)
        self.assertRaises(ValueError, self.hooks.timeout_register, float("nan"), 1)
        self.assertRaises(ValueError, self.hooks.timeout_register, float("inf"), 1)
        self.assertRaises(TypeError, self.hooks.timeout_register, 1.0, 1.5)
        self.assertRaises(TypeError, self.hooks.timeout_modify, object(), None)
        self.assertRaises(TypeError, self.hooks.timeout_deregister, None)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_sink_exception_in_occurred_timeout_is_logged(self) -> None:
        self.hooks.timeout_register(0.0, 7)

        def explode(token: int) -> None:
            raise ZeroDivisionError("libxl binding failed")

        self.sink.on_timeout = explode
        self.reactor.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class ThreadTests(HooksTestMixin, TestCase):
    """
    Hooks called on a non-reactor thread: the record exists at once, the
    reactor changes happen on the reactor thread, in whatever order the
    marshalled calls run.
    """

    def test_register_off_thread_returns_the_record_and_watches_on_the_reactor_turn(
        self,
    ) -> None:
        r, _ = self.pipe()
        reg = in_thread(self.hooks.fd_register, r, POLLIN, 1)
        self.assertTrue(reg.live)
        self.assertEqual(self.real.stats(), OSEventStats(1, 1, 0))
        self.assertEqual(self.reactor.readers, set())
        self.reactor.run_thread_calls()
        self.assertEqual(self.reactor.readers, {self.watch_of(reg)})
        self.hooks.fd_deregister(r, reg)

    def test_deregister_marshalled_after_register_wins_in_either_order(self) -> None:
        for reverse in (False, True):
            r, _ = self.pipe()
            reg = in_thread(self.hooks.fd_register, r, POLLIN, 1)
            dup = self.watch_of(reg).fileno()
            in_thread(self.hooks.fd_deregister, r, reg)
            self.reactor.run_thread_calls(reverse=reverse)
            self.assertEqual(self.reactor.readers, set())
            self.assertFalse(is_open(dup))
            self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))

    def test_off_thread_deregister_survives_libxl_closing_and_reusing_the_number(
        self,
    ) -> None:
        r, w = self.pipe()
        old = self.hooks.fd_register(r, POLLIN, 1)
        stale = self.watch_of(old)
        in_thread(self.hooks.fd_deregister, r, old)
        self.close(r)  # what libxl does right after fd_deregister
        r2, w2 = self.pipe()
        self.assertEqual(r2, r)  # the kernel hands the number out again
        new = self.hooks.fd_register(r2, POLLIN, 2)
        self.reactor.run_thread_calls()
        self.assertEqual(self.reactor.readers, {self.watch_of(new)})
        self.assertEqual(stale.fileno(), -1)
        stale.doRead()
        self.watch_of(new).doRead()
        self.assertEqual(self.sink.tokens(), [2])
        self.hooks.fd_deregister(r2, new)

    def test_modify_off_thread_applies_on_the_reactor_turn(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        in_thread(self.hooks.fd_modify, r, reg, POLLOUT)
        self.assertEqual(reg.events, POLLOUT)
        self.reactor.run_thread_calls()
        watch = self.watch_of(reg)
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), {watch}))
        self.hooks.fd_deregister(r, reg)

    def test_timeout_registered_off_thread_is_armed_on_the_reactor_turn(self) -> None:
        reg = in_thread(self.hooks.timeout_register, 0.0, 7)
        self.assertIsInstance(reg, TimeoutRegistration)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.run_thread_calls()
        self.reactor.advance(0)
        self.assertEqual(self.sink.timeouts, [7])

    def test_timeout_deregistered_off_thread_never_fires_in_either_order(self) -> None:
        for reverse in (False, True):
            reg = in_thread(self.hooks.timeout_register, 0.0, 7)
            in_thread(self.hooks.timeout_deregister, reg)
            self.reactor.run_thread_calls(reverse=reverse)
            self.reactor.advance(0)
            self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.sink.timeouts, [])

    def test_asap_modify_off_thread_wins_in_either_order(self) -> None:
        for reverse in (False, True):
            reg = in_thread(self.hooks.timeout_register, self.reactor.seconds() + 3600.0, 7)
            in_thread(self.hooks.timeout_modify, reg, None)
            self.reactor.run_thread_calls(reverse=reverse)
            self.reactor.advance(0)
        self.assertEqual(self.sink.timeouts, [7, 7])


class CloseTests(HooksTestMixin, TestCase):
    """
    close(): nothing left in the reactor, for teardown after libxl_ctx_free.
    """

    def test_close_removes_every_watch_and_timer_and_reports_the_leftovers(self) -> None:
        r, w = self.pipe()
        a = self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_register(w, POLLOUT, 2)
        self.hooks.fd_register(r, 0, 3)
        self.hooks.timeout_register(self.reactor.seconds() + 10, 4)
        dup = self.watch_of(a).fileno()
        self.assertEqual(self.real.close(), OSEventStats(fds=2, fd_registrations=3, timers=1))
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), set()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertFalse(is_open(dup))
        self.assertTrue(is_open(r) and is_open(w))
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))
        self.reactor.advance(20)
        self.assertEqual(self.sink.timeouts, [])

    def test_close_also_drops_watches_retired_off_thread_but_not_yet_reconciled(
        self,
    ) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        in_thread(self.hooks.fd_deregister, r, reg)
        self.assertEqual(self.real.close(), OSEventStats(0, 0, 0))
        self.assertEqual(self.reactor.readers, set())
        self.reactor.run_thread_calls()

    def test_hooks_after_close_raise_and_deregistration_is_a_no_op(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        treg = self.hooks.timeout_register(0.0, 2)
        self.real.close()
        self.assertRaises(OSEventsClosed, self.hooks.fd_register, r, POLLIN, 3)
        self.assertRaises(OSEventsClosed, self.hooks.timeout_register, 0.0, 4)
        self.assertRaises(OSEventsClosed, self.hooks.timeout_modify, treg, None)
        self.hooks.fd_deregister(r, reg)
        self.hooks.timeout_deregister(treg)
        self.assertEqual(self.reactor.readers, set())

    def test_close_off_the_reactor_thread_is_refused(self) -> None:
        self.assertRaises(RuntimeError, in_thread, self.real.close)

    def test_stats_count_fds_registrations_and_timers(self) -> None:
        r, w = self.pipe()
        self.hooks.fd_register(r, POLLIN, 1)
        self.hooks.fd_register(r, POLLPRI, 2)
        self.hooks.fd_register(w, 0, 3)
        self.hooks.timeout_register(self.reactor.seconds() + 1, 4)
        self.assertEqual(self.real.stats(), OSEventStats(fds=2, fd_registrations=3, timers=1))
        self.real.close()


class RealReactorTests(TestCase):
    """
    The rules that need a real reactor, on whichever one trial runs
    (``--reactor=select|poll|epoll|asyncio``).
    """

    timeout = 30

    def setUp(self) -> None:
        self.sink = RecordingSink()
        self.real = ReactorOSEvents(global_reactor, self.sink)
        self.hooks = GuardedHooks(self.real, self.sink)
        self.addCleanup(self.assertEqual, self.sink.reentrant, [])
        self.addCleanup(self.real.close)

    def pipe(self) -> Tuple[int, int]:
        return open_pipe(self)

    def close(self, fd: int) -> None:
        close_fd(self, fd)

    def first_fd_event(self) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()

        def on_fd(token: int, fd: int, events: int, revents: int) -> None:
            self.sink.on_fd = None
            d.callback((token, fd, events, revents))

        self.sink.on_fd = on_fd
        return d

    @defer.inlineCallbacks
    def test_readable_pipe_is_reported_as_pollin(self) -> Any:
        r, w = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 11)
        event = self.first_fd_event()
        os.write(w, b"x")
        got = yield event
        self.assertEqual(got, (11, r, POLLIN, POLLIN))
        self.hooks.fd_deregister(r, reg)

    @defer.inlineCallbacks
    def test_writable_pipe_is_reported_as_pollout(self) -> Any:
        r, w = self.pipe()
        event = self.first_fd_event()
        reg = self.hooks.fd_register(w, POLLOUT, 12)
        got = yield event
        self.assertEqual(got, (12, w, POLLOUT, POLLOUT))
        self.hooks.fd_deregister(w, reg)

    @defer.inlineCallbacks
    def test_hangup_reaches_libxl_and_the_reactor_does_not_spin(self) -> Any:
        r, w = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 13)
        watch = reg._watch
        event = self.first_fd_event()
        self.close(w)
        token, fd, events, revents = yield event
        self.assertEqual((token, fd), (13, r))
        # poll/epoll report the hang-up itself; select/asyncio report the fd
        # readable and libxl's re-poll finds POLLHUP.
        self.assertTrue(revents & (POLLHUP | POLLIN), revents)
        if revents & POLLHUP:
            self.assertNotIn(watch, global_reactor.getReaders())
            # One more reactor turn: no further report while paused.
            yield deferLater(0.05)
            self.assertEqual(len(self.sink.fds), 1)
        self.assertTrue(reg.live)
        self.hooks.fd_deregister(r, reg)
        self.assertNotIn(watch, global_reactor.getReaders())

    @defer.inlineCallbacks
    def test_fd_number_reused_after_deregister_reports_only_the_new_token(self) -> Any:
        r, w = self.pipe()
        os.write(w, b"old")
        old = self.hooks.fd_register(r, POLLIN, 21)

        def libxl(token: int, fd: int, events: int, revents: int) -> None:
            # libxl deregisters, closes, and opens a new fd with the same
            # number, all inside one occurred_fd call.
            if token != 21:
                return
            self.hooks.fd_deregister(fd, old)
            self.close(fd)
            r2, w2 = self.pipe()
            self.assertEqual(r2, fd)
            self.new = (r2, w2, self.hooks.fd_register(r2, POLLIN, 22))

        self.sink.on_fd = libxl
        while not self.sink.fds:
            yield deferLater(0.01)
        self.assertEqual(self.sink.tokens(), [21])
        r2, w2, new = self.new
        event = self.first_fd_event()
        os.write(w2, b"new")
        got = yield event
        self.assertEqual(got, (22, r2, POLLIN, POLLIN))
        self.assertEqual(self.sink.tokens(), [21, 22])
        self.hooks.fd_deregister(r2, new)

    @defer.inlineCallbacks
    def test_timeouts_fire_from_the_reactor(self) -> Any:
        fired: defer.Deferred = defer.Deferred()
        self.sink.on_timeout = lambda token: fired.callback(token) if token == 32 else None
        self.hooks.timeout_register(time.time() - 10, 31)  # in the past
        reg = self.hooks.timeout_register(time.time() + 3600, 32)
        self.hooks.timeout_modify(reg, None)  # ASAP
        self.assertEqual(self.sink.timeouts, [])
        yield fired
        if self.sink.timeouts != [31, 32]:
            yield deferLater(0.01)
        self.assertEqual(sorted(self.sink.timeouts), [31, 32])

    @defer.inlineCallbacks
    def test_hooks_on_a_worker_thread(self) -> Any:
        r, w = self.pipe()
        reg = yield threads.deferToThread(self.hooks.fd_register, r, POLLIN, 41)
        fired: defer.Deferred = defer.Deferred()
        self.sink.on_timeout = fired.callback
        yield threads.deferToThread(self.hooks.timeout_register, 0.0, 42)
        event = self.first_fd_event()
        os.write(w, b"x")
        self.assertEqual((yield event), (41, r, POLLIN, POLLIN))
        self.assertEqual((yield fired), 42)

        def deregister_and_close() -> None:
            self.hooks.fd_deregister(r, reg)
            self.close(r)  # libxl closes right after deregistering

        yield threads.deferToThread(deregister_and_close)
        yield deferLater(0.01)
        self.assertEqual(self.real.stats(), OSEventStats(0, 0, 0))
        self.assertNotIn(reg._watch, global_reactor.getReaders())


def deferLater(seconds: float) -> defer.Deferred:
    from twisted.internet.task import deferLater as _deferLater

    return _deferLater(global_reactor, seconds, lambda: None)
