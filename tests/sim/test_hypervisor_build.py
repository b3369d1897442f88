"""The hypercalls a toolstack's create path makes, as the simulated
hypervisor takes them: ``createdomain`` and what follows it."""
from __future__ import annotations

import errno
import uuid

from twisted.trial.unittest import TestCase

from txlibxl.sim.hypervisor import (
    DomainChange,
    DomainExists,
    HostInfo,
    Hypervisor,
    HypervisorError,
    InvalidDomainConfig,
    InvalidOperation,
    NoSuchDomain,
    OutOfMemory,
)
from txlibxl.sim.hypervisor.domctl import CDF_HAP, CDF_HVM, EMU_ALL, EMU_HVM, EMU_LAPIC
from txlibxl.sim.store import Store

HANDLE = uuid.UUID("6a8b1f2e-2f6c-4a53-9d2e-8d1f0b6e4c11")
ANY_DOMID = 0x7FF4  # what libxl passes for "any" (INVALID_DOMID)


class BuildTestCase(TestCase):
    def setUp(self) -> None:
        self.store = Store()
        self.hv = Hypervisor(self.store, host=HostInfo(total_memory_kb=16 * 1024 * 1024))
        self.changes = []
        self.hv.subscribe(lambda d, what: self.changes.append((d.domid, what)))

    def pv(self, domid: int = ANY_DOMID, vcpus: int = 2):
        return self.hv.createdomain(domid, 0, HANDLE.bytes, vcpus)


class CreatedomainTests(BuildTestCase):
    def test_a_new_domain_is_paused_has_no_memory_and_carries_its_handle(self) -> None:
        domain = self.pv()
        self.assertEqual((domain.paused, domain.memory_kb, domain.max_memory_kb), (True, 0, 0))
        self.assertEqual(domain.uuid, HANDLE)
        self.assertEqual((domain.vcpus, domain.online_vcpus), (2, 2))
        self.assertIn((domain.domid, DomainChange.CREATED), self.changes)

    def test_an_invalid_domid_lets_the_hypervisor_choose_the_next_free_one(self) -> None:
        self.assertEqual([self.pv().domid, self.pv(0).domid, self.pv(ANY_DOMID).domid], [1, 2, 3])

    def test_a_requested_domid_is_honoured(self) -> None:
        self.assertEqual(self.pv(42).domid, 42)

    def test_a_requested_domid_in_use_is_eexist(self) -> None:
        self.pv(7)
        with self.assertRaises(DomainExists) as caught:
            self.pv(7)
        self.assertEqual(caught.exception.errno, errno.EEXIST)

    def test_the_type_comes_from_the_flags_and_the_emulation_flags(self) -> None:
        pv = self.hv.createdomain(ANY_DOMID, 0, HANDLE.bytes, 1)
        pvh = self.hv.createdomain(ANY_DOMID, CDF_HVM | CDF_HAP, HANDLE.bytes, 1, emulation_flags=EMU_LAPIC)
        hvm = self.hv.createdomain(ANY_DOMID, CDF_HVM | CDF_HAP, HANDLE.bytes, 1, emulation_flags=EMU_HVM)
        self.assertEqual([d.type for d in (pv, pvh, hvm)], ["pv", "pvh", "hvm"])

    def test_emulation_a_type_cannot_have_is_eopnotsupp(self) -> None:
        for flags, emulation in ((0, EMU_LAPIC), (CDF_HVM, 0), (CDF_HVM, 1 << 3), (CDF_HVM, EMU_ALL)):
            with self.assertRaises(InvalidOperation) as caught:
                self.hv.createdomain(ANY_DOMID, flags, HANDLE.bytes, 1, emulation_flags=emulation)
            self.assertEqual(caught.exception.errno, errno.EOPNOTSUPP)

    def test_unknown_flags_and_bad_vcpu_counts_are_einval(self) -> None:
        for kwargs in ({"flags": 1 << 20, "max_vcpus": 1}, {"flags": 0, "max_vcpus": 0},
                       {"flags": 0, "max_vcpus": 129}):
            with self.assertRaises(InvalidDomainConfig):
                self.hv.createdomain(ANY_DOMID, kwargs["flags"], HANDLE.bytes, kwargs["max_vcpus"])

    def test_max_vcpus_cannot_exceed_what_createdomain_allowed(self) -> None:
        domid = self.pv(vcpus=2).domid
        self.hv.max_vcpus(domid, 2)
        with self.assertRaises(InvalidOperation):
            self.hv.max_vcpus(domid, 3)


class MemoryTests(BuildTestCase):
    def test_populating_within_the_limit_gives_the_domain_its_frames(self) -> None:
        domid = self.pv().domid
        self.hv.set_max_memory(domid, 263168)
        base = self.hv.populate(domid, 65536)
        domain = self.hv.get(domid)
        self.assertEqual((domain.memory_kb, domain.max_memory_kb, domain.mfn_base), (262144, 263168, base))
        self.assertGreater(base, 0)

    def test_two_domains_get_disjoint_frames(self) -> None:
        a, b = self.pv().domid, self.pv().domid
        for domid in (a, b):
            self.hv.set_max_memory(domid, 4096)
        base_a, base_b = self.hv.populate(a, 1024), self.hv.populate(b, 1024)
        self.assertGreaterEqual(abs(base_b - base_a), 1024)

    def test_populating_past_the_limit_is_enomem(self) -> None:
        domid = self.pv().domid
        self.hv.set_max_memory(domid, 4096)
        with self.assertRaises(OutOfMemory):
            self.hv.populate(domid, 1025)

    def test_the_balloon_follows_the_target_within_the_limit(self) -> None:
        domid = self.pv().domid
        self.hv.set_max_memory(domid, 8192)
        self.hv.populate(domid, 2048)
        self.assertEqual(self.hv.set_memory(domid, 4096).memory_kb, 4096)
        self.assertEqual(self.hv.set_memory(domid, 1 << 30).memory_kb, 8192)

    def test_the_limit_may_go_below_what_the_domain_has(self) -> None:
        domid = self.pv().domid
        self.hv.set_max_memory(domid, 8192)
        self.hv.populate(domid, 2048)
        domain = self.hv.set_max_memory(domid, 4096)
        self.assertEqual((domain.memory_kb, domain.max_memory_kb), (8192, 4096))


class EventChannelAndRingTests(BuildTestCase):
    def test_unbound_ports_are_the_lowest_free_ones(self) -> None:
        domid = self.pv().domid
        self.assertEqual([self.hv.evtchn_alloc_unbound(domid, 0) for _ in range(3)], [1, 2, 3])

    def test_a_port_for_a_missing_remote_domain_is_esrch(self) -> None:
        domid = self.pv().domid
        with self.assertRaises(NoSuchDomain):
            self.hv.evtchn_alloc_unbound(domid, 99)

    def test_xenstored_can_introduce_a_domain_whose_ring_is_granted_and_port_unbound(self) -> None:
        domid = self.pv().domid
        port = self.hv.evtchn_alloc_unbound(domid, 0)
        self.hv.seed_grant_table(domid, 0x1234, 0x1235)
        self.hv.xenstore_ring(domid, port)

    def test_xenstored_cannot_introduce_without_ring_port_or_domain(self) -> None:
        domid = self.pv().domid
        port = self.hv.evtchn_alloc_unbound(domid, 0)

        def refused(target: int, p: int) -> int:
            with self.assertRaises(HypervisorError) as caught:
                self.hv.xenstore_ring(target, p)
            return caught.exception.errno

        self.assertEqual(refused(domid, port), errno.EINVAL)  # no ring granted yet
        self.hv.seed_grant_table(domid, 0x1234, 0x1235)
        self.assertEqual(refused(domid, port + 1), errno.EINVAL)  # not an unbound port
        self.assertEqual(refused(77, 1), errno.ENOENT)


class VcpuTests(BuildTestCase):
    def test_the_guest_takes_vcpus_down_and_up_but_never_vcpu0(self) -> None:
        domid = self.pv(vcpus=4).domid
        self.hv.set_vcpu_online(domid, 3, False)
        self.hv.set_vcpu_online(domid, 0, False)
        self.assertEqual(self.hv.get(domid).online_vcpus, 3)
        self.hv.set_vcpu_online(domid, 3, True)
        self.assertEqual(self.hv.get(domid).online_vcpus, 4)

    def test_a_vcpu_beyond_the_domains_is_einval(self) -> None:
        domid = self.pv(vcpus=2).domid
        with self.assertRaises(InvalidOperation):
            self.hv.set_vcpu_online(domid, 2, False)
