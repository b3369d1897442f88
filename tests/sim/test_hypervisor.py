"""The simulated hypervisor's rules: Xen 4.17's domain table and the
``@releaseDomain`` firing rules of C xenstored's ``check_domains``."""
from __future__ import annotations

import errno
import uuid
from typing import Callable, List, Tuple

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from txlibxl.sim.hypervisor import (
    DOMID_FIRST_RESERVED,
    Domain,
    DomainChange,
    DomainExists,
    HostInfo,
    Hypervisor,
    InvalidDomainConfig,
    InvalidOperation,
    NoFreeDomid,
    NoSuchDomain,
    OutOfMemory,
    ShutdownReason,
)
from txlibxl.sim.store import Store

DOMINF_DYING = 1 << 0
DOMINF_HVM = 1 << 1
DOMINF_SHUTDOWN = 1 << 2
DOMINF_PAUSED = 1 << 3
DOMINF_BLOCKED = 1 << 4
DOMINF_RUNNING = 1 << 5
DOMINF_HAP = 1 << 8


class Deferring:
    """A store schedule that runs watch callbacks only when asked, the way
    a reactor runs them on a later turn."""

    def __init__(self) -> None:
        self.pending: List[Callable[[], None]] = []

    def __call__(self, f: Callable[[], None]) -> None:
        self.pending.append(f)

    def run(self) -> None:
        while self.pending:
            self.pending.pop(0)()


class HostTestCase(TestCase):
    def setUp(self) -> None:
        self.schedule = Deferring()
        self.store = Store(self.schedule)
        self.now = 1000.0
        self.hv = Hypervisor(self.store, clock=lambda: self.now)
        self.releases = 0
        self.store.watch("@releaseDomain", self._released)
        self.schedule.run()
        self.releases = 0  # a new watch fires once at once: not a release
        self.seen_in_first_release: List[Domain] = []

    def _released(self, path: str) -> None:
        if self.releases == 0:
            self.seen_in_first_release = self.hv.domains()
        self.releases += 1

    def guest(self, name: str = "guest", introduce: bool = True, **kw) -> Domain:
        domain = self.hv.create_domain(name, **kw)
        if introduce:
            self.store.introduce(domain.domid)
        return domain

    def fired(self) -> int:
        self.schedule.run()
        count, self.releases = self.releases, 0
        return count


class DomainZeroTests(HostTestCase):
    def test_domain0_exists_running_from_the_start(self) -> None:
        dom0 = self.hv.get(0)
        self.assertEqual(
            (dom0.name, dom0.type, dom0.running, dom0.paused), ("Domain-0", "pv", True, False)
        )
        self.assertEqual(dom0.uuid, uuid.UUID(int=0))
        self.assertEqual(dom0.flags & 0xFFFF, DOMINF_RUNNING)

    def test_domain0_cannot_be_paused_shut_down_or_destroyed(self) -> None:
        for op in (self.hv.pause, self.hv.destroy, lambda d: self.hv.shutdown(d, 0)):
            e = self.assertRaises(InvalidOperation, op, 0)
            self.assertEqual(e.errno, errno.EINVAL)
        self.assertTrue(self.hv.get(0).running)


class DomidAllocationTests(HostTestCase):
    def test_domids_are_handed_out_in_increasing_order_from_1(self) -> None:
        self.assertEqual([self.guest(f"g{i}").domid for i in range(3)], [1, 2, 3])

    def test_a_freed_domid_is_not_reused_before_the_counter_wraps(self) -> None:
        first = self.guest("a").domid
        self.hv.destroy(first)
        self.assertEqual(self.guest("b").domid, first + 1)

    def test_allocation_wraps_below_the_reserved_range_and_skips_domids_in_use(self) -> None:
        self.guest("one")  # domid 1 stays in use
        self.guest("high", domid=DOMID_FIRST_RESERVED - 1)
        self.hv._rover = DOMID_FIRST_RESERVED - 2
        self.assertEqual(self.guest("next").domid, 2)

    def test_an_explicit_domid_in_use_is_refused_with_eexist(self) -> None:
        self.guest("a", domid=7)
        e = self.assertRaises(DomainExists, self.guest, "b", domid=7)
        self.assertEqual(e.errno, errno.EEXIST)

    def test_an_explicit_domid_outside_the_normal_range_is_refused(self) -> None:
        for domid in (0, DOMID_FIRST_RESERVED, -1):
            self.assertRaises(InvalidDomainConfig, self.guest, "x", domid=domid)

    def test_no_free_domid_left_is_enomem(self) -> None:
        hv = Hypervisor(self.store, host=HostInfo(total_memory_kb=1 << 40))
        for domid in range(1, DOMID_FIRST_RESERVED):
            hv._domains[domid] = hv._domains[0]  # occupy without the cost
        e = self.assertRaises(NoFreeDomid, hv.create_domain, "x")
        self.assertEqual(e.errno, errno.ENOMEM)


class CreateDomainTests(HostTestCase):
    def test_a_new_domain_is_paused_until_unpaused(self) -> None:
        domain = self.guest()
        self.assertTrue(domain.paused)
        self.assertEqual(domain.flags & 0xFFFF, DOMINF_PAUSED)
        self.assertTrue(self.hv.unpause(domain.domid).running)

    def test_each_domain_has_its_own_uuid_that_never_changes(self) -> None:
        a, b = self.guest("a"), self.guest("b")
        self.assertNotEqual(a.uuid, b.uuid)
        self.hv.unpause(a.domid)
        self.hv.shutdown(a.domid, ShutdownReason.REBOOT)
        self.assertEqual(self.hv.get(a.domid).uuid, a.uuid)

    def test_a_given_uuid_is_kept(self) -> None:
        wanted = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
        self.assertEqual(self.guest(uuid=wanted).uuid, wanted)

    def test_hvm_and_pvh_domains_are_hvm_containers_with_hap(self) -> None:
        for kind in ("hvm", "pvh"):
            flags = self.guest(kind, type=kind).flags
            self.assertEqual(flags & (DOMINF_HVM | DOMINF_HAP), DOMINF_HVM | DOMINF_HAP)
        self.assertFalse(self.guest("pv").flags & DOMINF_HVM)

    def test_bad_domain_descriptions_are_refused(self) -> None:
        for kw in (
            {"type": "arm"}, {"memory_kb": 0}, {"vcpus": 0}, {"uuid": "x"},
            {"memory_kb": 1024, "max_memory_kb": 512},
        ):
            self.assertRaises(InvalidDomainConfig, self.hv.create_domain, "x", **kw)
        self.assertRaises(InvalidDomainConfig, self.hv.create_domain, "")

    def test_a_domain_larger_than_the_free_memory_is_refused(self) -> None:
        hv = Hypervisor(self.store, host=HostInfo(total_memory_kb=8 << 20), dom0_memory_kb=4 << 20)
        e = self.assertRaises(OutOfMemory, hv.create_domain, "big", memory_kb=5 << 20)
        self.assertEqual(e.errno, errno.ENOMEM)

    def test_memory_and_vcpus_appear_as_pages_and_vcpu_ids(self) -> None:
        domain = self.guest(memory_kb=524288, vcpus=2, max_memory_kb=1048576)
        self.assertEqual((domain.tot_pages, domain.max_pages), (131072, 262144))
        self.assertEqual(domain.vcpus, 2)


class PauseTests(HostTestCase):
    def test_pauses_nest_and_each_needs_an_unpause(self) -> None:
        domid = self.guest().domid
        self.hv.pause(domid)
        self.hv.unpause(domid)
        self.assertTrue(self.hv.get(domid).paused)
        self.assertFalse(self.hv.unpause(domid).paused)

    def test_unpausing_a_domain_that_is_not_paused_is_einval(self) -> None:
        domid = self.guest(paused=False).domid
        e = self.assertRaises(InvalidOperation, self.hv.unpause, domid)
        self.assertEqual(e.errno, errno.EINVAL)

    def test_pausing_does_not_fire_release_domain(self) -> None:
        domid = self.guest().domid
        self.hv.unpause(domid)
        self.hv.pause(domid)
        self.assertEqual(self.fired(), 0)


class NoSuchDomainTests(HostTestCase):
    def test_every_operation_on_a_missing_domain_is_no_such_domain_esrch(self) -> None:
        ops = [self.hv.get, self.hv.pause, self.hv.unpause, self.hv.destroy, self.hv.crash,
               lambda d: self.hv.shutdown(d, ShutdownReason.POWEROFF),
               lambda d: self.hv.hvm_param_get(d, 0)]
        for op in ops:
            e = self.assertRaises(NoSuchDomain, op, 42)
            self.assertEqual(e.errno, errno.ESRCH)

    def test_a_destroyed_domain_is_no_such_domain(self) -> None:
        domid = self.guest().domid
        self.hv.destroy(domid)
        self.assertRaises(NoSuchDomain, self.hv.get, domid)


class ShutdownTests(HostTestCase):
    def test_shutdown_reason_appears_in_flags_above_bit_16(self) -> None:
        domid = self.guest(paused=False).domid
        domain = self.hv.shutdown(domid, ShutdownReason.REBOOT)
        self.assertEqual(domain.flags, DOMINF_SHUTDOWN | (1 << 16))
        self.assertFalse(domain.running)

    def test_a_domain_never_shut_down_carries_xens_invalid_code_in_flags(self) -> None:
        self.assertEqual(self.guest().flags >> 16, 0xFFFF)

    def test_the_first_shutdown_reason_sticks(self) -> None:
        domid = self.guest().domid
        self.hv.shutdown(domid, ShutdownReason.POWEROFF)
        self.assertEqual(self.hv.crash(domid).shutdown_reason, ShutdownReason.POWEROFF)

    def test_crash_is_a_shutdown_with_reason_crash(self) -> None:
        domain = self.hv.crash(self.guest().domid)
        self.assertTrue(domain.crashed)
        self.assertEqual((domain.flags >> 16) & 255, 3)

    def test_an_unknown_shutdown_reason_is_refused(self) -> None:
        self.assertRaises(InvalidOperation, self.hv.shutdown, self.guest().domid, 9)

    def test_a_dying_domain_cannot_be_shut_down(self) -> None:
        hv = Hypervisor(self.store, call_later=Clock().callLater, dying_delay=1)
        domid = hv.create_domain("g").domid
        hv.destroy(domid)
        self.assertRaises(InvalidOperation, hv.shutdown, domid, ShutdownReason.POWEROFF)
        hv.cancel_pending()


class ReleaseDomainTests(HostTestCase):
    def test_the_first_shutdown_of_an_introduced_domain_fires_release_domain(self) -> None:
        domid = self.guest().domid
        self.hv.shutdown(domid, ShutdownReason.POWEROFF)
        self.assertEqual(self.fired(), 1)

    def test_a_repeated_shutdown_does_not_fire_again(self) -> None:
        domid = self.guest().domid
        self.hv.shutdown(domid, ShutdownReason.POWEROFF)
        self.fired()
        self.hv.shutdown(domid, ShutdownReason.POWEROFF)
        self.hv.crash(domid)
        self.assertEqual(self.fired(), 0)

    def test_a_resumed_domain_runs_and_its_next_shutdown_fires_again(self) -> None:
        domid = self.guest(paused=False).domid
        self.hv.shutdown(domid, ShutdownReason.SUSPEND)
        self.assertEqual(self.fired(), 1)
        suspended = self.hv.get(domid).cpu_time_ns
        resumed = self.hv.resume(domid)
        self.hv.xenstored_resume(domid)  # libxl_domain_resume's XS_RESUME
        self.assertEqual((resumed.shutdown, resumed.shutdown_reason, resumed.running), (False, None, True))
        self.assertEqual(self.fired(), 0)  # a resume announces nothing
        self.now += 0.5
        self.hv.shutdown(domid, ShutdownReason.SUSPEND)
        self.assertEqual(self.fired(), 1)
        self.assertGreater(self.hv.get(domid).cpu_time_ns, suspended)

    def test_resuming_a_domain_that_is_not_shut_down_changes_nothing(self) -> None:
        domain = self.guest(paused=False)
        self.assertEqual(self.hv.resume(domain.domid), self.hv.get(domain.domid))

    def test_domains_never_introduced_fire_nothing(self) -> None:
        domid = self.guest(introduce=False).domid
        self.hv.shutdown(domid, ShutdownReason.POWEROFF)
        self.hv.destroy(domid)
        self.assertEqual(self.fired(), 0)

    def test_a_shutdown_seen_before_introduction_fires_at_the_next_scan(self) -> None:
        late = self.guest("late", introduce=False).domid
        self.hv.shutdown(late, ShutdownReason.POWEROFF)
        self.store.introduce(late)
        other = self.guest("other", introduce=False).domid
        self.hv.shutdown(other, ShutdownReason.POWEROFF)  # raises VIRQ_DOM_EXC
        self.assertEqual(self.fired(), 1)

    def test_destroy_fires_release_domain_and_releases_the_domain(self) -> None:
        domid = self.guest().domid
        self.hv.destroy(domid)
        self.assertEqual(self.fired(), 1)
        self.assertFalse(self.store.is_introduced(domid))

    def test_destroy_after_shutdown_fires_once_more(self) -> None:
        domid = self.guest().domid
        self.hv.shutdown(domid, ShutdownReason.POWEROFF)
        self.assertEqual(self.fired(), 1)
        self.hv.destroy(domid)
        self.assertEqual(self.fired(), 1)

    def test_a_gone_domain_that_was_never_introduced_loses_its_nodes_silently(self) -> None:
        domid = self.guest(introduce=False).domid
        path = f"/local/domain/{domid}/data"
        self.store.write(path, b"x")
        self.store.set_perms(path, [f"n{domid}"])  # the domain owns it
        self.hv.destroy(domid)
        self.assertEqual(self.fired(), 0)
        self.assertFalse(self.store.exists(path))


class DestroyTests(HostTestCase):
    def test_destroy_makes_the_domain_dying_then_gone(self) -> None:
        domid = self.guest().domid
        seen: List[Tuple[int, DomainChange, bool]] = []
        self.hv.subscribe(lambda d, what: seen.append((d.domid, what, d.dying)))
        self.hv.destroy(domid)
        self.assertEqual(
            seen, [(domid, DomainChange.DYING, True), (domid, DomainChange.DESTROYED, True)]
        )
        self.assertEqual(self.hv.getinfolist(domid, 1), [])

    def test_a_dying_domain_is_listed_with_the_dying_flag_until_its_delay_ends(self) -> None:
        clock = Clock()
        hv = Hypervisor(self.store, call_later=clock.callLater, dying_delay=0.5)
        domid = hv.create_domain("g").domid
        hv.destroy(domid)
        self.assertEqual(hv.get(domid).flags & 0xFFFF, DOMINF_DYING | DOMINF_PAUSED)
        clock.advance(0.5)
        self.assertRaises(NoSuchDomain, hv.get, domid)

    def test_destroying_a_dying_domain_succeeds_and_does_nothing(self) -> None:
        clock = Clock()
        hv = Hypervisor(self.store, call_later=clock.callLater, dying_delay=0.5)
        domid = hv.create_domain("g").domid
        hv.destroy(domid)
        hv.destroy(domid)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0.5)

    def test_destroy_many_is_one_burst_seen_whole_by_the_first_watch_event(self) -> None:
        domids = [self.guest(f"g{i}").domid for i in range(5)]
        self.hv.destroy_many(domids)
        self.assertGreaterEqual(self.fired(), 1)
        self.assertEqual([d.domid for d in self.seen_in_first_release], [0])

    def test_destroy_many_changes_nothing_if_any_domid_is_bad(self) -> None:
        domid = self.guest().domid
        self.assertRaises(NoSuchDomain, self.hv.destroy_many, [domid, 99])
        self.assertRaises(InvalidOperation, self.hv.destroy_many, [domid, 0])
        self.assertFalse(self.hv.get(domid).dying)

    def test_a_positive_dying_delay_needs_call_later(self) -> None:
        self.assertRaises(ValueError, Hypervisor, self.store, dying_delay=1)


class GetinfolistTests(HostTestCase):
    def test_getinfolist_is_sorted_by_domid_from_first(self) -> None:
        for domid in (9, 3, 5):
            self.guest(f"g{domid}", domid=domid)
        self.assertEqual([d.domid for d in self.hv.getinfolist(4, 10)], [5, 9])
        self.assertEqual([d.domid for d in self.hv.getinfolist(0, 10)], [0, 3, 5, 9])

    def test_getinfolist_returns_at_most_max_domains(self) -> None:
        for i in range(5):
            self.guest(f"g{i}")
        self.assertEqual([d.domid for d in self.hv.getinfolist(1, 2)], [1, 2])
        self.assertEqual(self.hv.getinfolist(1, 0), [])

    def test_getinfolist_past_the_last_domain_is_empty(self) -> None:
        self.assertEqual(self.hv.getinfolist(1, 10), [])

    def test_negative_arguments_are_refused(self) -> None:
        self.assertRaises(InvalidOperation, self.hv.getinfolist, -1, 1)
        self.assertRaises(InvalidOperation, self.hv.getinfolist, 0, -1)


class StateTests(HostTestCase):
    def test_a_blocked_domain_is_flagged_blocked_not_running(self) -> None:
        domid = self.guest(paused=False).domid
        self.assertEqual(self.hv.set_blocked(domid, True).flags & 0xFFFF, DOMINF_BLOCKED)

    def test_cpu_time_accrues_per_vcpu_while_running_only(self) -> None:
        domid = self.guest(paused=False, vcpus=2).domid
        self.now += 1.5
        self.hv.pause(domid)
        self.now += 10
        self.hv.unpause(domid)
        self.assertEqual(self.hv.get(domid).cpu_time_ns, 3_000_000_000)

    def test_hvm_parameters_are_zero_until_set_and_pv_domains_have_none(self) -> None:
        domid = self.guest("h", type="hvm").domid
        self.assertEqual(self.hv.hvm_param_get(domid, 0), 0)
        self.hv.set_hvm_param(domid, 0, 0x2000000000000040)
        self.assertEqual(self.hv.hvm_param_get(domid, 0), 0x2000000000000040)
        self.assertRaises(InvalidOperation, self.hv.hvm_param_get, self.guest("p").domid, 0)

    def test_snapshots_never_change_after_they_are_handed_out(self) -> None:
        before = self.guest()
        self.hv.unpause(before.domid)
        self.assertTrue(before.paused)


class SubscriptionTests(HostTestCase):
    def test_subscribers_see_every_change_until_unsubscribed(self) -> None:
        seen: List[DomainChange] = []
        handle = self.hv.subscribe(lambda d, what: seen.append(what))
        domid = self.guest().domid
        self.hv.unpause(domid)
        self.hv.shutdown(domid, ShutdownReason.POWEROFF)
        self.hv.unsubscribe(handle)
        self.hv.destroy(domid)
        self.assertEqual(
            seen, [DomainChange.CREATED, DomainChange.UNPAUSED, DomainChange.SHUTDOWN]
        )

    def test_a_failing_subscriber_is_logged_and_does_not_stop_the_change(self) -> None:
        events: list = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.hv.subscribe(lambda d, what: 1 / 0)
        domid = self.guest().domid
        self.assertEqual(self.hv.get(domid).domid, domid)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
