"""
The reactor side of libxl's osevent hooks (txlibxl.loop.reactor_osevents).

The contract's tests are in ``tests/core/osevent_contract.py``, shared
with the asyncio hooks; this module runs them on Twisted and adds the
rules whose trigger only Twisted has (``doRead``, ``connectionLost``).

Unit tests run on MemoryReactorClock with real pipe fds (the hooks duplicate
libxl's fd, so it must exist).  The integration tests at the end run on the
reactor trial was started with (``--reactor=select|poll|epoll|asyncio``).

The sink is a recording fake of our own IOSEventSink seam.  Every test runs
the hooks through a guard that fails the test if the sink is ever called
while a hook is running (libxl's ``osevent_in_hook`` assertion).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Set, Tuple

from twisted.internet import defer, error as ierror, reactor as global_reactor, threads
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from txlibxl.loop.reactor_osevents import ReactorOSEvents
from txlibxl.loop.registrations import FDRegistration

from .loop_fixtures import (
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLPRI,
    GuardedHooks,
    RecordingSink,
    close_fd,
    in_thread,
    is_open,
    open_pipe,
)
from .osevent_contract import (
    CloseContract,
    FDRegistrationContract,
    HangupContract,
    RealLoopContract,
    ThreadContract,
    TimeoutContract,
)

__all__ = [
    "RecordingSink", "GuardedHooks", "ThreadedMemoryReactor", "in_thread", "is_open",
    "open_pipe", "close_fd", "POLLIN", "POLLOUT", "POLLPRI", "POLLHUP", "POLLERR",
]


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


class HooksTestMixin:
    """
    The contract's unit fixture on Twisted: a MemoryReactorClock, a
    recording sink, guarded hooks and pipes that are closed after the test.
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

    # -- the contract's fixture --------------------------------------------

    def make_hooks(self, clock: Optional[Callable[[], float]] = None) -> ReactorOSEvents:
        return ReactorOSEvents(self.reactor, self.sink, clock=clock or self.reactor.seconds)

    def readers(self) -> Set[Any]:
        return set(self.reactor.readers)

    def writers(self) -> Set[Any]:
        return set(self.reactor.writers)

    def fire_read(self, watch: Any) -> None:
        watch.doRead()

    def fire_write(self, watch: Any) -> None:
        watch.doWrite()

    def report_hangup(self, watch: Any) -> None:
        # What _disconnectSelectable does for a reader that saw POLLHUP:
        self.reactor.removeReader(watch)
        watch.connectionLost(Failure(ierror.ConnectionDone()))

    def report_error(self, watch: Any) -> None:
        self.reactor.removeWriter(watch)
        watch.connectionLost(Failure(ierror.ConnectionLost()))

    def now(self) -> float:
        return self.reactor.seconds()

    def advance(self, seconds: float) -> None:
        self.reactor.advance(seconds)

    def pending_timers(self) -> List[Any]:
        return self.reactor.getDelayedCalls()

    def timer_times(self) -> List[float]:
        return [call.getTime() for call in self.reactor.getDelayedCalls()]

    def run_thread_calls(self, reverse: bool = False) -> None:
        self.reactor.run_thread_calls(reverse=reverse)

    def assertLoggedFailures(self, exception_type: type, count: int) -> None:
        self.assertEqual(len(self.flushLoggedErrors(exception_type)), count)


class FDRegistrationTests(HooksTestMixin, FDRegistrationContract, TestCase):
    """
    fd_register / fd_modify / fd_deregister on MemoryReactorClock.
    """

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

    def test_libxl_fd_is_never_closed(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        watch = self.watch_of(reg)
        watch.connectionLost(Failure(ierror.ConnectionLost()))
        self.hooks.fd_deregister(r, reg)
        self.assertTrue(is_open(r))


class HangupTests(HooksTestMixin, HangupContract, TestCase):
    """
    POLLHUP/POLLERR: what poll-style reactors turn into connectionLost.
    """

    def hangup(self) -> Tuple[int, FDRegistration, FDRegistration]:
        r, a, b = super().hangup()
        # What _disconnectSelectable does for a reader that saw POLLHUP:
        self.reactor.removeReader(self.watch_of(a))
        return r, a, b

    def test_half_close_path_is_a_hangup_too_and_drops_the_writer(self) -> None:
        r, a, b = self.hangup()
        self.hooks.fd_modify(r, b, POLLOUT)
        self.watch_of(a).readConnectionLost(Failure(ierror.ConnectionDone()))
        self.assertEqual(sorted(self.sink.tokens()), [1, 2])
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), set()))

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


class TimeoutTests(HooksTestMixin, TimeoutContract, TestCase):
    """
    timeout_register / timeout_modify / timeout_deregister on
    MemoryReactorClock, whose clock is also the hooks' wall clock.
    """


class ThreadTests(HooksTestMixin, ThreadContract, TestCase):
    """
    Hooks called on a non-reactor thread: the record exists at once, the
    reactor changes happen on the reactor thread, in whatever order the
    marshalled calls run.
    """


class CloseTests(HooksTestMixin, CloseContract, TestCase):
    """
    close(): nothing left in the reactor, for teardown after libxl_ctx_free.
    """


class RealReactorTests(RealLoopContract, TestCase):
    """
    The rules that need a real reactor, on whichever one trial runs
    (``--reactor=select|poll|epoll|asyncio``).
    """

    timeout = 30
    #: Only poll and epoll report a hang-up as such; select and asyncio
    #: report it as readable.
    hangups_are_reported = False

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

    def readers(self) -> Set[Any]:
        return set(global_reactor.getReaders())

    def waiter(self) -> Tuple[defer.Deferred, Callable[[Any], None]]:
        d: defer.Deferred = defer.Deferred()
        return d, d.callback

    def sleep(self, seconds: float) -> defer.Deferred:
        return deferLater(seconds)

    def in_worker(self, f: Callable[..., Any], *args: Any) -> defer.Deferred:
        return threads.deferToThread(f, *args)


def deferLater(seconds: float) -> defer.Deferred:
    from twisted.internet.task import deferLater as _deferLater

    return _deferLater(global_reactor, seconds, lambda: None)
