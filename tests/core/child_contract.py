"""
Reaping libxl's children (``libxl_sigchld_owner_mainloop``) as tests, once
for every loop.

The children are real forks (``os.fork()`` then ``os._exit(n)``), reported
to the reaper the way the binding's ``fork_replacement`` does.  A loop's
test module combines these mixins with a fixture mixin;
``tests/core/test_childproc.py`` (Twisted) and
``tests/core/test_asyncio_childproc.py`` (asyncio) do.  "Reactor" in a
test's name means the event loop, whichever it is.

What a unit fixture provides (the loop is a fake driven by the test; the
test thread counts as the loop's thread): ``self.reaper``, ``self.sink``
(a ``RecordingChildSink``), and

* ``turn()``: let the loop reap what has exited and deliver the reports;
* ``assertWatched(pid)``, ``assertNotWatched(pid)``: whether the loop
  reaps C{pid} for the reaper;
* ``assertIdle()``: the loop holds nothing for the reaper;
* ``reaps_at_registration``: whether a child that already exited is
  reaped when it is registered (Twisted's ``registerReapProcessHandler``
  waits at once) or on the next turn (a pidfd is readable at once);
* ``run_thread_calls()``, ``bad_constructor_calls()``,
  ``assertLoggedFailures(exception_type, count)``, ``logged_formats()``.

What a real-loop fixture provides: ``self.reaper``, ``self.sink``, and
awaitables ``running()`` (the loop is up and reaping), ``wait_for(pid)``
(the status reported for C{pid}) and ``in_worker(f, *args)``.
"""
from __future__ import annotations

import os
import signal
from typing import Optional, Tuple

from zope.interface.verify import verifyObject

from txlibxl.interfaces import IChildWatcher

from .loop_fixtures import in_thread


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
        os.close(w)  # type: ignore[arg-type]

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


class ReaperContract:
    """
    The reaper's rules on a fake loop.
    """

    def test_provides_IChildWatcher(self) -> None:
        self.assertTrue(verifyObject(IChildWatcher, self.reaper))

    def test_exit_status_is_reported_raw(self) -> None:
        pid, w = self.fork(7, hold=True)
        self.reaper.child_forked(pid)
        self.release(w)
        self.wait_until_exited(pid)
        self.turn()
        self.assertEqual(self.sink.reaped, [(pid, 7 << 8)])
        self.assertEqual(os.waitstatus_to_exitcode(self.sink.reaped[0][1]), 7)
        self.assertEqual(self.reaper.running_children, [])

    def test_killed_child_reports_the_signal_status(self) -> None:
        pid, w = self.fork(0, hold=True)
        self.reaper.child_forked(pid)
        os.kill(pid, signal.SIGKILL)
        self.wait_until_exited(pid)
        self.turn()
        [(reaped, status)] = self.sink.reaped
        self.assertEqual(reaped, pid)
        self.assertTrue(os.WIFSIGNALED(status))
        self.assertEqual(os.WTERMSIG(status), signal.SIGKILL)

    def test_child_that_exited_before_registration_is_reported_on_a_later_turn(self) -> None:
        pid, _ = self.fork(3)
        self.wait_until_exited(pid)
        self.reaper.child_forked(pid)
        # The sink must not be called from inside child_forked (that is
        # inside libxl), whenever the loop reaps the child.
        self.assertEqual(self.sink.reaped, [])
        self.assertEqual(self.is_zombie(pid), not self.reaps_at_registration)
        self.turn()
        self.assertEqual(self.sink.reaped, [(pid, 3 << 8)])
        self.assertFalse(self.is_zombie(pid))

    def test_children_not_given_to_the_reaper_are_never_reaped(self) -> None:
        foreign, _ = self.fork(5)
        ours, w = self.fork(6, hold=True)
        self.reaper.child_forked(ours)
        self.wait_until_exited(foreign)
        self.release(w)
        self.wait_until_exited(ours)
        self.turn()
        self.assertEqual(self.sink.reaped, [(ours, 6 << 8)])
        self.assertTrue(self.is_zombie(foreign))
        self.assertNotWatched(foreign)

    def test_child_forked_on_another_thread_is_registered_on_the_reactor_turn(self) -> None:
        pid, w = self.fork(4, hold=True)
        in_thread(self.reaper.child_forked, pid)
        self.assertNotWatched(pid)
        self.run_thread_calls()
        self.assertWatched(pid)
        self.release(w)
        self.wait_until_exited(pid)
        self.turn()
        self.assertEqual(self.sink.reaped, [(pid, 4 << 8)])

    def test_close_unregisters_running_children_and_leaves_them_unreaped(self) -> None:
        pid, w = self.fork(9, hold=True)
        self.reaper.child_forked(pid)
        self.assertEqual(self.reaper.close(), [pid])
        self.assertNotWatched(pid)
        self.assertIdle()
        self.release(w)
        self.wait_until_exited(pid)
        self.turn()
        self.assertTrue(self.is_zombie(pid))
        self.assertEqual(self.sink.reaped, [])

    def test_close_cancels_reports_not_yet_delivered(self) -> None:
        pid, _ = self.fork(1)
        self.wait_until_exited(pid)
        self.reaper.child_forked(pid)
        self.assertEqual(self.reaper.close(), [] if self.reaps_at_registration else [pid])
        self.assertIdle()
        self.turn()
        self.assertEqual(self.sink.reaped, [])

    def test_child_forked_after_close_is_not_watched(self) -> None:
        self.reaper.close()
        pid, _ = self.fork(0)
        self.reaper.child_forked(pid)
        self.assertNotWatched(pid)

    def test_bad_pids_raise_typed_errors(self) -> None:
        self.assertRaises(TypeError, self.reaper.child_forked, "123")
        self.assertRaises(TypeError, self.reaper.child_forked, True)
        self.assertRaises(ValueError, self.reaper.child_forked, 0)
        self.assertRaises(ValueError, self.reaper.child_forked, -1)
        for error, f, args in self.bad_constructor_calls():
            self.assertRaises(error, f, *args)

    def test_sink_exception_is_logged(self) -> None:
        pid, _ = self.fork(0)
        self.wait_until_exited(pid)

        def explode(pid: int, status: int) -> None:
            raise ZeroDivisionError("libxl binding failed")

        self.sink.on_reaped = explode
        self.reaper.child_forked(pid)
        self.turn()
        self.assertLoggedFailures(ZeroDivisionError, 1)

    def test_child_reaped_by_someone_else_is_dropped_and_logged(self) -> None:
        pid, w = self.fork(0, hold=True)
        self.reaper.child_forked(pid)
        self.release(w)
        os.waitpid(pid, 0)  # other code steals the status
        self.turn()
        self.assertEqual(self.sink.reaped, [])
        self.assertEqual(self.reaper.running_children, [])
        self.assertTrue(any("reaped by someone else" in f for f in self.logged_formats()))


class RealLoopReaperContract:
    """
    The reaper's rules on a real loop; each test is a coroutine.
    """

    async def test_child_that_exited_before_registration_is_reported_later(self) -> None:
        await self.running()
        pid, _ = self.fork(8)
        self.wait_until_exited(pid)
        done = self.wait_for(pid)
        self.reaper.child_forked(pid)
        self.assertEqual(self.sink.reaped, [])
        self.assertEqual((await done), 8 << 8)

    async def test_child_forked_on_a_worker_thread(self) -> None:
        await self.running()
        pid, w = self.fork(11, hold=True)
        done = self.wait_for(pid)
        await self.in_worker(self.reaper.child_forked, pid)
        self.release(w)
        self.assertEqual((await done), 11 << 8)
