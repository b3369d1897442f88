"""
The rules an operation keeps towards its caller, without libxl: a
:class:`~txlibxl.context.Context` on a ``MemoryReactorClock`` over a fake
binding that plays libxl's side (its completions, its progress reports,
what it leaves after a failed or aborted create).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import attr
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from txlibxl import errors
from txlibxl._libxl import binding
from txlibxl._libxl.ctx_operations import Finished
from txlibxl.context import Context, OperationCancelled
from txlibxl.events import ConsoleAvailable

CONFIG = {"c_info": {"type": "pv", "name": "g", "uuid": "6a3d1b1c-4f0e-4a4e-9a55-2f5a3f6e0b01"}}
UUID = CONFIG["c_info"]["uuid"]


@attr.s(auto_attribs=True)
class FakeDomain:
    uuid: str


class FakeLibxl:
    """
    The binding's Ctx as the Context uses it, with libxl's side driven by
    the test: C{complete}, C{report_console}.
    """

    def __init__(self) -> None:
        self.started: Dict[int, Tuple[str, Any]] = {}
        self.results: Dict[int, Any] = {}
        self.finished: List[int] = []
        self.aborted: List[int] = []
        self.domains: Dict[int, FakeDomain] = {}
        self.in_flight: set = set()
        self.freed = False

    @classmethod
    def alloc(cls, log: Any, min_level: int) -> "FakeLibxl":
        return cls.current

    # setup
    def register_osevent_hooks(self, hooks: Any) -> None:
        pass

    def set_childproc_mainloop(self, watcher: Any) -> None:
        pass

    def register_event_callbacks(self, on_event: Any, on_disaster: Any) -> None:
        self.on_event = on_event

    def set_ao_completion(self, on_complete: Any) -> None:
        self.on_complete = on_complete

    # operations
    def json_round_trip(self, kind: str, text: str) -> str:
        return text

    def domain_create_new(self, text: str, op_id: int, console_user: int) -> None:
        self.started[op_id] = ("create", console_user)
        self.in_flight.add(op_id)

    def domain_destroy(self, domid: int, op_id: int) -> None:
        self.started[op_id] = ("destroy", domid)
        self.in_flight.add(op_id)

    def domain_pause(self, domid: int, op_id: int) -> None:
        self.started[op_id] = ("pause", domid)
        self.in_flight.add(op_id)

    def domain_info(self, domid: int) -> FakeDomain:
        if domid not in self.domains:
            raise errors.DomainNotFound(call="libxl_domain_info")
        return self.domains[domid]

    def ao_abort(self, op_id: int) -> int:
        self.aborted.append(op_id)
        return 0 if op_id in self.in_flight else errors.ERROR_NOTFOUND

    def finish_operation(self, op_id: int) -> Finished:
        self.finished.append(op_id)
        return Finished(self.results.pop(op_id, None), ("libxl: it went wrong",))

    def free(self) -> None:
        self.freed = True

    # libxl's side
    def op(self, kind: str) -> int:
        return max(op_id for op_id, (what, _) in self.started.items() if what == kind)

    def report_console(self, op_id: int, domid: int) -> None:
        user = self.started[op_id][1]
        self.on_event(binding.RawEvent(binding.EVENT_DOMAIN_CREATE_CONSOLE_AVAILABLE, domid, binding.NIL_UUID, user))

    def complete(self, op_id: int, rc: int, result: Any = None) -> None:
        self.in_flight.discard(op_id)
        self.results[op_id] = result
        self.on_complete(op_id, rc)


class FakeReactor(MemoryReactorClock):
    """A MemoryReactorClock whose thread is the reactor's."""

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)


class OperationTestCase(TestCase):
    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.libxl = FakeLibxl.current = FakeLibxl()
        self.patch(binding, "Ctx", FakeLibxl)
        self.ctx = Context(self.reactor, xenstore_liveness=None)

    def turn(self) -> None:
        self.reactor.advance(0)

    def create(self, **kw: Any) -> Tuple[Any, int]:
        d = self.ctx.create(CONFIG, **kw)
        return d, self.libxl.op("create")


class ConsoleReportTests(OperationTestCase):
    def test_the_console_report_reaches_the_caller_once_before_the_domid(self) -> None:
        seen: List[Any] = []
        d, op_id = self.create(on_console=seen.append)
        d.addCallback(seen.append)
        self.libxl.domains[7] = FakeDomain(UUID)
        self.libxl.report_console(op_id, 7)
        self.libxl.report_console(op_id, 7)  # a repeat: dropped
        self.libxl.complete(op_id, 0, 7)
        self.turn()
        self.assertEqual(seen, [ConsoleAvailable(7, UUID), 7])

    def test_no_console_report_reaches_the_caller_of_a_create_already_cancelled(self) -> None:
        seen: List[Any] = []
        d, op_id = self.create(on_console=seen.append)
        d.cancel()
        self.libxl.report_console(op_id, 7)
        self.libxl.complete(op_id, errors.ERROR_ABORTED, None)
        self.turn()
        self.assertEqual(seen, [])
        self.failureResultOf(d, OperationCancelled)

    def test_a_failing_console_callback_is_logged_and_the_create_goes_on(self) -> None:
        d, op_id = self.create(on_console=lambda event: 1 / 0)
        self.libxl.report_console(op_id, 7)
        self.libxl.complete(op_id, 0, 7)
        self.turn()
        self.assertEqual(self.successResultOf(d), 7)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class FailedCreateTests(OperationTestCase):
    def test_a_failed_create_fails_with_libxls_code_and_message(self) -> None:
        d, op_id = self.create()
        self.libxl.complete(op_id, errors.ERROR_FAIL, None)
        self.turn()
        failure = self.failureResultOf(d, errors.GeneralFailure)
        self.assertEqual(failure.value.message, "libxl: it went wrong")

    def test_a_domain_libxl_left_after_a_failed_create_is_destroyed_before_the_failure(self) -> None:
        d, op_id = self.create()
        self.libxl.domains[7] = FakeDomain(UUID)
        self.libxl.complete(op_id, errors.ERROR_FAIL, 7)
        self.turn()
        self.assertEqual(self.libxl.started[self.libxl.op("destroy")], ("destroy", 7))
        self.assertNoResult(d)
        self.libxl.complete(self.libxl.op("destroy"), 0)
        self.turn()
        self.failureResultOf(d, errors.GeneralFailure)

    def test_another_domain_on_the_domid_is_left_alone(self) -> None:
        d, op_id = self.create()
        self.libxl.domains[7] = FakeDomain("11111111-2222-3333-4444-555555555555")
        self.libxl.complete(op_id, errors.ERROR_FAIL, 7)
        self.turn()
        self.failureResultOf(d, errors.GeneralFailure)
        self.assertNotIn("destroy", [what for what, _ in self.libxl.started.values()])


class CancelledCreateTests(OperationTestCase):
    def test_cancel_aborts_and_the_half_built_domain_is_destroyed_before_settled(self) -> None:
        d, op_id = self.create()
        d.cancel()
        self.assertEqual(self.libxl.aborted, [op_id])
        cancelled = self.failureResultOf(d, OperationCancelled).value
        self.libxl.domains[7] = FakeDomain(UUID)
        self.libxl.complete(op_id, errors.ERROR_ABORTED, 7)  # libxl keeps the domain
        self.turn()
        self.assertNoResult(cancelled.settled)
        self.libxl.complete(self.libxl.op("destroy"), 0)
        self.turn()
        self.assertIs(self.successResultOf(cancelled.settled), False)  # libxl stopped short

    def test_a_create_libxl_finished_in_spite_of_the_abort_is_destroyed_too(self) -> None:
        d, op_id = self.create()
        d.cancel()
        cancelled = self.failureResultOf(d, OperationCancelled).value
        self.libxl.domains[7] = FakeDomain(UUID)
        self.libxl.complete(op_id, 0, 7)
        self.turn()
        self.assertEqual(self.libxl.started[self.libxl.op("destroy")], ("destroy", 7))
        self.libxl.complete(self.libxl.op("destroy"), 0)
        self.turn()
        self.assertIs(self.successResultOf(cancelled.settled), True)  # libxl had completed it

    def test_a_cancel_after_libxl_completed_gives_the_domid(self) -> None:
        d, op_id = self.create()
        self.libxl.complete(op_id, 0, 7)  # queued, not yet dispatched
        d.cancel()
        self.assertEqual(self.successResultOf(d), 7)
        self.assertEqual(self.libxl.aborted, [])

    def test_close_waits_for_the_clean_up_of_an_aborted_create(self) -> None:
        d, op_id = self.create()
        closed = self.ctx.close()
        self.failureResultOf(d, OperationCancelled)
        self.libxl.domains[7] = FakeDomain(UUID)
        self.libxl.complete(op_id, errors.ERROR_ABORTED, 7)
        self.turn()
        self.assertNoResult(closed)
        self.assertFalse(self.libxl.freed)
        self.libxl.complete(self.libxl.op("destroy"), 0)
        self.turn()
        self.successResultOf(closed)
        self.assertTrue(self.libxl.freed)


class CancelledOperationTests(OperationTestCase):
    def test_settled_says_libxl_completed_an_aborted_operation_anyway(self) -> None:
        d = self.ctx.destroy(7)
        d.cancel()
        cancelled = self.failureResultOf(d, OperationCancelled).value
        self.libxl.complete(self.libxl.op("destroy"), 0)  # libxl destroys all the same
        self.turn()
        self.assertIs(self.successResultOf(cancelled.settled), True)

    def test_settled_says_libxl_stopped_an_aborted_operation(self) -> None:
        d = self.ctx.pause(7)
        d.cancel()
        cancelled = self.failureResultOf(d, OperationCancelled).value
        self.libxl.complete(self.libxl.op("pause"), errors.ERROR_ABORTED)
        self.turn()
        self.assertIs(self.successResultOf(cancelled.settled), False)


class KeptArgumentsTests(OperationTestCase):
    def test_every_completed_operation_is_finished_once_when_dispatched(self) -> None:
        d, op_id = self.create()
        pause = self.ctx.pause(0)
        pause_id = self.libxl.op("pause")
        self.libxl.complete(op_id, 0, 7)
        self.libxl.complete(pause_id, 0)
        self.assertEqual(self.libxl.finished, [])  # still queued
        self.turn()
        self.assertEqual(self.libxl.finished, [op_id, pause_id])
        self.successResultOf(d)
        self.successResultOf(pause)

    def test_the_callers_config_is_never_changed(self) -> None:
        config: Dict[str, Any] = {"c_info": {"name": "g"}}
        self.ctx.create(config)
        self.assertEqual(config, {"c_info": {"name": "g"}})


class ArgumentTests(OperationTestCase):
    def test_every_mistake_arrives_through_the_deferred(self) -> None:
        self.failureResultOf(self.ctx.create([1]), TypeError)
        self.failureResultOf(self.ctx.create(CONFIG, on_console=3), TypeError)
        self.assertEqual(self.libxl.started, {})
        self.assertEqual(self.ctx.operations_in_flight, 0)

    def test_a_domid_that_is_not_one_fails_the_deferred_before_libxl_is_called(self) -> None:
        for bad, error in (("7", TypeError), (True, TypeError), (None, TypeError), (-1, ValueError),
                           (0x7FF0, ValueError)):
            failure = self.failureResultOf(self.ctx.pause(bad), error)
            self.assertNotIsInstance(failure.value, errors.LibxlError)
            self.failureResultOf(self.ctx.destroy(bad), error)
        self.assertEqual(self.libxl.started, {})
        self.assertEqual(self.ctx.operations_in_flight, 0)

    def test_after_close_operations_raise_context_closed(self) -> None:
        self.successResultOf(self.ctx.close())
        self.assertRaises(errors.ContextClosed, self.ctx.create, CONFIG)
