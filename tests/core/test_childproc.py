"""
Reaping libxl's children with the reactor (txlibxl.loop.reactor_children).

The contract's tests are in ``tests/core/child_contract.py``, shared with
the asyncio reaper; this module runs them on Twisted and adds Twisted's
own (the fallback poll, ``spawnProcess``, reaping on SIGCHLD).

Unit tests use MemoryReactorClock with SIGCHLD at its default, so the
reaper's fallback poll does the reaping when the clock advances; the
integration tests at the end run on the reactor trial was started with
(``--reactor=select|poll|epoll|asyncio``), which reaps on SIGCHLD.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, List, Tuple

from twisted.internet import defer, error as ierror, process, protocol, reactor as global_reactor
from twisted.internet import threads
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from txlibxl.loop.reactor_children import ReactorChildReaper, twisted_reaps_on_sigchld

from .child_contract import ChildrenMixin, RealLoopReaperContract, ReaperContract
from .loop_fixtures import RecordingChildSink
from .test_osevent import ThreadedMemoryReactor

INTERVAL = 0.1


class ReaperUnitTests(ChildrenMixin, ReaperContract, TestCase):
    """
    The reaper on MemoryReactorClock, reaping through its fallback poll.
    """

    reaps_at_registration = True

    def setUp(self) -> None:
        ChildrenMixin.setUp(self)
        # No reactor is running: make SIGCHLD's default explicit, as before
        # any reactor.run(), and restore whatever was there afterwards.
        self.addCleanup(signal.signal, signal.SIGCHLD, signal.signal(signal.SIGCHLD, signal.SIG_DFL))
        self.reactor = ThreadedMemoryReactor()
        self.sink = RecordingChildSink()
        self.reaper = ReactorChildReaper(self.reactor, self.sink, fallback_interval=INTERVAL)
        self.addCleanup(self.reaper.close)
        self.events: List[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    # -- the contract's fixture --------------------------------------------

    def turn(self) -> None:
        self.reactor.advance(INTERVAL)

    def assertWatched(self, pid: int) -> None:
        self.assertIn(pid, process.reapProcessHandlers)

    def assertNotWatched(self, pid: int) -> None:
        self.assertNotIn(pid, process.reapProcessHandlers)

    def assertIdle(self) -> None:
        self.assertFalse(self.reaper.polling)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def run_thread_calls(self) -> None:
        self.reactor.run_thread_calls()

    def bad_constructor_calls(self) -> List[Tuple[type, Callable[..., Any], tuple]]:
        return [(ValueError, ReactorChildReaper, (self.reactor, self.sink, 0))]

    def assertLoggedFailures(self, exception_type: type, count: int) -> None:
        self.assertEqual(len(self.flushLoggedErrors(exception_type)), count)

    def logged_formats(self) -> List[str]:
        return [e.get("log_format", "") for e in self.events]

    # -- Twisted's own -----------------------------------------------------

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


class RealReactorReaperTests(ChildrenMixin, RealLoopReaperContract, TestCase):
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

    def wait_for(self, pid: int) -> defer.Deferred:
        return self.sink.wait_for(pid)

    def in_worker(self, f: Callable[..., Any], *args: Any) -> defer.Deferred:
        return threads.deferToThread(f, *args)

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
