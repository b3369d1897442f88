"""
The host's side of what a save carries: the ``guest_marker`` and
``guest_image`` control ops, what ``info`` reports of a domain's memory,
and the guest agent answering again once a suspended domain is resumed
(:class:`~txlibxl.sim.host.SimHost` on a MemoryReactorClock).
"""
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from txlibxl.sim.errors import BadRequest, Conflict, NoSuchDomain
from txlibxl.sim.host import SimHost


class GuestMemoryOpTests(TestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.host = SimHost(self.clock)
        self.addCleanup(self.host.close)
        self.domid = self.host.create_domain(name="web1", memory_kb=131072, vcpus=2)["domid"]

    def settle(self) -> None:
        for _ in range(20):
            self.clock.advance(0)

    def test_info_reports_memory_vcpus_the_default_image_and_no_marker(self) -> None:
        info = self.host.info(domid=self.domid)
        self.assertEqual((info["memory_kb"], info["vcpus"], info["online_vcpus"]), (131072, 2, 2))
        self.assertEqual((info["image_kb"], info["marker"]), (1024, ""))

    def test_the_marker_a_running_guest_writes_shows_in_info(self) -> None:
        self.assertEqual(self.host.guest_marker(domid=self.domid, value="été"), {"domid": self.domid, "marker": "été"})
        self.assertEqual(self.host.info(domid=self.domid)["marker"], "été")

    def test_a_marker_is_a_short_string_written_by_a_running_guest(self) -> None:
        self.assertRaises(BadRequest, self.host.guest_marker, domid=self.domid, value=5)
        self.assertRaises(BadRequest, self.host.guest_marker, domid=self.domid, value="x" * 1025)
        self.assertRaises(NoSuchDomain, self.host.guest_marker, domid=99, value="x")
        self.host.pause(domid=self.domid)
        self.assertRaises(Conflict, self.host.guest_marker, domid=self.domid, value="x")

    def test_the_image_size_is_set_within_the_domains_memory(self) -> None:
        self.assertEqual(self.host.guest_image(domid=self.domid, kb=65536)["image_kb"], 65536)
        self.assertEqual(self.host.info(domid=self.domid)["image_kb"], 65536)
        self.assertRaises(Conflict, self.host.guest_image, domid=self.domid, kb=262144)
        self.assertRaises(BadRequest, self.host.guest_image, domid=self.domid, kb="4")

    def test_a_resumed_guest_answers_shutdown_requests_again(self) -> None:
        self.settle()
        self.host.store.write("/local/domain/%d/control/shutdown" % self.domid, b"suspend")
        self.settle()
        self.assertEqual(self.host.info(domid=self.domid)["shutdown_reason"], "suspend")
        self.host.hypervisor.resume(self.domid)
        self.host.store.write("/local/domain/%d/control/shutdown" % self.domid, b"poweroff")
        self.settle()
        info = self.host.info(domid=self.domid)
        self.assertEqual((info["state"], info["shutdown_reason"]), ("shutdown", "poweroff"))
        self.assertEqual(self.host.store.read("/local/domain/%d/control/shutdown" % self.domid), b"")

    def test_a_resumed_guest_keeps_its_fault(self) -> None:
        self.settle()
        self.host.shutdown(domid=self.domid, reason="suspend")
        self.host.fault(kind="guest_ignore_shutdown", domid=self.domid)
        self.host.hypervisor.resume(self.domid)
        self.host.store.write("/local/domain/%d/control/shutdown" % self.domid, b"poweroff")
        self.settle()
        self.assertEqual(self.host.info(domid=self.domid)["state"], "running")
