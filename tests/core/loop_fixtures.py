"""
What the loop layer's tests share, whatever the loop: the recording sinks,
the guard that catches ``occurred_*`` calls made from inside a hook,
threads, pipes, a fake asyncio loop, and a way to run a real asyncio loop
under trial.

Running a real asyncio loop under trial
    trial runs every test inside the Twisted reactor it was started with.
    Under ``--reactor=asyncio`` that reactor *is* an asyncio loop, running
    in the main thread, so a second loop cannot run there
    (``run_until_complete`` refuses while another loop runs in the
    thread).  :func:`run_on_asyncio_loop` therefore always runs the test's
    own fresh loop (``asyncio.new_event_loop()``, or a
    ``SelectorEventLoop`` on a given selector) in a thread of its own,
    whichever reactor trial runs, and the test method waits for that
    thread: the test is synchronous as far as trial is concerned, so it
    neither needs nor touches the reactor (a Deferred handed back to the
    reactor would need it to turn several times, which trial's
    distributed workers on the asyncio reactor do not reliably allow
    between tests).  The loop runs in debug mode, so a non-thread-safe
    call from the wrong thread raises, and under ``asyncio.wait_for`` so
    a stuck test fails instead of hanging.
"""
from __future__ import annotations

import asyncio
import functools
import os
import select
import threading
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from txlibxl.interfaces import IChildSink, IOSEventSink

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

    def __init__(self, real: Any, sink: RecordingSink) -> None:
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


@implementer(IChildSink)
class RecordingChildSink:
    """
    Records child_reaped calls; C{waiting} callbacks run per pid.
    """

    def __init__(self) -> None:
        self.reaped: List[Tuple[int, int]] = []
        self.waiting: Dict[int, Callable[[int], None]] = {}
        self.on_reaped: Optional[Callable[[int, int], None]] = None

    def child_reaped(self, pid: int, status: int) -> None:
        self.reaped.append((pid, status))
        if self.on_reaped is not None:
            self.on_reaped(pid, status)
        notify = self.waiting.pop(pid, None)
        if notify is not None:
            notify(status)

    def wait_for(self, pid: int) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.waiting[pid] = d.callback
        return d

    def future_for(self, pid: int) -> "asyncio.Future[int]":
        """A future of C{pid}'s status, on the running asyncio loop."""
        future = asyncio.get_running_loop().create_future()
        self.waiting[pid] = future.set_result
        return future


class RecordingLog:
    """
    A txaio-style logger that records (level, format, kwargs); C{failure}
    also records the exception being handled.
    """

    def __init__(self) -> None:
        self.records: List[Tuple[str, str, Dict[str, Any]]] = []
        self.failures: List[BaseException] = []

    def _record(self, level: str, format: str, kwargs: Dict[str, Any]) -> None:
        format.format(**kwargs)  # a bad format is a bug: fail loudly
        self.records.append((level, format, kwargs))

    def debug(self, format: str, **kwargs: Any) -> None:
        self._record("debug", format, kwargs)

    def info(self, format: str, **kwargs: Any) -> None:
        self._record("info", format, kwargs)

    def warn(self, format: str, **kwargs: Any) -> None:
        self._record("warn", format, kwargs)

    def error(self, format: str, **kwargs: Any) -> None:
        self._record("error", format, kwargs)

    def failure(self, format: str, failure: Any = None, **kwargs: Any) -> None:
        import sys

        self._record("failure", format, kwargs)
        exc = sys.exc_info()[1]
        if exc is not None:
            self.failures.append(exc)

    def formats(self) -> List[str]:
        return [r[1] for r in self.records]


def in_thread(f: Callable[..., Any], *args: Any) -> Any:
    """
    Run C{f(*args)} on a fresh thread (not the loop's) and return its result.
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


class FakeTimer:
    """A timer of L{MemoryAsyncioLoop}: what asyncio's C{TimerHandle} offers."""

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple) -> None:
        self._when = when
        self._callback = callback
        self._args = args
        self._cancelled = False
        self.ran = False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class MemoryAsyncioLoop:
    """
    An asyncio loop that never runs by itself, for unit tests (what
    ``MemoryReactorClock`` is for Twisted): readers and writers are
    recorded, time is a fake monotonic clock moved by L{advance}, and
    C{call_soon_threadsafe} calls are queued until L{run_thread_calls}.
    L{run_ready} polls the recorded readers for real and runs the ready
    ones, like one turn of a real loop.
    """

    def __init__(self, now: float = 7000.0) -> None:
        self._now = now
        self.readers: Dict[int, Tuple[Callable[..., Any], tuple]] = {}
        self.writers: Dict[int, Tuple[Callable[..., Any], tuple]] = {}
        self.timers: List[FakeTimer] = []
        self.from_threads: List[Tuple[Callable[..., Any], tuple]] = []

    def time(self) -> float:
        return self._now

    def is_running(self) -> bool:
        return False

    def add_reader(self, fd: int, callback: Callable[..., Any], *args: Any) -> None:
        os.fstat(fd)  # a real selector refuses a closed fd
        self.readers[fd] = (callback, args)

    def remove_reader(self, fd: int) -> bool:
        return self.readers.pop(fd, None) is not None

    def add_writer(self, fd: int, callback: Callable[..., Any], *args: Any) -> None:
        os.fstat(fd)
        self.writers[fd] = (callback, args)

    def remove_writer(self, fd: int) -> bool:
        return self.writers.pop(fd, None) is not None

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> FakeTimer:
        timer = FakeTimer(when, callback, args)
        self.timers.append(timer)
        return timer

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> FakeTimer:
        return self.call_at(self._now + delay, callback, *args)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self.from_threads.append((callback, args))

    def run_thread_calls(self, reverse: bool = False) -> None:
        calls, self.from_threads = self.from_threads, []
        for f, args in reversed(calls) if reverse else calls:
            f(*args)

    def pending_timers(self) -> List[FakeTimer]:
        return [t for t in self.timers if not (t.ran or t.cancelled())]

    def advance(self, seconds: float) -> None:
        """Move the clock and run every timer that is due, in time order."""
        self._now += seconds
        while True:
            due = sorted((t for t in self.pending_timers() if t.when() <= self._now),
                         key=lambda t: t.when())
            if not due:
                break
            timer = due[0]
            timer.ran = True
            timer._callback(*timer._args)

    def run_ready(self) -> None:
        """One turn: run the readers whose fds poll readable now."""
        poller = select.poll()
        for fd in self.readers:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(0):
            entry = self.readers.get(fd)
            if entry is not None:
                entry[0](*entry[1])


def run_on_asyncio_loop(
    coroutine: Callable[[], Awaitable[Any]],
    selector: Optional[Callable[[], Any]] = None,
    timeout: float = 20.0,
) -> Any:
    """
    Run C{coroutine()} to completion on a fresh asyncio loop in a thread of
    its own (see the module docstring) and return its result, or raise
    what it raised.

    @param selector: makes the loop's selector (C{selectors.SelectSelector});
        C{None} for asyncio's default loop (epoll on Linux).
    @param timeout: seconds the coroutine may take.
    """
    outcome: List[Any] = []

    def run() -> None:
        loop = asyncio.SelectorEventLoop(selector()) if selector else asyncio.new_event_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 60.0  # a shared machine is slow; not a bug
        try:
            outcome.append((True, loop.run_until_complete(asyncio.wait_for(coroutine(), timeout))))
        except BaseException as e:  # handed back to the test's thread
            outcome.append((False, e))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    thread = threading.Thread(target=run, name="asyncio-test-loop", daemon=True)
    thread.start()
    thread.join(timeout + 10.0)
    if not outcome:
        raise AssertionError(f"the asyncio loop did not finish within {timeout + 10.0} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class OnOwnAsyncioLoop:
    """
    Runs every coroutine C{test_*} method of a test case on a fresh asyncio
    loop in a thread of its own (L{run_on_asyncio_loop}), on the class's
    C{selector}, between L{loop_set_up} and L{loop_tear_down}, which run on
    that loop too.  C{self.loop} is the loop.
    """

    selector: Optional[Callable[[], Any]] = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for name in dir(cls):
            if not name.startswith("test_"):
                continue
            test = getattr(cls, name)
            if asyncio.iscoroutinefunction(test):
                setattr(cls, name, _on_own_loop(test))

    def loop_set_up(self) -> None:
        """Set up, on the loop, before the test."""

    async def loop_tear_down(self) -> None:
        """Tear down, on the loop, after the test (even a failed one)."""


def _on_own_loop(test: Callable[..., Awaitable[Any]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(self: OnOwnAsyncioLoop) -> None:
        async def body() -> None:
            self.loop = asyncio.get_running_loop()
            self.loop_set_up()
            try:
                await test(self)
            finally:
                await self.loop_tear_down()
                await self.loop.shutdown_default_executor()

        run_on_asyncio_loop(body, self.selector)

    return run

