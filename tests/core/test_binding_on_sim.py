"""
The binding against the real libxenlight, on a simulated Xen host.

No reactor layer here: libxl is driven by a minimal synchronous poll loop
written in this file (``libxl_osevent_beforepoll``/``_afterpoll``), and
libxl's children (destroy forks) are reaped with ``waitpid`` in the same
loop (``libxl_sigchld_owner_mainloop``).  The simulated host is another
process, so blocking here does not stop it; its control client only needs
the reactor between the synchronous steps.
"""
from __future__ import annotations

import os
import select
import time
from typing import Any, Callable, List, Optional, Tuple

from twisted.internet import defer
from twisted.trial.unittest import SkipTest
from zope.interface import implementer

from txlibxl import errors
from txlibxl.interfaces import IChildWatcher
from txlibxl._libxl import binding

try:
    from txlibxl.testing import SimulatedHostTestCase
except ImportError as e:  # pragma: no cover - the fixture is part of the package
    raise SkipTest(f"txlibxl.testing is unavailable: {e}")


@implementer(IChildWatcher)
class PendingChildren:
    """
    Records libxl's children; the poll loop reaps them.
    """

    def __init__(self) -> None:
        self.pids: List[int] = []
        self.forked: List[int] = []

    def child_forked(self, pid: int) -> None:
        self.pids.append(pid)
        self.forked.append(pid)


class BindingTestCase(SimulatedHostTestCase):
    timeout = 90

    def setUp(self) -> Any:
        d = defer.maybeDeferred(super().setUp)
        d.addCallback(lambda _: self._alloc())
        return d

    def _alloc(self) -> None:
        self.messages: List[Tuple[int, str]] = []
        self.ctx = binding.Ctx.alloc(lambda level, text: self.messages.append((level, text)))
        self.children = PendingChildren()
        self.ctx.set_childproc_mainloop(self.children)
        self.completions: List[Tuple[int, int]] = []
        self.ctx.set_ao_completion(lambda op_id, rc: self.completions.append((op_id, rc)))
        self.addCleanup(self._free)

    def _free(self) -> None:
        """Abort what is in flight, let it finish, then free."""
        if self.ctx.closed:
            return
        for op_id in self.ctx.operations_in_flight:
            self.ctx.ao_abort(op_id)
        self.pump(lambda: not self.ctx.operations_in_flight and not self.children.pids)
        self.ctx.free()

    def pump(self, done: Callable[[], bool], seconds: float = 20.0) -> None:
        """
        Run libxl's events (and reap its children) until C{done()}.
        """
        deadline = time.monotonic() + seconds
        while not done():
            self.reap()
            if done():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("libxl did not get there in time")
            wanted, timeout = self.ctx.beforepoll(timeout=int(min(left, 0.1) * 1000))
            poller = select.poll()
            union = {}
            for fd, events in wanted:
                union[fd] = union.get(fd, 0) | events
            for fd, events in union.items():
                poller.register(fd, events)
            ready = dict(poller.poll(timeout))
            extra = select.POLLERR | select.POLLHUP
            self.ctx.afterpoll(
                [(fd, events, ready.get(fd, 0) & (events | extra)) for fd, events in wanted]
            )

    def reap(self) -> None:
        for pid in list(self.children.pids):
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                self.children.pids.remove(pid)
                self.ctx.child_reaped(pid, status)

    def create(self, name: str = "guest", **kw: Any) -> defer.Deferred:
        d = self.host.control.create_domain(name=name, **kw)
        d.addCallback(lambda r: r)
        return d


class LifecycleTests(BindingTestCase):
    def test_alloc_gives_a_live_context_and_free_ends_it_once(self) -> None:
        self.assertFalse(self.ctx.closed)
        self.ctx.free()
        self.ctx.free()
        self.assertTrue(self.ctx.closed)
        self.assertRaises(errors.ContextClosed, self.ctx.list_domains)
        self.assertRaises(errors.ContextClosed, self.ctx.occurred_timeout, 1)

    def test_setup_calls_are_once_only(self) -> None:
        self.assertRaises(errors.ContextStateError, self.ctx.set_childproc_mainloop, PendingChildren())


class QueryTests(BindingTestCase):
    @defer.inlineCallbacks
    def test_list_domains_has_domain0_and_a_created_domain(self) -> Any:
        web = yield self.create("web1")
        domains = {d.domid: d for d in self.ctx.list_domains()}
        self.assertEqual(domains[0].name, "Domain-0")
        self.assertEqual((domains[web["domid"]].name, domains[web["domid"]].uuid), ("web1", web["uuid"]))
        self.assertIsNone(self.ctx.list_domains(names=False)[0].name)

    @defer.inlineCallbacks
    def test_domain_info_copies_the_dominfo(self) -> Any:
        dom = yield self.create("db", memory_kb=524288, vcpus=2)
        info = self.ctx.domain_info(dom["domid"])
        self.assertEqual(
            (info.domid, info.uuid, info.name, info.type, info.shutdown, info.dying, info.shutdown_reason),
            (dom["domid"], dom["uuid"], "db", "pv", False, False, None),
        )
        self.assertEqual(info.max_memkb, 524288)

    def test_domain_info_of_a_missing_domain_is_domain_not_found(self) -> None:
        error = self.assertRaises(errors.DomainNotFound, self.ctx.domain_info, 4242)
        self.assertEqual(error.call, "libxl_domain_info")

    @defer.inlineCallbacks
    def test_names_and_domids_translate_both_ways(self) -> Any:
        dom = yield self.create("mail")
        self.assertEqual(self.ctx.domid_to_name(dom["domid"]), "mail")
        self.assertEqual(self.ctx.name_to_domid("mail"), dom["domid"])
        self.assertRaises(errors.DomainNotFound, self.ctx.domid_to_name, 4242)
        self.assertRaises(errors.InvalidArgument, self.ctx.name_to_domid, "nobody")

    @defer.inlineCallbacks
    def test_a_disks_configuration_can_be_read(self) -> Any:
        dom = yield self.create(disks=[{"vdev": "hdc", "cdrom": True, "target": "/srv/cd.iso"}])
        disk = self.ctx.vdev_to_device_disk(dom["domid"], "hdc")
        self.assertEqual(disk["vdev"], "hdc")
        self.assertEqual(disk["is_cdrom"], 1)
        self.assertRaises(errors.LibxlError, self.ctx.vdev_to_device_disk, dom["domid"], "xvdz")


class EventTests(BindingTestCase):
    def batches(self) -> List[List[Any]]:
        """The report batches the binding hands over from now on."""
        batches: List[List[Any]] = []
        self.collect()
        self.ctx.set_report_batches(lambda batch, delivering: batches.append(batch))
        return batches

    def deaths_of(self, batches: List[List[Any]]) -> List[Tuple[int, ...]]:
        """Once a death is among C{batches}: every record in them, as 5-tuples."""
        self.pump(lambda: any(b[0::5].count(binding.EVENT_DOMAIN_DEATH) for b in batches))
        flat = [word for batch in batches for word in batch]
        return [tuple(flat[i:i + 5]) for i in range(0, len(flat), 5)]

    def collect(self) -> List[binding.RawEvent]:
        events: List[binding.RawEvent] = []
        self.disasters: List[Tuple[int, str, int]] = []
        self.ctx.register_event_callbacks(events.append, lambda *a: self.disasters.append(a))
        return events

    @defer.inlineCallbacks
    def test_a_death_watch_reports_shutdown_then_death_through_the_poll_loop(self) -> Any:
        events = self.collect()
        dom = yield self.create()
        domid = dom["domid"]
        watch = self.ctx.evenable_domain_death(domid, 77)
        self.assertEqual(self.ctx.generators_enabled, 1)
        yield self.host.control.shutdown(domid, "poweroff")
        self.pump(lambda: any(e.type == binding.EVENT_DOMAIN_SHUTDOWN for e in events))
        yield self.host.control.destroy([domid])
        self.pump(lambda: any(e.type == binding.EVENT_DOMAIN_DEATH for e in events))
        self.assertEqual(
            [(e.type, e.domid, e.uuid, e.for_user, e.shutdown_reason) for e in events],
            [
                (binding.EVENT_DOMAIN_SHUTDOWN, domid, dom["uuid"], 77, 0),
                (binding.EVENT_DOMAIN_DEATH, domid, dom["uuid"], 77, None),
            ],
        )
        self.ctx.evdisable_domain_death(watch)
        self.assertEqual(self.ctx.generators_enabled, 0)
        self.assertRaises(errors.InvalidArgument, self.ctx.evdisable_domain_death, watch)
        self.assertEqual(self.disasters, [])

    @defer.inlineCallbacks
    def test_a_user_value_names_one_enabled_death_generator(self) -> Any:
        # The C side finds a generator by its user value when its death
        # comes: a second one with the same value would be the wrong one.
        self.collect()
        dom = yield self.create()
        other = yield self.create("other")
        first = self.ctx.evenable_domain_death(dom["domid"], 31)
        self.assertRaises(errors.InvalidArgument, self.ctx.evenable_domain_death, other["domid"], 31)
        self.assertEqual(self.ctx.generators_enabled, 1)
        self.ctx.evdisable_domain_death(first)
        again = self.ctx.evenable_domain_death(other["domid"], 31)
        self.ctx.evdisable_domain_death(again)
        self.assertEqual(self.ctx.generators_enabled, 0)

    @defer.inlineCallbacks
    def test_a_death_is_marked_spent_when_the_c_side_disabled_its_generator(self) -> Any:
        batches = self.batches()
        dom = yield self.create()
        self.ctx.evenable_domain_death(dom["domid"], 41)
        yield self.host.control.destroy([dom["domid"]])
        self.assertIn((binding.EVENT_DOMAIN_DEATH, dom["domid"], 41, binding.DEATH_SPENT, 0),
                      self.deaths_of(batches))

    @defer.inlineCallbacks
    def test_spent_generators_forgotten_in_bulk_leave_a_reused_user_value_alone(self) -> Any:
        # After a bulk forget, the dead generator's handle may still be
        # disabled once (libxl's contract asks for it): that must not
        # disable the newer generator that now has its user value.
        batches = self.batches()
        dom = yield self.create()
        other = yield self.create("other")
        old = self.ctx.evenable_domain_death(dom["domid"], 51)
        yield self.host.control.destroy([dom["domid"]])
        self.deaths_of(batches)
        self.ctx.death_generators_spent([51, 52])  # 52: no such generator, skipped
        self.assertEqual(self.ctx.generators_enabled, 0)
        new = self.ctx.evenable_domain_death(other["domid"], 51)
        self.ctx.evdisable_domain_death(old)
        self.assertRaises(errors.InvalidArgument, self.ctx.evdisable_domain_death, old)
        self.assertEqual(self.ctx.generators_enabled, 1)
        del batches[:]
        yield self.host.control.destroy([other["domid"]])
        self.assertIn((binding.EVENT_DOMAIN_DEATH, other["domid"], 51, binding.DEATH_SPENT, 0),
                      self.deaths_of(batches))
        self.ctx.evdisable_domain_death(new)
        self.assertEqual(self.ctx.generators_enabled, 0)

    @defer.inlineCallbacks
    def test_an_eject_is_reported_with_the_watched_vdev(self) -> Any:
        events = self.collect()
        dom = yield self.create(disks=[{"vdev": "hdc", "cdrom": True, "target": "/srv/cd.iso"}])
        watch = self.ctx.evenable_disk_eject(dom["domid"], "hdc", 5)
        yield self.host.control.eject(dom["domid"], "hdc")
        self.pump(lambda: bool(events))
        (event,) = events
        self.assertEqual((event.type, event.domid, event.for_user, event.vdev), (3, dom["domid"], 5, "hdc"))
        self.assertEqual((event.disk["vdev"], event.disk["is_cdrom"]), ("hdc", 1))
        self.ctx.evdisable_disk_eject(watch)

    @defer.inlineCallbacks
    def test_unmasked_events_wait_for_event_check_and_its_predicate(self) -> Any:
        # No register_event_callbacks: libxl queues every event.
        first = yield self.create("a")
        second = yield self.create("b")
        self.ctx.evenable_domain_death(first["domid"], 1)
        self.ctx.evenable_domain_death(second["domid"], 2)
        yield self.host.control.destroy([first["domid"], second["domid"]])
        death = binding.event_mask(binding.EVENT_DOMAIN_DEATH)
        queued: List[binding.RawEvent] = []

        def second_died() -> bool:
            event = self.ctx.event_check(death, lambda e: e.for_user == 2)
            if event is not None:
                queued.append(event)
            return bool(queued)

        self.pump(second_died)
        self.assertEqual((queued[0].for_user, queued[0].domid), (2, second["domid"]))
        # The first one's death is still queued, and only it.
        self.assertIsNone(self.ctx.event_check(binding.event_mask(binding.EVENT_DOMAIN_SHUTDOWN)))
        self.assertEqual(self.ctx.event_check(death).for_user, 1)
        self.assertIsNone(self.ctx.event_check())

    @defer.inlineCallbacks
    def test_a_raising_predicate_counts_as_no_match(self) -> Any:
        dom = yield self.create()
        self.ctx.evenable_domain_death(dom["domid"], 9)
        yield self.host.control.destroy([dom["domid"]])
        seen: List[int] = []

        def broken(event: binding.RawEvent) -> bool:
            seen.append(event.for_user)
            raise ZeroDivisionError("predicate bug")

        self.pump(lambda: self.ctx.event_check(predicate=broken) is None and bool(seen))
        self.assertTrue(self.flushLoggedErrors(ZeroDivisionError))
        self.assertEqual(self.ctx.event_check().for_user, 9)

    @defer.inlineCallbacks
    def test_beforepoll_lists_the_xenstore_watch_fd(self) -> Any:
        dom = yield self.create()
        before, _ = self.ctx.beforepoll()
        self.ctx.evenable_domain_death(dom["domid"], 1)
        after, timeout = self.ctx.beforepoll(timeout=5000)
        self.assertGreater(len(after), len(before))
        self.assertTrue(all(events & select.POLLIN for _, events in after))
        self.assertTrue(-1 <= timeout <= 5000)


class OperationTests(BindingTestCase):
    @defer.inlineCallbacks
    def test_shutdown_completes_once_the_guest_acknowledges(self) -> Any:
        dom = yield self.create()
        self.ctx.domain_shutdown(dom["domid"], 5)
        self.pump(lambda: bool(self.completions))
        self.assertEqual(self.completions, [(5, 0)])
        self.assertEqual(self.ctx.operations_in_flight, frozenset())

    @defer.inlineCallbacks
    def test_destroy_completes_and_the_domain_is_gone(self) -> Any:
        dom = yield self.create(disks=[{"vdev": "xvda"}])
        self.ctx.domain_destroy(dom["domid"], 6)
        self.pump(lambda: bool(self.completions))
        self.assertEqual(self.completions, [(6, 0)])
        self.assertTrue(self.children.forked, "libxl forked no child for destroy")
        self.pump(lambda: not self.children.pids)
        self.assertRaises(errors.DomainNotFound, self.ctx.domain_info, dom["domid"])

    @defer.inlineCallbacks
    def test_pause_and_unpause_complete(self) -> Any:
        dom = yield self.create()
        self.ctx.domain_pause(dom["domid"], 1)
        self.pump(lambda: len(self.completions) == 1)
        self.assertTrue(self.ctx.domain_info(dom["domid"]).paused)
        self.ctx.domain_unpause(dom["domid"], 2)
        self.pump(lambda: len(self.completions) == 2)
        self.assertEqual(self.completions, [(1, 0), (2, 0)])
        self.assertFalse(self.ctx.domain_info(dom["domid"]).paused)

    def test_an_operation_on_a_missing_domain_fails_with_the_typed_error(self) -> None:
        error = self.assertRaises(errors.LibxlError, self.ctx.domain_shutdown, 4242, 3)
        self.assertEqual(error.call, "libxl_domain_shutdown")
        self.assertEqual(self.ctx.operations_in_flight, frozenset())

    def test_abort_of_nothing_is_not_found(self) -> None:
        self.assertEqual(self.ctx.ao_abort(99), errors.ERROR_NOTFOUND)

    @defer.inlineCallbacks
    def test_an_aborted_op_completes_with_error_aborted_and_is_then_not_found(self) -> Any:
        # libxl aborts a waiting shutdown at once, inside libxl_ao_abort;
        # ERROR_ABORTED (a second abort while the first is under way) needs
        # an operation that takes time to stop, which the sim has none of.
        dom = yield self.create()
        yield self.host.control.fault("guest_ignore_shutdown", domid=dom["domid"])
        self.ctx.domain_shutdown(dom["domid"], 8)
        self.assertEqual(self.ctx.operations_in_flight, frozenset({8}))
        self.assertEqual(self.ctx.ao_abort(8), 0)
        self.pump(lambda: bool(self.completions))
        self.assertEqual(self.completions, [(8, errors.ERROR_ABORTED)])
        self.assertEqual(self.ctx.ao_abort(8), errors.ERROR_NOTFOUND)

    @defer.inlineCallbacks
    def test_free_with_an_operation_in_flight_is_refused(self) -> Any:
        dom = yield self.create()
        yield self.host.control.fault("guest_ignore_shutdown", domid=dom["domid"])
        self.ctx.domain_shutdown(dom["domid"], 4)
        self.assertRaises(errors.ContextStateError, self.ctx.free)
        self.assertFalse(self.ctx.closed)
        self.ctx.ao_abort(4)
        self.pump(lambda: bool(self.completions))
        self.ctx.free()

    @defer.inlineCallbacks
    def test_an_op_id_in_flight_cannot_be_reused(self) -> Any:
        dom = yield self.create()
        yield self.host.control.fault("guest_ignore_shutdown", domid=dom["domid"])
        self.ctx.domain_shutdown(dom["domid"], 4)
        self.assertRaises(errors.InvalidArgument, self.ctx.domain_reboot, dom["domid"], 4)


class HookTests(BindingTestCase):
    """
    The osevent hooks registered for real: libxl calls them.
    """

    def hooks(self, fail: Optional[BaseException] = None) -> Any:
        from tests.core.test_binding import RecordingHooks

        hooks = RecordingHooks()
        hooks.fail = fail
        self.ctx.register_osevent_hooks(hooks)
        return hooks

    @defer.inlineCallbacks
    def test_libxl_registers_its_watch_fd_through_the_hooks_and_deregisters_on_free(self) -> Any:
        hooks = self.hooks()
        dom = yield self.create()
        self.ctx.evenable_domain_death(dom["domid"], 1)
        registered = [c for c in hooks.calls if c[0] == "fd_register"]
        self.assertTrue(registered)
        self.assertTrue(all(c[3] > 0 for c in registered), "tokens are for_libxl pointers")
        self.ctx.free()
        self.assertTrue([c for c in hooks.calls if c[0] == "fd_deregister"])
        self.assertEqual(self.ctx.osevent_registrations, 0)

    @defer.inlineCallbacks
    def test_a_failing_fd_register_hook_fails_the_libxl_call(self) -> Any:
        self.hooks(fail=ZeroDivisionError("no reactor today"))
        dom = yield self.create()
        error = self.assertRaises(errors.LibxlError, self.ctx.evenable_domain_death, dom["domid"], 1)
        self.assertEqual(error.code, errors.ERROR_OSEVENT_REG_FAIL)
        self.assertTrue(self.flushLoggedErrors(ZeroDivisionError))

    def test_hooks_are_registered_once(self) -> None:
        self.hooks()
        self.assertRaises(errors.ContextStateError, self.hooks)

    @defer.inlineCallbacks
    def test_hooks_cannot_be_registered_once_libxl_is_busy(self) -> Any:
        dom = yield self.create()
        self.ctx.evenable_domain_death(dom["domid"], 1)
        self.assertRaises(errors.ContextStateError, self.hooks)

    @defer.inlineCallbacks
    def test_callbacks_cannot_change_while_a_generator_is_enabled(self) -> Any:
        dom = yield self.create()
        self.ctx.evenable_domain_death(dom["domid"], 1)
        self.assertRaises(errors.ContextStateError, self.ctx.register_event_callbacks, print, print)


class LogTests(BindingTestCase):
    @defer.inlineCallbacks
    def test_libxl_messages_reach_the_log_callback_with_their_level(self) -> Any:
        self.ctx.set_log_level(binding.XTL_DEBUG)
        dom = yield self.create()
        self.ctx.domain_shutdown(dom["domid"], 1)
        self.pump(lambda: bool(self.completions))
        self.assertIn(binding.XTL_DEBUG, {level for level, _ in self.messages})
        self.assertTrue(all(isinstance(text, str) and text for _, text in self.messages))

    @defer.inlineCallbacks
    def test_messages_below_the_minimum_level_are_not_passed_on(self) -> Any:
        self.ctx.set_log_level(binding.XTL_INFO)
        dom = yield self.create()
        self.ctx.domain_shutdown(dom["domid"], 1)
        self.pump(lambda: bool(self.completions))
        self.assertEqual([m for m in self.messages if m[0] < binding.XTL_INFO], [])
