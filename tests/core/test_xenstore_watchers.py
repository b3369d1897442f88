"""
xenstore watches on each loop (txlibxl.loop.reactor_xenstore,
txlibxl.loop.asyncio_xenstore), the contract of
txlibxl.loop.xenstore_watches once for both.

The unit tests use a fake connection: a real pipe as its watch pipe,
firings queued by the test, and a switch that makes it "lose" xenstored.
The last test runs the asyncio watcher against a real xenstored (a
simulated host's) through the real libxenstore, and kills it.
"""
from __future__ import annotations

import errno
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Callable, List, Optional, Tuple

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SkipTest, TestCase

from txlibxl._libxl.xenstore import XenstoreConnectionLost, XenstoreError
from txlibxl.loop.asyncio_xenstore import AsyncioXenstoreWatcher
from txlibxl.loop.reactor_xenstore import XenstoreWatcher

from .loop_fixtures import MemoryAsyncioLoop, RecordingLog, open_pipe, run_on_asyncio_loop

INTERVAL = 1.0
PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeConnection:
    """
    What a watcher calls on a XenstoreConnection.  Like libxenstore, a
    byte on the watch pipe means "something is queued"; the firings are
    read with read_watches().
    """

    def __init__(self, case: TestCase) -> None:
        self._r, self._w = open_pipe(case)
        self.queued: List[Tuple[str, str]] = []
        self.watched: List[Tuple[str, str]] = []
        self.checks = 0
        self.lost = False
        self.closed = False
        self.refuse_watches = False

    def fileno(self) -> int:
        return self._r

    def watch(self, path: str, token: str) -> None:
        if self.refuse_watches:
            raise XenstoreError("xs_watch", errno.EACCES)
        self.watched.append((path, token))
        self.fire(path, token)  # xenstored fires every new watch once

    def fire(self, path: str, token: str) -> None:
        if not self.queued:
            os.write(self._w, b"!")
        self.queued.append((path, token))

    def read_watches(self) -> List[Tuple[str, str]]:
        self.checks += 1
        if self.closed:
            raise XenstoreConnectionLost("xs_check_watch", errno.EBADF, "the connection is closed")
        if self.lost:
            raise XenstoreConnectionLost("xs_check_watch", errno.EINVAL)
        fired, self.queued = self.queued, []
        if fired:
            os.read(self._r, 1)
        return fired

    def close(self) -> None:
        self.closed = True


class WatcherContract:
    """
    The watcher's rules on a fake loop.  A fixture provides
    C{make_watcher(connection, interval)}, C{readers()}, C{fire_pipe()},
    C{pending_timers()}, C{advance(seconds)} and
    C{assertLoggedFailures(exception_type, count)}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.conn = FakeConnection(self)
        self.fired: List[Tuple[str, str]] = []
        self.lost: List[XenstoreError] = []
        self.on_fire: Callable[[str, str], None] = lambda path, token: self.fired.append((path, token))
        self.watcher = self.make_watcher(self.conn, INTERVAL)
        self.addCleanup(self.watcher.stop)

    def test_each_firing_reaches_on_fire_in_order_when_the_pipe_is_readable(self) -> None:
        self.watcher.start(["/a", "@introduceDomain"])
        self.assertEqual(self.fired, [])
        self.fire_pipe()
        self.assertEqual(self.fired, [("/a", "/a"), ("@introduceDomain", "@introduceDomain")])
        self.conn.fire("/a/b", "/a")
        self.fire_pipe()
        self.assertEqual(self.fired[2:], [("/a/b", "/a")])
        self.assertTrue(self.watcher.running)

    def test_the_connection_is_checked_every_liveness_interval(self) -> None:
        self.watcher.start(["/a"])
        self.advance(INTERVAL)
        self.assertEqual(self.conn.checks, 1)
        self.assertEqual(self.fired, [("/a", "/a")])  # the check delivers too
        self.advance(INTERVAL)
        self.assertEqual(self.conn.checks, 2)

    def test_a_lost_connection_is_reported_once_and_the_watcher_stops(self) -> None:
        self.watcher.start(["/a"])
        self.conn.lost = True  # libxenstore says nothing on the pipe
        self.advance(INTERVAL)
        self.assertEqual(len(self.lost), 1)
        self.assertIsInstance(self.lost[0], XenstoreConnectionLost)
        self.assertFalse(self.watcher.running)
        self.assertTrue(self.conn.closed)
        self.assertEqual((self.readers(), self.pending_timers()), ([], []))
        self.advance(10 * INTERVAL)
        self.watcher.check()
        self.assertEqual(len(self.lost), 1)

    def test_stop_removes_the_reader_and_the_check_and_closes_the_connection(self) -> None:
        self.watcher.start(["/a"])
        self.assertEqual(len(self.readers()), 1)
        self.watcher.stop()
        self.watcher.stop()
        self.assertEqual((self.readers(), self.pending_timers()), ([], []))
        self.assertTrue(self.conn.closed)
        self.assertFalse(self.watcher.running)
        self.assertEqual(self.lost, [])

    def test_a_watch_that_cannot_be_set_closes_the_connection_and_raises(self) -> None:
        self.conn.refuse_watches = True
        self.assertRaises(XenstoreError, self.watcher.start, ["/a"])
        self.assertTrue(self.conn.closed)
        self.assertEqual((self.readers(), self.pending_timers()), ([], []))

    def test_an_exception_in_on_fire_is_logged_and_the_next_firings_delivered(self) -> None:
        def on_fire(path: str, token: str) -> None:
            self.fired.append((path, token))
            if path == "/a":
                raise ZeroDivisionError("application bug")

        self.on_fire = on_fire
        self.watcher.start(["/a", "/b"])
        self.fire_pipe()
        self.assertEqual(self.fired, [("/a", "/a"), ("/b", "/b")])
        self.assertLoggedFailures(ZeroDivisionError, 1)

    def test_stop_inside_on_fire_delivers_nothing_more(self) -> None:
        def on_fire(path: str, token: str) -> None:
            self.fired.append((path, token))
            self.watcher.stop()

        self.on_fire = on_fire
        self.watcher.start(["/a", "/b"])
        self.fire_pipe()
        self.assertEqual(self.fired, [("/a", "/a")])

    def test_the_liveness_interval_must_be_positive(self) -> None:
        for bad in (0, -1.0):
            self.assertRaises(ValueError, self.make_watcher, FakeConnection(self), bad)


class ReactorWatcherTests(WatcherContract, TestCase):
    """
    XenstoreWatcher on MemoryReactorClock.
    """

    def make_watcher(self, connection: Any, interval: float) -> XenstoreWatcher:
        self.reactor = getattr(self, "reactor", None) or MemoryReactorClock()
        return XenstoreWatcher(
            self.reactor, connection, lambda p, t: self.on_fire(p, t), self.lost.append, interval
        )

    def readers(self) -> List[Any]:
        return list(self.reactor.readers)

    def fire_pipe(self) -> None:
        for reader in list(self.reactor.readers):
            reader.doRead()

    def pending_timers(self) -> List[Any]:
        return self.reactor.getDelayedCalls()

    def advance(self, seconds: float) -> None:
        self.reactor.advance(seconds)

    def assertLoggedFailures(self, exception_type: type, count: int) -> None:
        self.assertEqual(len(self.flushLoggedErrors(exception_type)), count)


class AsyncioWatcherTests(WatcherContract, TestCase):
    """
    AsyncioXenstoreWatcher on a fake asyncio loop.
    """

    def make_watcher(self, connection: Any, interval: float) -> AsyncioXenstoreWatcher:
        self.loop = getattr(self, "loop", None) or MemoryAsyncioLoop()
        self.log = getattr(self, "log", None) or RecordingLog()
        return AsyncioXenstoreWatcher(
            self.loop, connection, lambda p, t: self.on_fire(p, t), self.lost.append, interval,
            log=self.log,
        )

    def readers(self) -> List[Any]:
        return list(self.loop.readers)

    def fire_pipe(self) -> None:
        for callback, args in list(self.loop.readers.values()):
            callback(*args)

    def pending_timers(self) -> List[Any]:
        return self.loop.pending_timers()

    def advance(self, seconds: float) -> None:
        self.loop.advance(seconds)

    def assertLoggedFailures(self, exception_type: type, count: int) -> None:
        self.assertEqual(len([e for e in self.log.failures if isinstance(e, exception_type)]), count)

    def test_the_watch_pipe_is_read_by_the_loop(self) -> None:
        self.watcher.start(["/a"])
        self.assertEqual(self.loop.readers, {self.conn.fileno(): (self.watcher.check, ())})


class AsyncioWatcherOnXenstoredTests(TestCase):
    """
    The asyncio watcher through the real libxenstore, against a simulated
    host's xenstored that is then killed.
    """

    def start_xenstored(self) -> str:
        """Start a simulated host (a separate process); its xenstored's socket."""
        rundir = tempfile.mkdtemp(prefix="txlibxl-aio-")
        self.addCleanup(shutil.rmtree, rundir, True)
        env = dict(os.environ, PYTHONPATH=PROJECT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for name in ("LD_PRELOAD", "XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT"):
            env.pop(name, None)
        self.host = subprocess.Popen(
            [sys.executable, "-m", "txlibxl.sim", "run", "--rundir", rundir],
            cwd=rundir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.addCleanup(self.host.wait)
        self.addCleanup(self.host.kill)
        assert self.host.stdout is not None
        self.addCleanup(self.host.stdout.close)
        if not select.select([self.host.stdout], [], [], 30)[0]:
            self.fail("the simulated host did not get ready within 30 s")
        line = self.host.stdout.readline().decode()
        if not line.startswith("txlibxl-sim ready "):
            self.fail(f"the simulated host did not start: {line!r}")
        with open(line.split(" ", 2)[2].strip()) as f:
            info = json.load(f)
        return str(info["xenstored"])

    def test_a_watch_fires_and_a_killed_xenstored_is_reported_as_lost(self) -> None:
        from .test_binding import native

        native()  # the binding, loaded after the simulator's shim
        from txlibxl._libxl.xenstore import XenstoreConnection

        socket_path = self.start_xenstored()
        previous: Optional[str] = os.environ.get("XENSTORED_PATH")
        os.environ["XENSTORED_PATH"] = socket_path
        try:
            connection = XenstoreConnection.open()
        finally:
            if previous is None:
                del os.environ["XENSTORED_PATH"]
            else:
                os.environ["XENSTORED_PATH"] = previous
        host = self.host

        async def scenario() -> Tuple[List[Tuple[str, str]], List[XenstoreError], bool]:
            import asyncio

            loop = asyncio.get_running_loop()
            fired: List[Tuple[str, str]] = []
            lost = loop.create_future()
            first = loop.create_future()

            def on_fire(path: str, token: str) -> None:
                fired.append((path, token))
                if not first.done():
                    first.set_result(None)

            watcher = AsyncioXenstoreWatcher(
                loop, connection, on_fire, lost.set_result, liveness_interval=0.1, log=RecordingLog()
            )
            watcher.start(["/tool/txlibxl-test"])
            await first
            host.kill()
            error = await lost
            return fired, [error], watcher.running

        try:
            fired, lost, running = run_on_asyncio_loop(scenario, timeout=30.0)
        except XenstoreError as e:  # pragma: no cover - depends on the host
            raise SkipTest(f"no usable xenstored: {e}")
        self.assertEqual(fired, [("/tool/txlibxl-test", "/tool/txlibxl-test")])
        self.assertIsInstance(lost[0], XenstoreConnectionLost)
        self.assertFalse(running)
