"""
The loops a Context runs on (txlibxl.frameworks): an asyncio future is
cancelled as a Deferred is, and txaio's framework is one per process.
"""
from __future__ import annotations

import asyncio
from typing import Any, List

import txaio
from twisted.trial.unittest import TestCase

from txlibxl import errors
from txlibxl.frameworks import AbortableFuture, AsyncioLoop, FrameworkConflict, TwistedLoop
from txlibxl.operations import OperationCancelled

from .loop_fixtures import run_on_asyncio_loop


class AbortableFutureTests(TestCase):
    def setUp(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)

    def future(self, canceller: Any) -> AbortableFuture:
        f = AbortableFuture(loop=self.loop)
        f._canceller = canceller
        return f

    def test_the_canceller_runs_at_once_and_its_failure_is_the_futures(self) -> None:
        calls: List[Any] = []

        def abort(f: Any) -> None:
            calls.append(f)
            f.set_exception(OperationCancelled(errors.ERROR_ABORTED, "libxl_domain_shutdown"))

        f = self.future(abort)
        self.assertTrue(f.cancel())
        self.assertEqual(calls, [f])
        self.assertIsInstance(f.exception(), OperationCancelled)
        self.assertIsInstance(f.exception(), asyncio.CancelledError)

    def test_a_result_the_canceller_gives_stays_and_cancel_says_false(self) -> None:
        f = self.future(lambda f: f.set_result(7))
        self.assertFalse(f.cancel())
        self.assertEqual(f.result(), 7)

    def test_a_canceller_that_leaves_it_pending_gets_a_cancelled_future(self) -> None:
        f = self.future(lambda f: None)
        self.assertTrue(f.cancel())
        self.assertTrue(f.cancelled())

    def test_a_task_awaiting_a_cancelled_operation_ends_cancelled(self) -> None:
        # On a loop of its own, in a thread: under trial's asyncio reactor
        # the reactor's loop is running in this one.
        async def body() -> None:
            loop = asyncio.get_running_loop()
            f = AbortableFuture(loop=loop)
            f._canceller = lambda f: f.set_exception(OperationCancelled(errors.ERROR_ABORTED, "op"))

            async def waits() -> None:
                await f

            task = loop.create_task(waits())
            await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            self.assertTrue(task.cancelled())
            self.assertIsInstance(f.exception(), OperationCancelled)

        run_on_asyncio_loop(body)


class TwistedLoopTests(TestCase):
    def test_on_loop_thread_is_true_on_the_reactors_thread_only(self) -> None:
        from twisted.internet import reactor, threads

        self.assertTrue(TwistedLoop.on_loop_thread())
        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), TwistedLoop.on_loop_thread)
        d.addCallback(self.assertFalse)
        return d


class FrameworkChoiceTests(TestCase):
    def test_an_asyncio_context_in_a_twisted_process_is_refused_typed(self) -> None:
        txaio.use_twisted()  # what trial's process uses
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        error = self.assertRaises(FrameworkConflict, AsyncioLoop, loop)
        self.assertIsInstance(error, errors.TxlibxlError)
        self.assertIn("process", str(error))

    def test_importing_the_context_chooses_no_framework(self) -> None:
        import subprocess
        import sys

        out = subprocess.run(
            [sys.executable, "-c", "import txaio, txlibxl.context; print(txaio._explicit_framework)"],
            capture_output=True, text=True, check=True,
        ).stdout
        self.assertEqual(out.strip(), "None")
