"""
libxl's osevent hooks on an asyncio loop (txlibxl.loop.asyncio_osevents).

The contract's tests are in ``tests/core/osevent_contract.py``, shared
with the Twisted hooks; this module runs them on asyncio and adds the
rules whose trigger only asyncio has (its reader and writer callbacks,
hang-ups reported as readiness).

Unit tests run on a fake asyncio loop (``MemoryAsyncioLoop``) with real
pipe fds.  The real-loop tests run each test on a fresh asyncio loop in a
thread of its own (``run_on_asyncio_loop``: trial runs inside a Twisted
reactor, which under ``--reactor=asyncio`` is itself an asyncio loop in
the main thread), once on asyncio's default loop (epoll) and once on a
``SelectSelector`` loop.  Nothing here needs a Twisted reactor: the last
test runs the hooks and the child reaper in a process that cannot import
Twisted at all.
"""
from __future__ import annotations

import asyncio
import os
import selectors
import subprocess
import sys
import textwrap
from typing import Any, Callable, List, Optional, Set, Tuple

from twisted.trial.unittest import TestCase

from txlibxl.loop.asyncio_osevents import AsyncioFDWatch, AsyncioOSEvents, LoopThread
from txlibxl.loop.logs import StdlibLogger
from txlibxl.loop.registrations import FDRegistration, OSEventStats

from .loop_fixtures import (
    POLLHUP,
    POLLIN,
    POLLOUT,
    GuardedHooks,
    MemoryAsyncioLoop,
    OnOwnAsyncioLoop,
    RecordingLog,
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

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class AsyncioHooksTestMixin:
    """
    The contract's unit fixture on asyncio: a MemoryAsyncioLoop whose clock
    is also the hooks' wall clock, a recording sink and logger, guarded
    hooks and pipes that are closed after the test.
    """

    def setUp(self) -> None:
        self.loop = MemoryAsyncioLoop()
        self.sink = RecordingSink()
        self.log = RecordingLog()
        self.real = AsyncioOSEvents(self.loop, self.sink, clock=self.loop.time, log=self.log)
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

    def make_hooks(self, clock: Optional[Callable[[], float]] = None) -> AsyncioOSEvents:
        return AsyncioOSEvents(self.loop, self.sink, clock=clock or self.loop.time, log=self.log)

    def _watches(self, table: dict, method: str) -> Set[Any]:
        found = set()
        for fd, (callback, args) in table.items():
            watch = callback.__self__
            self.assertEqual((fd, callback, args), (watch.fileno(), getattr(watch, method), ()))
            found.add(watch)
        return found

    def readers(self) -> Set[Any]:
        return self._watches(self.loop.readers, "on_readable")

    def writers(self) -> Set[Any]:
        return self._watches(self.loop.writers, "on_writable")

    def fire_read(self, watch: Any) -> None:
        watch.on_readable()

    def fire_write(self, watch: Any) -> None:
        watch.on_writable()

    def report_hangup(self, watch: Any) -> None:
        # asyncio's selectors report a hang-up as readable.
        watch.on_readable()

    def report_error(self, watch: Any) -> None:
        # ... and an error as writable (and readable).
        watch.on_writable()

    def now(self) -> float:
        return self.loop.time()

    def advance(self, seconds: float) -> None:
        self.loop.advance(seconds)

    def pending_timers(self) -> List[Any]:
        return self.loop.pending_timers()

    def timer_times(self) -> List[float]:
        return [t.when() for t in self.loop.pending_timers()]

    def run_thread_calls(self, reverse: bool = False) -> None:
        self.loop.run_thread_calls(reverse=reverse)

    def assertLoggedFailures(self, exception_type: type, count: int) -> None:
        matching = [e for e in self.log.failures if isinstance(e, exception_type)]
        self.assertEqual(len(matching), count, self.log.records)
        self.log.failures = [e for e in self.log.failures if not isinstance(e, exception_type)]


class FDRegistrationTests(AsyncioHooksTestMixin, FDRegistrationContract, TestCase):
    """
    fd_register / fd_modify / fd_deregister on a fake asyncio loop.
    """

    def test_the_loop_watches_the_duplicate_with_the_watch_callbacks(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN | POLLOUT, 1)
        watch = self.watch_of(reg)
        self.assertIsInstance(watch, AsyncioFDWatch)
        self.assertEqual(self.loop.readers, {watch.fileno(): (watch.on_readable, ())})
        self.assertEqual(self.loop.writers, {watch.fileno(): (watch.on_writable, ())})

    def test_on_readable_reports_pollin_to_read_registrations_only(self) -> None:
        r, _ = self.pipe()
        self.hooks.fd_register(r, POLLIN, 1)
        out = self.hooks.fd_register(r, POLLOUT, 2)
        self.watch_of(out).on_readable()
        self.assertEqual(self.sink.fds, [(1, r, POLLIN, POLLIN)])

    def test_on_writable_reports_pollout_to_write_registrations_only(self) -> None:
        r, _ = self.pipe()
        self.hooks.fd_register(r, POLLIN, 1)
        out = self.hooks.fd_register(r, POLLOUT, 2)
        self.watch_of(out).on_writable()
        self.assertEqual(self.sink.fds, [(2, r, POLLOUT, POLLOUT)])

    def test_libxl_fd_is_never_closed(self) -> None:
        r, w = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.close(w)
        self.watch_of(reg).on_readable()  # a hang-up
        self.hooks.fd_deregister(r, reg)
        self.assertTrue(is_open(r))

    def test_a_loop_that_is_not_an_asyncio_selector_loop_is_refused(self) -> None:
        self.assertRaises(TypeError, AsyncioOSEvents, object(), self.sink)

    def test_without_a_logger_the_standard_library_gets_the_messages(self) -> None:
        hooks = AsyncioOSEvents(self.loop, self.sink)
        self.assertIsInstance(hooks._log, StdlibLogger)
        self.assertEqual(hooks._log.logger.name, "txlibxl.loop.asyncio_osevents")
        r, _ = self.pipe()
        reg = hooks.fd_register(r, POLLIN, 1)
        self.sink.on_fd = lambda *a: 1 / 0
        with self.assertLogs("txlibxl.loop.asyncio_osevents", "ERROR") as logged:
            self.watch_of(reg).on_readable()
        self.assertIn("occurred_fd raised for libxl fd", logged.output[0])
        self.assertIn("ZeroDivisionError", logged.output[0])
        hooks.close()


class HangupTests(AsyncioHooksTestMixin, HangupContract, TestCase):
    """
    POLLHUP/POLLERR, which asyncio's selectors report as readiness: every
    reader and writer callback polls the fd once to tell them apart.
    """

    def test_hangup_seen_by_the_writer_is_a_hangup_too_and_drops_the_reader(self) -> None:
        r, a, b = self.hangup()
        self.hooks.fd_modify(r, b, POLLOUT)
        self.watch_of(a).on_writable()  # epoll wakes the writer on POLLHUP too
        self.assertEqual(sorted(self.sink.tokens()), [1, 2])
        self.assertEqual((self.loop.readers, self.loop.writers), ({}, {}))

    def test_hangup_with_data_still_to_read_is_readiness_until_the_data_is_gone(self) -> None:
        r, w = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        watch = self.watch_of(reg)
        os.write(w, b"last words")
        self.close(w)
        watch.on_readable()
        self.assertEqual(self.sink.fds, [(1, r, POLLIN, POLLIN)])
        self.assertEqual(self.readers(), {watch})
        os.read(r, 100)  # libxl reads what is left
        watch.on_readable()
        self.assertEqual(self.sink.fds[1:], [(1, r, POLLIN, POLLHUP)])
        self.assertEqual(self.readers(), set())

    def test_readiness_without_a_hangup_is_reported_as_readiness(self) -> None:
        r, _ = self.pipe()
        reg = self.hooks.fd_register(r, POLLIN, 1)
        self.watch_of(reg).on_readable()  # spurious: nothing to read, no hang-up
        self.assertEqual(self.sink.fds, [(1, r, POLLIN, POLLIN)])
        self.assertEqual(self.readers(), {self.watch_of(reg)})


class TimeoutTests(AsyncioHooksTestMixin, TimeoutContract, TestCase):
    """
    timeout_register / timeout_modify / timeout_deregister with
    ``loop.call_at`` on the fake loop's monotonic clock.
    """

    def test_a_deadline_is_armed_on_the_loop_clock_not_the_wall_clock(self) -> None:
        wall = [1_700_000_000.0]
        hooks = self.make_hooks(clock=lambda: wall[0])
        hooks.timeout_register(wall[0] + 30.0, 1)
        self.assertEqual(self.timer_times(), [self.now() + 30.0])
        wall[0] += 3600.0  # the wall clock jumps; the armed timer does not move
        self.assertEqual(self.timer_times(), [self.now() + 30.0])
        hooks.close()

    def test_asap_replaces_the_pending_timer_with_one_for_now(self) -> None:
        reg = self.hooks.timeout_register(self.now() + 3600.0, 7)
        [first] = self.pending_timers()
        self.hooks.timeout_modify(reg, None)
        self.assertTrue(first.cancelled())
        self.assertEqual(self.timer_times(), [self.now()])


class ThreadTests(AsyncioHooksTestMixin, ThreadContract, TestCase):
    """
    Hooks called on another thread: the record exists at once, the loop
    changes happen on the loop's thread through call_soon_threadsafe.
    """

    def test_before_the_loop_runs_the_thread_that_made_the_hooks_is_the_loops(self) -> None:
        thread = LoopThread(self.loop)
        self.assertTrue(thread.on_loop_thread())
        self.assertFalse(in_thread(thread.on_loop_thread))

    def test_while_the_loop_runs_only_its_own_thread_is_the_loops(self) -> None:
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        thread = LoopThread(loop)

        async def check() -> Tuple[bool, bool, bool]:
            elsewhere = await loop.run_in_executor(None, thread.on_loop_thread)
            await loop.shutdown_default_executor()
            return thread.on_loop_thread(), elsewhere, in_thread(thread.on_loop_thread)

        # The loop runs on a thread of its own; the test thread made the
        # LoopThread but is not the loop's while the loop runs elsewhere.
        seen = in_thread(loop.run_until_complete, check())
        self.assertEqual(seen, (True, False, False))
        self.assertTrue(thread.on_loop_thread())  # stopped: the maker's again


class CloseTests(AsyncioHooksTestMixin, CloseContract, TestCase):
    """
    close(): nothing left in the loop, for teardown after libxl_ctx_free.
    """


class RealAsyncioLoopMixin(OnOwnAsyncioLoop):
    """
    The contract's real-loop fixture on asyncio: every coroutine test runs
    on a fresh loop, with the hooks set up on it and closed after.
    """

    hangups_are_reported = True

    def loop_set_up(self) -> None:
        self.sink = RecordingSink()
        self.real = AsyncioOSEvents(self.loop, self.sink, log=RecordingLog())
        self.hooks = GuardedHooks(self.real, self.sink)

    async def loop_tear_down(self) -> None:
        self.real.close()
        self.assertEqual(self.sink.reentrant, [])

    def pipe(self) -> Tuple[int, int]:
        return open_pipe(self)

    def close(self, fd: int) -> None:
        close_fd(self, fd)

    def readers(self) -> Set[Any]:
        # The loop's own table (CPython's selector loop keeps (reader,
        # writer) handles as each selector key's data).
        found = set()
        for key in self.loop._selector.get_map().values():
            reader = key.data[0]
            if key.events & selectors.EVENT_READ and reader is not None and not reader.cancelled():
                found.add(getattr(reader._callback, "__self__", None))
        return found

    def waiter(self) -> Tuple["asyncio.Future[Any]", Callable[[Any], None]]:
        future = self.loop.create_future()
        return future, future.set_result

    def sleep(self, seconds: float) -> Any:
        return asyncio.sleep(seconds)

    def in_worker(self, f: Callable[..., Any], *args: Any) -> Any:
        return self.loop.run_in_executor(None, f, *args)

    async def test_the_loop_uses_the_selector_it_was_made_with(self) -> None:
        expected = self.selector or selectors.DefaultSelector
        self.assertIsInstance(self.loop._selector, expected)


class EpollLoopTests(RealAsyncioLoopMixin, RealLoopContract, TestCase):
    """
    The rules that need a real loop, on asyncio's default loop (epoll).
    """


class SelectLoopTests(RealAsyncioLoopMixin, RealLoopContract, TestCase):
    """
    The same on a loop built on select(2) (``selectors.SelectSelector``).
    """

    selector = selectors.SelectSelector


class WithoutTwistedTests(TestCase):
    """
    The asyncio loop layer in a process where Twisted cannot even be
    imported.
    """

    def test_hooks_and_reaper_work_in_a_process_that_cannot_import_twisted(self) -> None:
        code = textwrap.dedent(
            """
            import asyncio, os, select, sys, time

            class NoTwisted:
                def find_spec(self, name, path=None, target=None):
                    if name == "twisted" or name.startswith("twisted."):
                        raise ImportError("no Twisted in this process")

            sys.meta_path.insert(0, NoTwisted())
            from txlibxl.loop.asyncio_children import AsyncioChildReaper
            from txlibxl.loop.asyncio_osevents import AsyncioOSEvents
            from txlibxl.loop.asyncio_xenstore import AsyncioXenstoreWatcher

            class Sink:
                def __init__(self):
                    self.seen = []
                    self.done = asyncio.get_running_loop().create_future()
                def occurred_fd(self, token, fd, events, revents):
                    os.read(fd, 1)
                    self.seen.append(("fd", token, revents))
                def occurred_timeout(self, token):
                    self.seen.append(("timeout", token))
                def child_reaped(self, pid, status):
                    self.seen.append(("child", os.waitstatus_to_exitcode(status)))
                    self.done.set_result(None)

            async def main():
                loop = asyncio.get_running_loop()
                sink = Sink()
                hooks = AsyncioOSEvents(loop, sink)
                reaper = AsyncioChildReaper(loop, sink)
                r, w = os.pipe()
                reg = hooks.fd_register(r, select.POLLIN, 1)
                os.write(w, b"x")
                await asyncio.sleep(0.05)
                hooks.fd_deregister(r, reg)
                hooks.timeout_register(time.time() + 0.05, 2)
                await asyncio.sleep(0.1)
                pid = os.fork()
                if pid == 0:
                    os._exit(9)
                reaper.child_forked(pid)
                await sink.done
                print(sink.seen, hooks.close(), reaper.close())
                print(sorted(m for m in sys.modules if m.split(".")[0] == "twisted"))

            asyncio.run(main())
            """
        )
        env = dict(os.environ, PYTHONPATH=PROJECT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(
            out.stdout.splitlines(),
            [f"[('fd', 1, {POLLIN}), ('timeout', 2), ('child', 9)] {OSEventStats(0, 0, 0)!r} []",
             "[]"],
        )
