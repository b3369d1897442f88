"""
The simulated hypervisor's side of save and restore
(:mod:`txlibxl.sim.hypervisor.saverestore`): the memory image and the
marker, log-dirty rounds, what a restore puts into the new domain, and
``resumedomain`` with xenstored's ``RESUME``.
"""
from __future__ import annotations

import errno
import uuid

from twisted.trial.unittest import TestCase

from txlibxl.sim.hypervisor import (
    DomainChange,
    HostInfo,
    Hypervisor,
    InvalidOperation,
    OutOfMemory,
    ShutdownReason,
)
from txlibxl.sim.hypervisor.domctl import CDF_HAP, CDF_HVM, EMU_LAPIC
from txlibxl.sim.hypervisor.saverestore import DEFAULT_IMAGE_KB
from txlibxl.sim.savestream import SimGuest, decode_marker_page, encode_marker_page
from txlibxl.sim.store import Store

HANDLE = uuid.UUID("6a8b1f2e-2f6c-4a53-9d2e-8d1f0b6e4c11")
ANY = 0x7FF4


class SaveTestCase(TestCase):
    def setUp(self) -> None:
        self.store = Store(on_resume=lambda domid: self.hv.xenstored_resume(domid))
        self.hv = Hypervisor(self.store, host=HostInfo(total_memory_kb=16 * 1024 * 1024))
        self.changes = []
        self.hv.subscribe(lambda d, what: self.changes.append((d.domid, what)))

    def built(self, memory_kb: int = 262144, vcpus: int = 2, pvh: bool = False) -> int:
        """A domain as libxl builds it: created, populated, rings seeded,
        running."""
        if pvh:
            domain = self.hv.createdomain(ANY, CDF_HVM | CDF_HAP, HANDLE.bytes, vcpus, emulation_flags=EMU_LAPIC)
        else:
            domain = self.hv.createdomain(ANY, 0, HANDLE.bytes, vcpus)
        self.hv.set_max_memory(domain.domid, memory_kb + 1024)
        base = self.hv.populate(domain.domid, memory_kb // 4)
        offset = 0 if pvh else base
        self.hv.seed_grant_table(domain.domid, offset + 0xFEFFF if pvh else base + 3, offset + 0xFEFFC if pvh else base + 2)
        self.hv.unpause(domain.domid)
        return domain.domid

    def fresh(self, pvh: bool = False, vcpus: int = 2, max_kb: int = 263168) -> int:
        """The domain libxl creates for a restore: paused, no memory."""
        flags = CDF_HVM | CDF_HAP if pvh else 0
        domain = self.hv.createdomain(ANY, flags, HANDLE.bytes, vcpus, emulation_flags=EMU_LAPIC if pvh else 0)
        self.hv.set_max_memory(domain.domid, max_kb)
        return domain.domid


class ImageTests(SaveTestCase):
    def test_the_image_is_1_mib_by_default_and_never_more_than_the_memory(self) -> None:
        domid = self.built()
        self.assertEqual(self.hv.image_pages(domid), DEFAULT_IMAGE_KB // 4)
        small = self.built(memory_kb=512)
        self.assertEqual(self.hv.image_pages(small), 128)

    def test_the_image_size_is_set_within_the_memory(self) -> None:
        domid = self.built()
        self.hv.set_image_size(domid, 65536)
        self.assertEqual(self.hv.image_pages(domid), 16384)
        for bad in (0, 6, 262148):
            self.assertRaises(InvalidOperation, self.hv.set_image_size, domid, bad)

    def test_only_a_running_guest_writes_its_marker(self) -> None:
        domid = self.built()
        self.hv.set_marker(domid, b"one")
        self.assertEqual(self.hv.guest_memory(domid).marker, b"one")
        self.hv.pause(domid)
        self.assertRaises(InvalidOperation, self.hv.set_marker, domid, b"two")
        self.assertRaises(InvalidOperation, self.hv.set_marker, self.fresh(), b"two")
        self.assertRaises(InvalidOperation, self.hv.set_marker, domid, b"x" * 1025)

    def test_the_seed_comes_from_the_uuid_unless_restored(self) -> None:
        a, b = self.built(), self.built()
        self.assertEqual(self.hv.image_seed(a), self.hv.image_seed(b))
        self.assertNotEqual(self.hv.image_seed(a), 0)


class SaveTests(SaveTestCase):
    def test_save_begin_describes_the_domain_and_its_rings(self) -> None:
        domid = self.built(vcpus=3)
        self.hv.set_marker(domid, b"before")
        described, page0 = self.hv.save_begin(domid, live=False)
        self.assertEqual((described.type, described.uuid, described.vcpus), ("pv", HANDLE, 3))
        self.assertEqual((described.image_pages, described.store_pfn, described.console_pfn), (256, 2, 3))
        self.assertEqual(described.max_memory_kb, 263168)
        self.assertEqual(decode_marker_page(page0), b"before")

    def test_a_domain_without_memory_cannot_be_saved(self) -> None:
        self.assertRaises(InvalidOperation, self.hv.save_begin, self.fresh(), False)

    def test_log_dirty_rounds_shrink_fourfold_and_the_last_after_suspend_too(self) -> None:
        domid = self.built()
        self.hv.set_image_size(domid, 65536)
        self.hv.save_begin(domid, live=True)
        rounds = [self.hv.logdirty_clean(domid) for _ in range(3)]
        self.assertEqual([(count, stride) for count, stride, _ in rounds], [(4095, 4), (1023, 16), (255, 64)])
        self.assertRaises(InvalidOperation, self.hv.logdirty_clean, domid, final=True)
        self.hv.shutdown(domid, ShutdownReason.SUSPEND)
        final = self.hv.logdirty_clean(domid, final=True)
        self.assertEqual(final[:2], (63, 256))

    def test_the_marker_page_is_dirty_once_after_the_marker_changes(self) -> None:
        domid = self.built()
        self.hv.save_begin(domid, live=True)
        self.assertIsNone(self.hv.logdirty_clean(domid)[2])
        self.hv.set_marker(domid, b"during")
        count, stride, page0 = self.hv.logdirty_clean(domid)
        self.assertEqual((count, decode_marker_page(page0)), ((255 // 16) + 1, b"during"))
        self.assertIsNone(self.hv.logdirty_clean(domid)[2])

    def test_log_dirty_is_only_on_during_a_live_save(self) -> None:
        domid = self.built()
        self.hv.save_begin(domid, live=False)
        self.assertRaises(InvalidOperation, self.hv.logdirty_clean, domid)
        self.hv.save_begin(domid, live=True)
        self.hv.logdirty_off(domid)
        self.assertRaises(InvalidOperation, self.hv.logdirty_clean, domid)

    def test_save_end_has_the_suspended_guests_memory_and_vcpus(self) -> None:
        domid = self.built(vcpus=4)
        self.hv.set_vcpu_online(domid, 2, False)
        self.hv.set_memory(domid, 131072)
        self.hv.save_begin(domid, live=True)
        self.hv.shutdown(domid, ShutdownReason.SUSPEND)
        guest, page0 = self.hv.save_end(domid)
        self.assertEqual((guest.memory_kb, guest.online_vcpus), (131072, frozenset({0, 1, 3})))
        self.assertIsNone(self.hv.guest_memory(domid).logdirty_rounds)


class RestoreTests(SaveTestCase):
    def saved(self, **kw):
        domid = self.built(**kw)
        self.hv.set_marker(domid, b"carried")
        described, _ = self.hv.save_begin(domid, live=False)
        self.hv.shutdown(domid, ShutdownReason.SUSPEND)
        guest, page0 = self.hv.save_end(domid)
        return domid, described, guest, page0

    def test_a_restore_recreates_memory_vcpus_image_and_marker_in_the_new_domain(self) -> None:
        old, described, guest, page0 = self.saved()
        self.hv.destroy(old)
        new = self.fresh()
        store, console = self.hv.restore(new, described, guest, page0, 1, 2)
        domain = self.hv.get(new)
        self.assertEqual((domain.memory_kb, domain.online_vcpus), (262144, 2))
        self.assertEqual(self.hv.guest_memory(new).marker, b"carried")
        self.assertEqual(self.hv.image_pages(new), 256)
        self.assertEqual(self.hv.image_seed(new), described.seed)
        self.assertEqual((store, console), (domain.mfn_base + 2, domain.mfn_base + 3))
        self.assertEqual((domain.xenstore_gfn, domain.console_gfn), (store, console))
        self.assertTrue(domain.paused)

    def test_a_pvh_restore_sets_the_ring_parameters(self) -> None:
        old, described, guest, page0 = self.saved(pvh=True)
        new = self.fresh(pvh=True)
        store, console = self.hv.restore(new, described, guest, page0, 7, 8)
        self.assertEqual((store, console), (0xFEFFC, 0xFEFFF))
        params = self.hv.get(new).hvm_params
        self.assertEqual((params[1], params[2], params[17], params[18]), (0xFEFFC, 7, 0xFEFFF, 8))

    def test_a_restore_that_does_not_fit_changes_nothing(self) -> None:
        old, described, guest, page0 = self.saved(vcpus=4)
        cases = [
            (self.fresh(vcpus=2), described, guest, page0, errno.EINVAL),
            (self.fresh(pvh=True, vcpus=4), described, guest, page0, errno.EINVAL),
            (self.fresh(vcpus=4, max_kb=131072), described, guest, page0, errno.ENOMEM),
            (self.fresh(vcpus=4), described, guest, encode_marker_page(b"x")[:-1] + b"!", errno.EINVAL),
            (old, described, guest, page0, errno.EEXIST),
        ]
        for domid, d, g, p, code in cases:
            before = (self.hv.get(domid), self.hv.guest_memory(domid))
            with self.assertRaises((InvalidOperation, OutOfMemory)) as caught:
                self.hv.restore(domid, d, g, p, 1, 2)
            self.assertEqual(caught.exception.errno, code)
            self.assertEqual((self.hv.get(domid), self.hv.guest_memory(domid)), before)

    def test_offline_vcpus_come_back_offline(self) -> None:
        old, described, _, page0 = self.saved(vcpus=3)
        new = self.fresh(vcpus=3)
        self.hv.restore(new, described, SimGuest(262144, frozenset({0, 2})), page0, 1, 2)
        self.assertEqual(self.hv.get(new).offline_vcpus, frozenset({1}))


class ResumeTests(SaveTestCase):
    def introduced_and_suspended(self) -> int:
        domid = self.built()
        self.store.introduce(domid)
        fired = []
        self.store.watch("@releaseDomain", fired.append)
        self.hv.shutdown(domid, ShutdownReason.SUSPEND)
        self.fired = fired
        return domid

    def test_resume_runs_a_suspended_domain_again(self) -> None:
        domid = self.introduced_and_suspended()
        domain = self.hv.resume(domid)
        self.assertEqual((domain.shutdown, domain.shutdown_reason, domain.running), (False, None, True))
        self.assertIn((domid, DomainChange.RESUMED), self.changes)

    def test_after_xenstoreds_resume_the_next_shutdown_fires_release_domain_again(self) -> None:
        domid = self.introduced_and_suspended()
        self.hv.resume(domid)
        self.store.resume(domid)
        before = len(self.fired)
        self.hv.shutdown(domid, ShutdownReason.POWEROFF)
        self.assertEqual(len(self.fired), before + 1)

    def test_without_xenstoreds_resume_xenstored_does_not_announce_it_again(self) -> None:
        domid = self.introduced_and_suspended()
        self.hv.resume(domid)
        before = len(self.fired)
        self.hv.shutdown(domid, ShutdownReason.POWEROFF)
        self.assertEqual(len(self.fired), before)

    def test_resuming_a_running_domain_does_nothing_and_a_dying_one_is_refused(self) -> None:
        domid = self.built()
        self.assertEqual(self.hv.resume(domid), self.hv.get(domid))
        self.assertNotIn((domid, DomainChange.RESUMED), self.changes)
        self.assertRaises(InvalidOperation, self.hv.resume, 0)


class GoneTests(SaveTestCase):
    def test_what_a_save_carries_goes_with_the_domain(self) -> None:
        domid = self.built()
        self.hv.set_marker(domid, b"old")
        self.hv.set_image_size(domid, 8192)
        self.hv.destroy(domid)
        self.assertEqual(self.hv._guest_memory, {})
        again = self.hv.createdomain(domid, 0, HANDLE.bytes, 1)
        self.assertEqual(self.hv.guest_memory(again.domid).marker, b"")
