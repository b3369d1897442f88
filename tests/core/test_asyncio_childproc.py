"""
Reaping libxl's children on an asyncio loop (txlibxl.loop.asyncio_children).

The contract's tests are in ``tests/core/child_contract.py``, shared with
the Twisted reaper; this module runs them on asyncio and adds asyncio's
own (pidfds, no SIGCHLD handler, ``create_subprocess_exec``, the
requirements check).

Unit tests use a fake asyncio loop whose turn polls the pidfds it was
given for real (``MemoryAsyncioLoop.run_ready``); the real-loop tests run
each test on a fresh asyncio loop in a thread of its own (see
``tests/core/loop_fixtures.py``), on the default loop and on a
``SelectSelector`` loop.
"""
from __future__ import annotations

import asyncio
import collections
import errno
import os
import selectors
import signal
import sys
from typing import Any, Callable, List, Tuple

from twisted.trial.unittest import SkipTest, TestCase

from txlibxl.loop import asyncio_children
from txlibxl.loop.asyncio_children import AsyncioChildReaper, PidfdUnavailable

from .child_contract import ChildrenMixin, RealLoopReaperContract, ReaperContract
from .loop_fixtures import MemoryAsyncioLoop, OnOwnAsyncioLoop, RecordingChildSink, RecordingLog

_no_pidfds = asyncio_children.pidfd_unavailable_reason()


class AsyncioReaperMixin(ChildrenMixin):
    """
    The contract's unit fixture on asyncio: a MemoryAsyncioLoop, a
    recording sink and logger.
    """

    reaps_at_registration = False

    def setUp(self) -> None:
        if _no_pidfds:
            raise SkipTest(_no_pidfds)
        ChildrenMixin.setUp(self)
        self.loop = MemoryAsyncioLoop()
        self.sink = RecordingChildSink()
        self.log = RecordingLog()
        self.reaper = AsyncioChildReaper(self.loop, self.sink, log=self.log)
        self.addCleanup(self.reaper.close)

    def pidfds(self) -> List[Tuple[int, int]]:
        """(pid, pidfd) of every child the loop reads a pidfd for."""
        return sorted((args[0].pid, fd) for fd, (_, args) in self.loop.readers.items())

    # -- the contract's fixture --------------------------------------------

    def turn(self) -> None:
        self.loop.run_ready()

    def assertWatched(self, pid: int) -> None:
        self.assertIn(pid, [p for p, _ in self.pidfds()])
        self.assertIn(pid, self.reaper.running_children)

    def assertNotWatched(self, pid: int) -> None:
        self.assertNotIn(pid, [p for p, _ in self.pidfds()])
        self.assertNotIn(pid, self.reaper.running_children)

    def assertIdle(self) -> None:
        self.assertEqual((self.loop.readers, self.loop.timers), ({}, []))

    def run_thread_calls(self) -> None:
        self.loop.run_thread_calls()

    def bad_constructor_calls(self) -> List[Tuple[type, Callable[..., Any], tuple]]:
        return [(TypeError, AsyncioChildReaper, (object(), self.sink))]

    def assertLoggedFailures(self, exception_type: type, count: int) -> None:
        self.assertEqual(len([e for e in self.log.failures if isinstance(e, exception_type)]), count)

    def logged_formats(self) -> List[str]:
        return self.log.formats()


class ReaperUnitTests(AsyncioReaperMixin, ReaperContract, TestCase):
    """
    The reaper on a fake asyncio loop.
    """

    def test_each_child_is_read_through_a_pidfd_closed_once_it_is_reaped(self) -> None:
        pid, w = self.fork(0, hold=True)
        self.reaper.child_forked(pid)
        [(watched, pidfd)] = self.pidfds()
        self.assertEqual(watched, pid)
        self.assertNotEqual(os.readlink(f"/proc/self/fd/{pidfd}").find("pidfd"), -1)
        self.release(w)
        self.wait_until_exited(pid)
        self.turn()
        self.assertEqual(self.pidfds(), [])
        self.assertRaises(OSError, os.fstat, pidfd)

    def test_no_sigchld_handler_is_installed(self) -> None:
        before = signal.getsignal(signal.SIGCHLD)
        pid, _ = self.fork(0)
        self.reaper.child_forked(pid)
        self.wait_until_exited(pid)
        self.turn()
        self.assertIs(signal.getsignal(signal.SIGCHLD), before)
        self.assertEqual(self.sink.reaped, [(pid, 0)])

    def test_the_raw_status_is_rebuilt_from_waitids_siginfo(self) -> None:
        info = collections.namedtuple("info", "si_code si_status")
        rebuild = asyncio_children._status_from_siginfo
        self.assertEqual(rebuild(info(os.CLD_EXITED, 7)), 7 << 8)
        self.assertEqual(rebuild(info(os.CLD_KILLED, signal.SIGKILL)), signal.SIGKILL)
        dumped = rebuild(info(os.CLD_DUMPED, signal.SIGABRT))
        self.assertTrue(os.WIFSIGNALED(dumped) and os.WCOREDUMP(dumped))
        self.assertEqual(os.WTERMSIG(dumped), signal.SIGABRT)

    def test_without_P_PIDFD_the_status_comes_from_waitpid(self) -> None:
        waitid = os.waitid

        def waitid_of_linux_5_3(idtype: int, *args: Any) -> Any:
            if idtype == os.P_PIDFD:
                raise OSError(errno.EINVAL, "Invalid argument")
            return waitid(idtype, *args)

        self.patch(os, "waitid", waitid_of_linux_5_3)
        pid, _ = self.fork(5)
        self.reaper.child_forked(pid)
        self.wait_until_exited(pid)
        self.turn()
        self.assertEqual(self.sink.reaped, [(pid, 5 << 8)])

    def test_without_os_pidfd_open_the_reaper_refuses_with_a_clear_error(self) -> None:
        pidfd_open = os.pidfd_open
        del os.pidfd_open
        self.addCleanup(setattr, os, "pidfd_open", pidfd_open)
        with self.assertRaises(PidfdUnavailable) as raised:
            AsyncioChildReaper(self.loop, self.sink)
        self.assertIn("Python 3.9", str(raised.exception))

    def test_on_a_kernel_without_pidfd_open_the_reaper_refuses_with_a_clear_error(self) -> None:
        def enosys(pid: int, flags: int = 0) -> int:
            raise OSError(errno.ENOSYS, "Function not implemented")

        self.patch(os, "pidfd_open", enosys)
        with self.assertRaises(PidfdUnavailable) as raised:
            AsyncioChildReaper(self.loop, self.sink)
        self.assertIn("Linux 5.3", str(raised.exception))


class RealAsyncioReaperMixin(OnOwnAsyncioLoop, ChildrenMixin):
    """
    The contract's real-loop fixture on asyncio: every coroutine test runs
    on a fresh loop, with a reaper on it closed after.
    """

    def setUp(self) -> None:
        if _no_pidfds:
            raise SkipTest(_no_pidfds)
        ChildrenMixin.setUp(self)

    def loop_set_up(self) -> None:
        self.sink = RecordingChildSink()
        self.reaper = AsyncioChildReaper(self.loop, self.sink, log=RecordingLog())

    async def loop_tear_down(self) -> None:
        self.reaper.close()

    async def running(self) -> None:
        """The reaper needs nothing more than the loop running."""

    def wait_for(self, pid: int) -> "asyncio.Future[int]":
        return self.sink.future_for(pid)

    def in_worker(self, f: Callable[..., Any], *args: Any) -> Any:
        return self.loop.run_in_executor(None, f, *args)

    async def test_children_are_reaped_through_their_pidfd_with_their_status(self) -> None:
        pid, w = self.fork(42, hold=True)
        self.reaper.child_forked(pid)
        done = self.wait_for(pid)
        self.release(w)
        status = await done
        self.assertEqual(os.waitstatus_to_exitcode(status), 42)
        self.assertEqual(self.reaper.running_children, [])

    async def test_create_subprocess_exec_keeps_working_beside_libxl_children(self) -> None:
        pid, w = self.fork(12, hold=True)
        self.reaper.child_forked(pid)
        foreign, _ = self.fork(13)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "raise SystemExit(3)")
        self.assertEqual(await proc.wait(), 3)
        done = self.wait_for(pid)
        self.release(w)
        self.assertEqual((await done), 12 << 8)
        self.wait_until_exited(foreign)
        self.assertTrue(self.is_zombie(foreign))
        self.assertEqual(self.sink.reaped, [(pid, 12 << 8)])


class EpollLoopReaperTests(RealAsyncioReaperMixin, RealLoopReaperContract, TestCase):
    """
    The reaper on asyncio's default loop (epoll).
    """


class SelectLoopReaperTests(RealAsyncioReaperMixin, RealLoopReaperContract, TestCase):
    """
    The reaper on a loop built on select(2).
    """

    selector = selectors.SelectSelector
