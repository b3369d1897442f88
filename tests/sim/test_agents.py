"""
The simulated guests, backends and QEMU (L{txlibxl.sim.agents}): how each
answers what libxl writes.  The store schedules its watch callbacks on a
L{MemoryReactorClock}, so every reaction happens only when the clock runs.
"""
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from txlibxl.sim.agents import CALLBACK_VIA_VECTOR, DELAY, IGNORE, Agents
from txlibxl.sim.errors import BadRequest, NoSuchDomain
from txlibxl.sim.hypervisor import HostInfo, Hypervisor, ShutdownReason
from txlibxl.sim.store import Store
from txlibxl.sim.toolstack import DomainSpec, Toolstack


class _Case(TestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.store = Store(schedule=lambda f: self.clock.callLater(0, f))
        self.hv = Hypervisor(self.store, host=HostInfo(total_memory_kb=1 << 40))
        self.toolstack = Toolstack(self.store, self.hv)
        self.toolstack.setup_dom0()
        self.agents = Agents(self.store, self.hv, self.clock)
        self.addCleanup(self.assertReactorClean)
        self.addCleanup(self.agents.stop_all)

    def assertReactorClean(self) -> None:
        self.settle()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def settle(self, seconds: float = 0.0) -> None:
        """Run every call due within C{seconds}, and what they schedule."""
        self.clock.advance(seconds)
        for _ in range(20):
            if not any(c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls()):
                return
            self.clock.advance(0)

    def start(self, paused: bool = False, **args):
        args.setdefault("name", "web1")
        record = self.toolstack.create(DomainSpec.from_args(args))
        self.agents.start(record)
        if not paused:
            self.hv.unpause(record.domid)
        self.settle()
        return record

    def read(self, path: str):
        return self.store.read(path).decode() if self.store.exists(path) else None

    def request(self, record, what: str) -> None:
        """What libxl_domain_shutdown/reboot write."""
        self.store.write("/local/domain/%d/control/shutdown" % record.domid, what.encode())

    def shutdown_node(self, record):
        return self.read("/local/domain/%d/control/shutdown" % record.domid)


class GuestBootTests(_Case):
    def test_a_running_guest_advertises_its_shutdown_features_as_itself(self) -> None:
        record = self.start()
        for feature in ("feature-poweroff", "feature-reboot", "feature-suspend"):
            path = "/local/domain/%d/control/%s" % (record.domid, feature)
            self.assertEqual(self.read(path), "1")
            self.assertEqual(self.store.get_perms(path), ["n%d" % record.domid])

    def test_a_paused_guest_boots_when_first_unpaused(self) -> None:
        record = self.start(paused=True)
        path = "/local/domain/%d/control/feature-poweroff" % record.domid
        self.assertEqual(self.read(path), "")
        self.hv.unpause(record.domid)
        self.settle()
        self.assertEqual(self.read(path), "1")

    def test_an_hvm_guest_sets_its_callback_irq_as_pv_drivers_do(self) -> None:
        record = self.start(type="hvm")
        self.assertEqual(self.hv.hvm_param_get(record.domid, 0), CALLBACK_VIA_VECTOR)


class GuestShutdownTests(_Case):
    def test_poweroff_is_acknowledged_and_the_guest_powers_off(self) -> None:
        record = self.start()
        self.request(record, "poweroff")
        self.settle()
        self.assertEqual(self.shutdown_node(record), "")
        domain = self.hv.get(record.domid)
        self.assertEqual((domain.shutdown, domain.shutdown_reason), (True, ShutdownReason.POWEROFF))

    def test_each_request_ends_in_its_shutdown_reason(self) -> None:
        expected = {
            "poweroff": ShutdownReason.POWEROFF,
            "halt": ShutdownReason.POWEROFF,
            "reboot": ShutdownReason.REBOOT,
            "suspend": ShutdownReason.SUSPEND,
        }
        for i, (what, reason) in enumerate(sorted(expected.items())):
            record = self.start(name="g%d" % i)
            self.request(record, what)
            self.settle()
            self.assertEqual(self.hv.get(record.domid).shutdown_reason, reason, what)

    def test_the_acknowledgement_is_written_as_the_guest(self) -> None:
        record = self.start()
        # Only the guest (or dom0) could clear a node the guest owns; a
        # write as another domain is refused, so the ack is the guest's.
        self.request(record, "poweroff")
        self.settle()
        self.assertEqual(self.store.get_perms("/local/domain/%d/control/shutdown" % record.domid), ["n%d" % record.domid])
        self.assertEqual(self.shutdown_node(record), "")

    def test_an_unknown_request_is_left_unacknowledged(self) -> None:
        record = self.start()
        self.request(record, "dance")
        self.settle()
        self.assertEqual(self.shutdown_node(record), "dance")
        self.assertFalse(self.hv.get(record.domid).shutdown)

    def test_nothing_happens_before_the_reactor_runs(self) -> None:
        record = self.start()
        self.request(record, "poweroff")
        self.assertEqual(self.shutdown_node(record), "poweroff")
        self.assertFalse(self.hv.get(record.domid).shutdown)
        self.settle()

    def test_a_paused_guest_answers_once_unpaused(self) -> None:
        record = self.start()
        self.hv.pause(record.domid)
        self.request(record, "reboot")
        self.settle()
        self.assertEqual(self.shutdown_node(record), "reboot")
        self.hv.unpause(record.domid)
        self.settle()
        self.assertEqual(self.shutdown_node(record), "")
        self.assertEqual(self.hv.get(record.domid).shutdown_reason, ShutdownReason.REBOOT)

    def test_a_shut_down_guest_never_answers_again(self) -> None:
        record = self.start()
        self.hv.shutdown(record.domid, ShutdownReason.CRASH)
        self.request(record, "poweroff")
        self.settle()
        self.assertEqual(self.shutdown_node(record), "poweroff")
        self.assertEqual(self.hv.get(record.domid).shutdown_reason, ShutdownReason.CRASH)

    def test_an_ignoring_guest_never_answers(self) -> None:
        record = self.start()
        self.agents.guest(record.domid).set_behaviour(IGNORE)
        self.request(record, "poweroff")
        self.settle(120)
        self.assertEqual(self.shutdown_node(record), "poweroff")
        self.assertFalse(self.hv.get(record.domid).shutdown)

    def test_a_delaying_guest_answers_after_its_delay(self) -> None:
        record = self.start()
        self.agents.guest(record.domid).set_behaviour(DELAY, 5)
        self.request(record, "poweroff")
        self.settle()
        self.settle(4.9)
        self.assertEqual(self.shutdown_node(record), "poweroff")
        self.assertFalse(self.hv.get(record.domid).shutdown)
        self.settle(0.1)
        self.assertEqual(self.shutdown_node(record), "")
        self.assertTrue(self.hv.get(record.domid).shutdown)

    def test_clearing_faults_makes_guests_answer_again(self) -> None:
        record = self.start()
        self.agents.guest(record.domid).set_behaviour(IGNORE)
        self.agents.clear_faults()
        self.request(record, "poweroff")
        self.settle()
        self.assertTrue(self.hv.get(record.domid).shutdown)

    def test_a_destroyed_guests_agents_are_gone(self) -> None:
        record = self.start(disks=[{"vdev": "xvda"}])
        self.hv.destroy(record.domid)
        self.assertRaises(NoSuchDomain, self.agents.guest, record.domid)
        self.settle()


class BackendTests(_Case):
    def setUp(self) -> None:
        super().setUp()
        self.record = self.start(disks=[{"vdev": "xvda"}], vifs=1)
        self.backends = [d.backend for d in self.record.devices if d.kind in ("vbd", "vif")]

    def close(self, backend: str, online: bytes = b"0") -> None:
        """What libxl's device removal writes (in one transaction)."""
        self.store.write(backend + "/online", online)
        self.store.write(backend + "/state", b"5")

    def test_a_closing_offline_backend_reaches_closed(self) -> None:
        for backend in self.backends:
            self.close(backend)
        self.settle()
        self.assertEqual([self.read(b + "/state") for b in self.backends], ["6", "6"])

    def test_a_closing_backend_still_online_stays_closing(self) -> None:
        self.close(self.backends[0], online=b"1")
        self.settle()
        self.assertEqual(self.read(self.backends[0] + "/state"), "5")

    def test_a_slow_backend_takes_its_time(self) -> None:
        self.agents.backends.close_delay = 3
        self.close(self.backends[0])
        self.settle()
        self.settle(2.9)
        self.assertEqual(self.read(self.backends[0] + "/state"), "5")
        self.settle(0.1)
        self.assertEqual(self.read(self.backends[0] + "/state"), "6")

    def test_a_removed_backend_is_left_alone(self) -> None:
        self.close(self.backends[0])
        self.store.rm(self.backends[0])
        self.settle()
        self.assertFalse(self.store.exists(self.backends[0]))

    def test_pending_closes_are_dropped_with_the_domain(self) -> None:
        self.agents.backends.close_delay = 3
        self.close(self.backends[0])
        self.settle()
        self.agents.stop(self.record.domid)
        self.settle(5)
        self.assertEqual(self.read(self.backends[0] + "/state"), "5")


class EjectTests(_Case):
    def test_eject_writes_the_frontends_eject_node_as_qemu_does(self) -> None:
        record = self.start(disks=[{"vdev": "hdc", "cdrom": True}])
        self.agents.device_model.eject(record, "hdc")
        self.assertEqual(self.read("/local/domain/%d/device/vbd/5632/eject" % record.domid), "eject")

    def test_only_a_cdrom_can_be_ejected(self) -> None:
        record = self.start(disks=[{"vdev": "xvda"}])
        self.assertRaises(BadRequest, self.agents.device_model.eject, record, "xvda")
        self.assertRaises(BadRequest, self.agents.device_model.eject, record, "hdc")

    def test_ejecting_from_a_removed_frontend_is_refused(self) -> None:
        record = self.start(disks=[{"vdev": "hdc", "cdrom": True}])
        self.store.rm("/local/domain/%d/device" % record.domid)
        self.assertRaises(NoSuchDomain, self.agents.device_model.eject, record, "hdc")
