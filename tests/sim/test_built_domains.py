"""
The agents of a domain a toolstack builds (L{txlibxl.sim.built_domains},
L{txlibxl.sim.xenbus}): how dom0's backends, xenconsoled and the guest's
drivers answer what libxl writes.  The test plays libxl's writes; the
store schedules watch callbacks on a L{MemoryReactorClock}.
"""
import uuid

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from txlibxl.sim.agents import Agents
from txlibxl.sim.errors import NoSuchDomain
from txlibxl.sim.hypervisor import HostInfo, Hypervisor
from txlibxl.sim.store import Store

ANY = 0x7FF4


class _Case(TestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.store = Store(schedule=lambda f: self.clock.callLater(0, f))
        self.hv = Hypervisor(self.store, host=HostInfo(total_memory_kb=1 << 30))
        self.agents = Agents(self.store, self.hv, self.clock)
        self.addCleanup(self.agents.stop_all)
        self.domid = self.build()

    def build(self, vcpus: int = 2) -> int:
        """What libxl's domain make and build do, as far as agents care."""
        domain = self.hv.createdomain(ANY, 0, uuid.uuid4().bytes, vcpus)
        self.agents.start_built(domain)
        self.hv.set_max_memory(domain.domid, 263168)
        self.hv.populate(domain.domid, 65536)
        dom = "/local/domain/%d" % domain.domid
        self.store.write(dom, b"")
        self.store.set_perms(dom, ["n0", "r%d" % domain.domid])
        # libxl's rwperm nodes: the guest writes them.
        for node in ("control/shutdown", "control/feature-poweroff", "control/feature-reboot",
                     "control/feature-suspend", "data"):
            self.store.write("%s/%s" % (dom, node), b"")
            self.store.set_perms("%s/%s" % (dom, node), ["n%d" % domain.domid])
        for vcpu in range(vcpus):
            self.store.write("%s/cpu/%d/availability" % (dom, vcpu), b"online")
        self.store.write(dom + "/memory/target", b"262144")
        self.settle()
        return domain.domid

    def settle(self) -> None:
        for _ in range(50):
            if not self.clock.getDelayedCalls():
                return
            self.clock.advance(0)

    def read(self, path: str):
        return self.store.read(path).decode() if self.store.exists(path) else None

    def add_device(self, kind: str = "vbd", devid: int = 51712) -> tuple:
        """libxl__device_generic_add: frontend and backend at state 1."""
        fe = "/local/domain/%d/device/%s/%d" % (self.domid, kind, devid)
        be = "/local/domain/0/backend/%s/%d/%d" % (kind, self.domid, devid)
        self.store.write(fe, b"")
        self.store.set_perms(fe, ["n%d" % self.domid, "r0"])
        for key, value in (("backend", be), ("backend-id", "0"), ("state", "1")):
            self.store.write("%s/%s" % (fe, key), value.encode())
        self.store.write(be, b"")
        self.store.set_perms(be, ["n0", "r%d" % self.domid])
        for key, value in (("frontend", fe), ("frontend-id", str(self.domid)), ("online", "1"), ("state", "1")):
            self.store.write("%s/%s" % (be, key), value.encode())
        self.settle()
        return fe, be

    def hotplug(self, be: str) -> None:
        """What the hotplug script writes (block: physical-device; vif-bridge:
        hotplug-status)."""
        self.store.write(be + "/physical-device", b"fe:0")
        self.store.write(be + "/hotplug-status", b"connected")
        self.settle()

    def states(self, fe: str, be: str) -> tuple:
        return self.read(be + "/state"), self.read(fe + "/state")

    def remove(self, be: str) -> None:
        """libxl__initiate_device_generic_remove."""
        self.store.write(be + "/online", b"0")
        self.store.write(be + "/state", b"5")
        self.settle()


class BackendTests(_Case):
    def test_a_new_backend_waits_for_its_frontend_even_while_the_guest_is_paused(self) -> None:
        fe, be = self.add_device()
        self.assertEqual(self.states(fe, be), ("2", "1"))

    def test_once_the_guest_runs_and_the_script_ran_both_ends_connect(self) -> None:
        fe, be = self.add_device()
        self.hotplug(be)
        self.hv.unpause(self.domid)
        self.settle()
        self.assertEqual(self.states(fe, be), ("4", "4"))
        self.assertEqual(self.read(fe + "/ring-ref"), "8")
        self.assertEqual(self.read(be + "/sectors"), "2097152")

    def test_a_device_added_to_a_running_guest_waits_in_initwait_for_its_script(self) -> None:
        self.hv.unpause(self.domid)
        self.settle()
        fe, be = self.add_device("vif", 1)
        self.assertEqual(self.states(fe, be), ("2", "3"))
        self.hotplug(be)
        self.assertEqual(self.states(fe, be), ("4", "4"))
        self.assertEqual(self.read(fe + "/tx-ring-ref"), "8")

    def test_the_frontend_writes_as_the_guest(self) -> None:
        fe, be = self.add_device()
        self.hotplug(be)
        self.hv.unpause(self.domid)
        self.settle()
        self.assertEqual(self.store.get_perms(fe + "/ring-ref")[0], "n%d" % self.domid)

    def test_removal_closes_a_running_frontend_then_the_backend(self) -> None:
        fe, be = self.add_device()
        self.hotplug(be)
        self.hv.unpause(self.domid)
        self.settle()
        self.remove(be)
        self.assertEqual(self.states(fe, be), ("6", "6"))

    def test_a_paused_guest_cannot_answer_so_the_backend_closes_alone(self) -> None:
        fe, be = self.add_device()
        self.remove(be)
        self.assertEqual(self.states(fe, be), ("6", "1"))

    def test_a_removed_frontend_lets_the_backend_close(self) -> None:
        fe, be = self.add_device()
        self.hv.unpause(self.domid)
        self.settle()
        self.store.rm(fe)
        self.remove(be)
        self.assertEqual(self.read(be + "/state"), "6")

    def test_closing_is_only_for_a_backend_taken_offline(self) -> None:
        fe, be = self.add_device()
        self.store.write(be + "/state", b"5")
        self.settle()
        self.assertEqual(self.read(be + "/state"), "5")

    def test_a_device_whose_backend_is_removed_is_forgotten(self) -> None:
        fe, be = self.add_device()
        self.store.rm(be)
        self.settle()
        self.assertEqual(self.agents.built(self.domid).backends.devices, {})

    def test_the_primary_console_connects_when_the_guest_runs(self) -> None:
        be = "/local/domain/0/backend/console/%d/0" % self.domid
        self.store.write(be + "/frontend", b"/local/domain/%d/console" % self.domid)
        self.store.write(be + "/online", b"1")
        self.store.write(be + "/state", b"1")
        self.settle()
        self.assertEqual(self.read(be + "/state"), "2")
        self.hv.unpause(self.domid)
        self.settle()
        self.assertEqual(self.read(be + "/state"), "4")


class ConsoleTests(_Case):
    def test_the_tty_appears_once_the_ring_is_there(self) -> None:
        console = "/local/domain/%d/console" % self.domid
        self.store.write(console + "/port", b"2")
        self.settle()
        self.assertIsNone(self.read(console + "/tty"))
        self.store.write(console + "/ring-ref", b"1048579")
        self.settle()
        self.assertEqual(self.read(console + "/tty"), "/dev/pts/sim%d" % self.domid)


class GuestResourceTests(_Case):
    def run_guest(self) -> None:
        self.hv.unpause(self.domid)
        self.settle()

    def test_the_balloon_follows_the_memory_target_while_the_guest_runs(self) -> None:
        self.store.write("/local/domain/%d/memory/target" % self.domid, b"131072")
        self.settle()
        self.assertEqual(self.hv.get(self.domid).memory_kb, 262144)
        self.run_guest()
        self.assertEqual(self.hv.get(self.domid).memory_kb, 131072)

    def test_vcpus_marked_offline_go_down_and_come_back(self) -> None:
        self.run_guest()
        path = "/local/domain/%d/cpu/1/availability" % self.domid
        self.store.write(path, b"offline")
        self.settle()
        self.assertEqual(self.hv.get(self.domid).online_vcpus, 1)
        self.store.write(path, b"online")
        self.settle()
        self.assertEqual(self.hv.get(self.domid).online_vcpus, 2)

    def test_the_guest_answers_control_shutdown_as_a_sim_made_one(self) -> None:
        self.run_guest()
        self.store.write("/local/domain/%d/control/shutdown" % self.domid, b"poweroff")
        self.settle()
        domain = self.hv.get(self.domid)
        self.assertEqual((domain.shutdown, self.read("/local/domain/%d/control/shutdown" % self.domid)),
                         (True, ""))


class LifetimeTests(_Case):
    def test_a_destroyed_domain_leaves_no_agent_and_no_watch(self) -> None:
        self.add_device()
        watches_before_domain = self.store.watch_count("/local/domain/0/backend/vbd/%d" % self.domid)
        self.assertEqual(watches_before_domain, 1)
        self.hv.destroy(self.domid)
        self.settle()
        with self.assertRaises(NoSuchDomain):
            self.agents.built(self.domid)
        for path in ("/local/domain/0/backend/vbd/%d" % self.domid,
                     "/local/domain/%d/console/ring-ref" % self.domid,
                     "/local/domain/%d/memory/target" % self.domid,
                     "/local/domain/%d/device/vbd/51712/state" % self.domid):
            self.assertEqual(self.store.watch_count(path), 0, path)
