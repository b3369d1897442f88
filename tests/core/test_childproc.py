"""
Reaping libxl's children with the reactor (txlibxl.loop.reactor_children).

The children are real forks (``os.fork()`` then ``os._exit(n)``), reported
to the reaper the way the binding's ``fork_replacement`` does.  Unit tests
use MemoryReactorClock with SIGCHLD at its default, so the reaper's
fallback poll does the reaping when the clock advances; the integration
tests at the end run on the reactor trial was started with
(``--reactor=select|poll|epoll|asyncio``), which reaps on SIGCHLD.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, List, Optional, Tuple

from twisted.internet import defer, error as ierror, process, protocol, reactor as global_reactor
from twisted.internet import threads
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from txlibxl.loop.reactor_children import ReactorChildReaper, twisted_reaps_on_sigchld
from txlibxl.interfaces import IChildSink, IChildWatcher

from .test_osevent import ThreadedMemoryReactor, in_thread

INTERVAL = 0.1


@implementer(IChildSink)
class RecordingChildSink:
    """
    Records child_reaped calls; C{waiting} Deferreds fire per pid.
    """

    def __init__(self) -> None:
        self.reaped: List[Tuple[int, int]] = []
        self.waiting: dict = {}
        self.on_reaped: Optional[Callable[[int, int], None]] = None

    def child_reaped(self, pid: int, status: int) -> None:
        self.reaped.append((pid, status))
        if self.on_reaped is not None:
            self.on_reaped(pid, status)
        d = self.waiting.pop(pid, None)
        if d is not None:
            d.callback(status)

    def wait_for(self, pid: int) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.waiting[pid] = d
        return d


class ChildrenMixin:
    """
    Forks children that wait for a byte on a pipe (or exit at once), and
    makes sure every one is gone after the test.
    """

    def fork(self, exit_code: int, hold: bool = False) -> Tuple[int, Optional[int]]:
        """
        Fork a child that exits with C{exit_code}, at once or (C{hold})
        when L{release} is called.

        @return: the pid and the fd that releases it (or None).
        """
        r, w = os.pipe() if hold else (None, None)
        pid = os.fork()
        if pid == 0:  # the child: do nothing but wait and exit
            try:
                if r is not None:
                    os.close(w)  # type: ignore[arg-type]
                    os.read(r, 1)
            finally:
                os._exit(exit_code)
        if r is not None:
            os.close(r)
            self._held.add(w)
        self.addCleanup(self._make_sure_gone, pid)
        return pid, w

    def release(self, w: Optional[int]) -> None:
        """
        Let a held child exit.
        """
        if w not in self._held:
            raise ValueError(f"not the release fd of a held child: {w!r}")
        self._held.discard(w)
        os.close(w)

    def setUp(self) -> None:
        self._held: set = set()
        self.addCleanup(self._release_all)

    def _release_all(self) -> None:
        while self._held:
            os.close(self._held.pop())

    def _make_sure_gone(self, pid: int) -> None:
        try:
            exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return  # already reaped; the number may belong to someone else now
        if exited is None:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

    @staticmethod
    def wait_until_exited(pid: int) -> None:
        """
        Block until C{pid} has exited, without reaping it.
        """
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)

    @staticmethod
    def is_zombie(pid: int) -> bool:
        """
        Whether C{pid} has exited and nobody has reaped it.
        """
        try:
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # reaped already
            return False


class ReaperUnitTests(ChildrenMixin, TestCase):
    """
    The reaper on MemoryReactorClock, reaping through its fallback poll.
    """

    def setUp(self) -> None:
        ChildrenMixin.setUp(self)
        # No reactor is running: make SIGCHLD's default explicit, as before
        # any reactor.run(), and restore whatever was there afterwards.
        self.addCleanup(signal.signal, signal.SIGCHLD, signal.signal(signal.SIGCHLD, signal.SIG_DFL))
        self.reactor = ThreadedMemoryReactor()
        self.sink = RecordingChildSink()
        self.reaper = ReactorChildReaper(self.reactor, self.sink, fallback_interval=INTERVAL)
        self.addCleanup(self.reaper.close)

    def test_provides_IChildWatcher(self) -> None:
        self.assertTrue(verifyObject(IChildWatcher, self.reaper))

    def test_exit_status_is_reported_raw(self) -> None:
        pid, w = self.fork(7, hold=True)
        self.reaper.child_forked(pid)
        self.release(w)
        self.wait_until_exited(pid)
        self.reactor.advance(INTERVAL)
        self.assertEqual(self.sink.reaped, [(pid, 7 << 8)])
        self.assertEqual(os.waitstatus_to_exitcode(self.sink.reaped[0][1]), 7)
        self.assertEqual(self.reaper.running_children, [])

    def test_killed_child_reports_the_signal_status(self) -> None:
        pid, w = self.fork(0, hold=True)
        self.reaper.child_forked(pid)
        os.kill(pid, signal.SIGKILL)
        self.wait_until_exited(pid)
        self.reactor.advance(INTERVAL)
        [(reaped, status)] = self.sink.reaped
        self.assertEqual(reaped, pid)
        self.assertTrue(os.WIFSIGNALED(status))
        self.assertEqual(os.WTERMSIG(status), signal.SIGKILL)

    def test_child_that_exited_before_registration_is_reported_on_a_later_turn(self) -> None:
        pid, _ = self.fork(3)
        self.wait_until_exited(pid)
        self.reaper.child_forked(pid)
        # registerReapProcessHandler found it dead at once; the sink must not
        # be called from inside child_forked (that is inside libxl).
        self.assertEqual(self.sink.reaped, [])
        self.assertFalse(self.is_zombie(pid))
        self.reactor.advance(0)
        self.assertEqual(self.sink.reaped, [(pid, 3 << 8)])

    def test_children_not_given_to_the_reaper_are_never_reaped(self) -> None:
        foreign, _ = self.fork(5)
        ours, w = self.fork(6, hold=True)
        self.reaper.child_forked(ours)
        self.wait_until_exited(foreign)
        self.release(w)
        self.wait_until_exited(ours)
        self.reactor.advance(INTERVAL)
        self.assertEqual(self.sink.reaped, [(ours, 6 << 8)])
        self.assertTrue(self.is_zombie(foreign))
        self.assertNotIn(foreign, process.reapProcessHandlers)

    def test_child_forked_on_another_thread_is_registered_on_the_reactor_turn(self) -> None:
        pid, w = self.fork(4, hold=True)
        in_thread(self.reaper.child_forked, pid)
        self.assertNotIn(pid, process.reapProcessHandlers)
        self.reactor.run_thread_calls()
        self.assertIn(pid, process.reapProcessHandlers)
        self.release(w)
        self.wait_until_exited(pid)
        self.reactor.advance(INTERVAL)
        self.assertEqual(self.sink.reaped, [(pid, 4 << 8)])

    def test_fallback_poll_runs_only_while_libxl_has_children(self) -> None:
        self.assertFalse(twisted_reaps_on_sigchld())
        self.assertFalse(self.reaper.polling)
        pid, w = self.fork(0, hold=True)
        self.reaper.child_forked(pid)
        self.assertTrue(self.reaper.polling)
        self.release(w)
        self.wait_until_exited(pid)
        self.reactor.advance(INTERVAL)
        self.assertFalse(self.reaper.polling)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_close_unregisters_running_children_and_leaves_them_unreaped(self) -> None:
        pid, w = self.fork(9, hold=True)
        self.reaper.child_forked(pid)
        self.assertEqual(self.reaper.close(), [pid])
        self.assertNotIn(pid, process.reapProcessHandlers)
        self.assertFalse(self.reaper.polling)
        self.release(w)
        self.wait_until_exited(pid)
        self.reactor.advance(INTERVAL)
        self.assertTrue(self.is_zombie(pid))
        self.assertEqual(self.sink.reaped, [])

    def test_close_cancels_reports_not_yet_delivered(self) -> None:
        pid, _ = self.fork(1)
        self.wait_until_exited(pid)
        self.reaper.child_forked(pid)
        self.assertEqual(self.reaper.close(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.advance(0)
        self.assertEqual(self.sink.reaped, [])

    def test_child_forked_after_close_is_not_watched(self) -> None:
        self.reaper.close()
        pid, _ = self.fork(0)
        self.reaper.child_forked(pid)
        self.assertNotIn(pid, process.reapProcessHandlers)

    def test_bad_pids_raise_typed_errors(self) -> None:
        self.assertRaises(TypeError, self.reaper.child_forked, "123")
        self.assertRaises(TypeError, self.reaper.child_forked, True)
        self.assertRaises(ValueError, self.reaper.child_forked, 0)
        self.assertRaises(ValueError, self.reaper.child_forked, -1)
        self.assertRaises(ValueError, ReactorChildReaper, self.reactor, self.sink, 0)

    def test_sink_exception_is_logged(self) -> None:
        pid, _ = self.fork(0)
        self.wait_until_exited(pid)

        def explode(pid: int, status: int) -> None:
            raise ZeroDivisionError("libxl binding failed")

        self.sink.on_reaped = explode
        self.reaper.child_forked(pid)
        self.reactor.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_child_reaped_by_someone_else_is_dropped_and_logged(self) -> None:
        events: List[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        pid, w = self.fork(0, hold=True)
        self.reaper.child_forked(pid)
        self.release(w)
        os.waitpid(pid, 0)  # other code steals the status
        self.reactor.advance(INTERVAL)
        self.assertEqual(self.sink.reaped, [])
        self.assertEqual(self.reaper.running_children, [])
        self.assertTrue(
            any("reaped by someone else" in e.get("log_format", "") for e in events)
        )


class RealReactorReaperTests(ChildrenMixin, TestCase):
    """
    The reaper on the reactor trial runs, which reaps on SIGCHLD.
    """

    timeout = 30

    def setUp(self) -> None:
        ChildrenMixin.setUp(self)
        self.sink = RecordingChildSink()
        self.reaper = ReactorChildReaper(global_reactor, self.sink)
        self.addCleanup(self.reaper.close)

    @defer.inlineCallbacks
    def running(self) -> Any:
        """
        Let the reactor start (trial runs a test's body before it does).
        """
        yield deferLater(global_reactor, 0, lambda: None)
        if not twisted_reaps_on_sigchld():
            self.fail("this reactor did not install Twisted's SIGCHLD handling")

    @defer.inlineCallbacks
    def test_children_are_reaped_on_sigchld_with_their_status(self) -> Any:
        yield self.running()
        pid, w = self.fork(42, hold=True)
        self.reaper.child_forked(pid)
        self.assertFalse(self.reaper.polling)
        done = self.sink.wait_for(pid)
        self.release(w)
        status = yield done
        self.assertEqual(os.waitstatus_to_exitcode(status), 42)
        self.assertEqual(self.reaper.running_children, [])

    @defer.inlineCallbacks
    def test_child_that_exited_before_registration_is_reported_later(self) -> Any:
        yield self.running()
        pid, _ = self.fork(8)
        self.wait_until_exited(pid)
        done = self.sink.wait_for(pid)
        self.reaper.child_forked(pid)
        self.assertEqual(self.sink.reaped, [])
        self.assertEqual((yield done), 8 << 8)

    @defer.inlineCallbacks
    def test_child_forked_on_a_worker_thread(self) -> Any:
        yield self.running()
        pid, w = self.fork(11, hold=True)
        done = self.sink.wait_for(pid)
        yield threads.deferToThread(self.reaper.child_forked, pid)
        self.release(w)
        self.assertEqual((yield done), 11 << 8)

    @defer.inlineCallbacks
    def test_spawnProcess_keeps_working_beside_libxl_children(self) -> Any:
        yield self.running()
        pid, w = self.fork(12, hold=True)
        self.reaper.child_forked(pid)
        foreign, _ = self.fork(13)

        class Ended(protocol.ProcessProtocol):
            def __init__(self) -> None:
                self.ended: defer.Deferred = defer.Deferred()

            def processEnded(self, reason: Any) -> None:
                self.ended.callback(reason.value)

        proto = Ended()
        global_reactor.spawnProcess(
            proto, sys.executable, [sys.executable, "-c", "pass"], env=None
        )
        self.assertIsInstance((yield proto.ended), ierror.ProcessDone)
        done = self.sink.wait_for(pid)
        self.release(w)
        self.assertEqual((yield done), 12 << 8)
        self.wait_until_exited(foreign)
        self.assertTrue(self.is_zombie(foreign))
        self.assertEqual(self.sink.reaped, [(pid, 12 << 8)])
