"""
Building and changing domains through a Context, against the real
libxenlight on a simulated host: configurations in libxl's JSON, create,
devices, memory, vCPUs, name, console; what a failed or cancelled create
leaves (nothing); and many creates at once.
"""
from __future__ import annotations

import copy
import os
import uuid
from typing import Any, Callable, Dict, List, Optional

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SkipTest

from txlibxl import errors
from txlibxl.events import ConsoleAvailable, DiskEject, DomainDeath
from txlibxl.operations import OperationCancelled

try:
    from txlibxl.testing import SimulatedHostTestCase
except ImportError as e:  # pragma: no cover - the fixture is part of the package
    raise SkipTest(f"txlibxl.testing is unavailable: {e}")


class BuildingTestCase(SimulatedHostTestCase):
    """
    A simulated host, a Context, a kernel and disk images for its guests.
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        from txlibxl.context import Context

        self.files = os.path.abspath(self.mktemp())
        os.makedirs(self.files)
        self.kernel = self.file("vmlinuz", b"\x7fELF simulated kernel")
        self.ctx = Context(reactor)
        self.addCleanup(self.ctx.close)

    def file(self, name: str, content: bytes = b"", size: int = 0) -> str:
        path = os.path.join(self.files, name)
        with open(path, "wb") as f:
            f.write(content)
            if size:
                f.truncate(size)
        return path

    def disk(self, vdev: str = "xvda") -> Dict[str, Any]:
        image = self.file(f"{vdev}-{uuid.uuid4().hex[:8]}.img", size=1 << 20)
        return {"pdev_path": image, "vdev": vdev, "format": "raw", "readwrite": 1}

    def config(self, name: str = "web1", type: str = "pv", memory_kb: int = 262144, vcpus: int = 2,
               disks: Optional[List[Dict[str, Any]]] = None, nics: Optional[List[Dict[str, Any]]] = None
               ) -> Dict[str, Any]:
        """A guest's configuration as ``xl -N create`` prints it (no UUID)."""
        return {
            "c_info": {"type": type, "name": name},
            "b_info": {
                "max_vcpus": vcpus,
                "max_memkb": memory_kb,
                "target_memkb": memory_kb,
                "kernel": self.kernel,
                f"type.{type}": {},
            },
            "disks": [self.disk()] if disks is None else disks,
            "nics": [{"devid": 0, "bridge": "xenbr0"}] if nics is None else nics,
        }

    @defer.inlineCallbacks
    def running(self, config: Optional[Dict[str, Any]] = None) -> Any:
        domid = yield self.ctx.create(config or self.config())
        yield self.ctx.unpause(domid)
        return domid

    @defer.inlineCallbacks
    def create_or_skip(self, config: Dict[str, Any]) -> Any:
        """
        create(), skipped if the simulated host lacks a call libxl makes
        for this guest: its stubs fail with ENOSYS or EOPNOTSUPP, which
        libxl reports (real Xen would not).
        """
        try:
            domid = yield self.ctx.create(config)
        except errors.LibxlError as e:
            if "Function not implemented" in e.message or "Operation not supported" in e.message:
                raise SkipTest(f"the simulated host does not serve this create yet; libxl said: {e.message}")
            raise
        return domid

    def guests(self) -> List[Any]:
        return [d for d in self.ctx.list_domains() if d.domid != 0]

    @defer.inlineCallbacks
    def until(self, condition: Callable[[], bool], seconds: float = 10.0) -> Any:
        for _ in range(int(seconds / 0.02)):
            if condition():
                return
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.fail("the condition was not met in time")

    @defer.inlineCallbacks
    def assertNothingLeft(self) -> Any:
        """No guest, and nothing of libxl's held: no operation, no kept C
        argument, no fd, no timer, no child."""
        yield self.until(lambda: not self.ctx.running_children)
        yield self.until(lambda: self.ctx.osevents.stats().timers == 0 and self.ctx.osevents.stats().fds == 0)
        self.assertEqual(self.guests(), [])
        self.assertEqual(self.ctx.operations_in_flight, 0)
        self.assertEqual(self.ctx._ctx.operations_kept, frozenset())


class CreateTests(BuildingTestCase):
    @defer.inlineCallbacks
    def test_a_pv_guest_is_created_paused_from_its_json_config(self) -> Any:
        domid = yield self.ctx.create(self.config("web1"))
        info = self.ctx.domain_info(domid)
        self.assertEqual((info.name, info.type, info.paused), ("web1", "pv", True))

    @defer.inlineCallbacks
    def test_a_good_create_logs_no_error(self) -> Any:
        # Checking the configuration probes libxl with values it refuses:
        # those refusals stay out of the log.
        from twisted.logger import LogLevel, globalLogPublisher

        logged: List[Any] = []

        def observer(event: Any) -> None:
            if event.get("log_level") in (LogLevel.error, LogLevel.critical):
                logged.append(event.get("text") or event.get("log_format"))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        config = self.config("quiet1")
        # Values at libxl's defaults, as xl prints them: each is probed.
        config.update(on_poweroff="destroy", on_reboot="restart")
        config["b_info"]["claim_mode"] = "False"
        yield self.ctx.create(config)
        self.assertEqual(logged, [])

    @defer.inlineCallbacks
    def test_a_pvh_guest_is_created_from_its_json_config(self) -> Any:
        domid = yield self.create_or_skip(self.config("pvh1", type="pvh"))
        info = self.ctx.domain_info(domid)
        # libxl reports PVH and HVM guests alike from the hypervisor's flags.
        self.assertEqual((info.name, info.type), ("pvh1", "hvm"))
        config = yield self.ctx.domain_config(domid)
        self.assertEqual(config["c_info"]["type"], "pvh")

    @defer.inlineCallbacks
    def test_the_console_report_comes_once_before_the_domid(self) -> Any:
        seen: List[Any] = []
        d = self.ctx.create(self.config(), on_console=seen.append)
        d.addCallback(lambda domid: seen.append(domid) or domid)
        domid = yield d
        uuid_ = self.ctx.domain_info(domid).uuid
        self.assertEqual(seen, [ConsoleAvailable(domid, uuid_), domid])

    @defer.inlineCallbacks
    def test_list_domains_and_domain_config_agree_with_the_config(self) -> Any:
        config = self.config("db", memory_kb=524288, vcpus=3, disks=[self.disk("xvda"), self.disk("xvdb")],
                             nics=[{"devid": 0, "mac": "00:16:3e:5e:00:01", "bridge": "xenbr0"}])
        domid = yield self.ctx.create(config)
        [listed] = self.guests()
        kept = yield self.ctx.domain_config(domid)
        self.assertEqual((listed.domid, listed.name, listed.uuid), (domid, "db", kept["c_info"]["uuid"]))
        self.assertEqual((listed.current_memkb, listed.vcpus_online), (524288, 3))
        self.assertEqual(kept["c_info"]["name"], "db")
        self.assertEqual((kept["b_info"]["max_memkb"], kept["b_info"]["max_vcpus"]), (524288, 3))
        self.assertEqual([d["vdev"] for d in kept["disks"]], ["xvda", "xvdb"])
        self.assertEqual([d["pdev_path"] for d in kept["disks"]], [d["pdev_path"] for d in config["disks"]])
        self.assertEqual([n["mac"] for n in kept["nics"]], ["00:16:3e:5e:00:01"])

    @defer.inlineCallbacks
    def test_a_config_without_uuid_gets_a_fresh_one_and_stays_unchanged(self) -> Any:
        config = self.config("a", disks=[])
        given = copy.deepcopy(config)
        first = yield self.ctx.create(config)
        config["c_info"]["name"] = "b"
        second = yield self.ctx.create(config)
        uuids = [self.ctx.domain_info(domid).uuid for domid in (first, second)]
        self.assertEqual([uuid.UUID(u).version for u in uuids], [4, 4])
        self.assertNotEqual(uuids[0], uuids[1])
        config["c_info"]["name"] = "a"
        self.assertEqual(config, given)

    @defer.inlineCallbacks
    def test_a_given_uuid_is_the_domains(self) -> Any:
        config = self.config()
        config["c_info"]["uuid"] = mine = str(uuid.uuid4())
        domid = yield self.ctx.create(config)
        self.assertEqual(self.ctx.domain_info(domid).uuid, mine)


class BadConfigTests(BuildingTestCase):
    @defer.inlineCallbacks
    def test_a_value_libxl_cannot_read_fails_with_its_message_and_path(self) -> Any:
        config = self.config()
        config["disks"][0]["format"] = "floppy"
        with self.assertRaises(errors.InvalidConfiguration) as caught:
            yield self.ctx.create(config)
        self.assertEqual(caught.exception.code, errors.ERROR_FAIL)
        self.assertIn("unable to convert libxl__json_object to libxl_domain_config", caught.exception.message)
        self.assertEqual(caught.exception.refused, ("disks[0].format",))
        yield self.assertNothingLeft()

    @defer.inlineCallbacks
    def test_a_key_libxl_would_ignore_fails_before_anything_is_made(self) -> Any:
        config = self.config()
        config["b_info"]["max_vcpu"] = 4
        config["b_info"]["max_memkb"] = "512M"
        with self.assertRaises(errors.InvalidConfiguration) as caught:
            yield self.ctx.create(config)
        self.assertEqual(caught.exception.ignored, ("b_info.max_memkb", "b_info.max_vcpu"))
        yield self.assertNothingLeft()

    @defer.inlineCallbacks
    def test_a_config_libxl_refuses_when_creating_fails_with_its_message(self) -> Any:
        config = self.config(disks=[self.disk("bogus")])
        with self.assertRaises(errors.LibxlError) as caught:
            yield self.ctx.create(config)
        self.assertIn("Invalid or unsupported virtual disk identifier", caught.exception.message)
        yield self.assertNothingLeft()

    @defer.inlineCallbacks
    def test_a_build_failing_after_the_domain_exists_leaves_no_domain(self) -> Any:
        config = self.config()
        config["b_info"]["kernel"] = os.path.join(self.files, "missing-vmlinuz")
        with self.assertRaises(errors.LibxlError) as caught:
            yield self.ctx.create(config)
        self.assertIn("xc_dom_kernel_file failed", caught.exception.message)
        yield self.assertNothingLeft()

    def test_a_config_is_a_mapping(self) -> Any:
        return self.assertFailure(self.ctx.create([self.config()]), TypeError)


class CancelTests(BuildingTestCase):
    @defer.inlineCallbacks
    def test_a_create_cancelled_midway_leaves_no_domain(self) -> Any:
        d = self.ctx.create(self.config("half"))
        # libxl made the domain inside the call and waits for its devices.
        self.assertEqual([g.name for g in self.guests()], ["half"])
        d.cancel()
        failure = yield self.assertFailure(d, errors.OperationAborted)
        yield failure.settled
        yield self.assertNothingLeft()

    @defer.inlineCallbacks
    def test_close_with_a_create_in_flight_leaves_no_domain(self) -> Any:
        d = self.ctx.create(self.config("half"))
        yield self.ctx.close()
        yield self.assertFailure(d, errors.OperationAborted)
        from txlibxl.context import Context

        other = Context(reactor)
        self.addCleanup(other.close)
        self.assertEqual([g.domid for g in other.list_domains()], [0])


class DeviceTests(BuildingTestCase):
    @defer.inlineCallbacks
    def test_a_disk_added_and_removed_shows_in_domain_config(self) -> Any:
        domid = yield self.running()
        added = yield self.ctx.add_disk(domid, self.disk("xvdb"))
        self.assertEqual(added["vdev"], "xvdb")
        config = yield self.ctx.domain_config(domid)
        self.assertEqual([d["vdev"] for d in config["disks"]], ["xvda", "xvdb"])
        yield self.ctx.remove_disk(domid, "xvdb")
        config = yield self.ctx.domain_config(domid)
        self.assertEqual([d["vdev"] for d in config["disks"]], ["xvda"])

    @defer.inlineCallbacks
    def test_a_disk_given_as_an_xl_spec_is_attached(self) -> Any:
        domid = yield self.running()
        image = self.file("spec.img", size=1 << 20)
        added = yield self.ctx.add_disk(domid, f"format=raw,vdev=xvdc,access=ro,target={image}")
        self.assertEqual((added["vdev"], added["pdev_path"], added.get("readwrite", 0)), ("xvdc", image, 0))
        config = yield self.ctx.domain_config(domid)
        self.assertIn("xvdc", [d["vdev"] for d in config["disks"]])

    @defer.inlineCallbacks
    def test_a_nic_added_and_removed_shows_in_domain_config(self) -> Any:
        domid = yield self.running()
        added = yield self.ctx.add_nic(domid, {"bridge": "xenbr0"})
        self.assertEqual(added["devid"], 1)
        config = yield self.ctx.domain_config(domid)
        self.assertEqual([n["mac"] for n in config["nics"]][1], added["mac"])
        yield self.ctx.remove_nic(domid, added["mac"])
        config = yield self.ctx.domain_config(domid)
        self.assertEqual([n["devid"] for n in config["nics"]], [0])

    @defer.inlineCallbacks
    def test_a_disk_already_there_is_refused_typed(self) -> Any:
        domid = yield self.running()
        with self.assertRaises(errors.LibxlError):
            yield self.ctx.add_disk(domid, self.disk("xvda"))
        config = yield self.ctx.domain_config(domid)
        self.assertEqual(len(config["disks"]), 1)

    def test_a_disk_spec_is_parsed_by_libxlutil(self) -> None:
        self.assertEqual(
            self.ctx.parse_disk_spec("phy:/dev/vg/guest,xvda,w"),
            {"pdev_path": "/dev/vg/guest", "vdev": "xvda", "format": "raw", "readwrite": 1},
        )
        self.assertRaises(errors.InvalidConfiguration, self.ctx.parse_disk_spec, "phy:/dev/vg/guest,xvda,w,x=y")


class CdromTests(BuildingTestCase):
    """
    CD-ROM media on an HVM guest the real libxl built: the library's
    insert, the guest's eject as libxl's ``DISK_EJECT``, and what a
    cancelled insert or a medium that is not there leaves (a working
    context, a drive that takes the next medium).
    """

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        self.first = self.file("cd.iso", size=1 << 20)
        self.domid = yield self.hvm_guest_with_a_cdrom()

    @defer.inlineCallbacks
    def hvm_guest_with_a_cdrom(self) -> Any:
        config = self.config("hvm1", type="hvm")
        del config["b_info"]["kernel"]  # hvmloader boots it
        config["disks"].append({"pdev_path": self.first, "vdev": "hdc",
                                "format": "raw", "is_cdrom": 1, "removable": 1})
        try:
            domid = yield self.create_or_skip(config)
        except SkipTest as e:
            raise SkipTest(f"no HVM guest on this simulated host; {e}")
        yield self.ctx.unpause(domid)
        return domid

    @defer.inlineCallbacks
    def medium(self) -> Any:
        """The CD-ROM hdc's medium as libxl's configuration and the device
        model's QMP (``query-block``) have it: the configured path, and the
        inserted image's size with the tray's state."""
        from tests.sim.qmp_client import qmp_connect

        config = yield self.ctx.domain_config(self.domid)
        [cd] = [d for d in config["disks"] if d["vdev"] == "hdc"]
        socket = os.path.join(self.host.info["root"], "var/run/xen/qmp-libxl-%d" % self.domid)
        client = yield defer.ensureDeferred(qmp_connect(socket))
        try:
            blocks = yield defer.ensureDeferred(client.call("query-block"))
        finally:
            yield defer.ensureDeferred(client.close())
        [block] = [b for b in blocks if b.get("qdev") == "ide-5632"]
        inserted = block.get("inserted")
        size = inserted["image"]["virtual-size"] if inserted else None
        return cd.get("pdev_path"), size, block["tray_open"]

    @defer.inlineCallbacks
    def test_a_medium_inserted_shows_in_the_config_and_the_device_model(self) -> Any:
        self.assertEqual((yield self.medium()), (self.first, 1 << 20, False))
        other = self.file("other.iso", size=1 << 21)
        result = yield self.ctx.insert_cdrom(self.domid, "hdc", other)
        self.assertIsNone(result)
        self.assertEqual((yield self.medium()), (other, 1 << 21, False))

    @defer.inlineCallbacks
    def test_the_guests_eject_fires_the_watch_and_a_new_medium_goes_in(self) -> Any:
        watch = self.ctx.watch_disk_eject(self.domid, "hdc")
        self.addCleanup(watch.cancel)
        yield self.host.control.eject(self.domid, "hdc")
        event = yield watch.next_event()
        self.assertIsInstance(event, DiskEject)
        self.assertEqual((event.domid, event.disk.is_cdrom), (self.domid, 1))
        self.assertEqual((yield self.medium())[1:], (None, True))
        other = self.file("other.iso", size=1 << 21)
        yield self.ctx.insert_cdrom(self.domid, "hdc", other)
        self.assertEqual((yield self.medium()), (other, 1 << 21, False))
        # The watch still fires on the next eject, and the drive takes a
        # medium again after it.
        yield self.host.control.eject(self.domid, "hdc")
        self.assertIsInstance((yield watch.next_event()), DiskEject)
        yield self.ctx.insert_cdrom(self.domid, "hdc", self.first)
        self.assertEqual((yield self.medium()), (self.first, 1 << 20, False))

    @defer.inlineCallbacks
    def test_an_empty_medium_empties_the_drive(self) -> Any:
        yield self.ctx.insert_cdrom(self.domid, "hdc", "")
        self.assertEqual((yield self.medium())[1], None)

    @defer.inlineCallbacks
    def test_a_cancelled_insert_is_typed_and_the_next_insert_works(self) -> Any:
        d = self.ctx.insert_cdrom(self.domid, "hdc", self.file("other.iso", size=1 << 21))
        d.cancel()
        failure = yield self.assertFailure(d, OperationCancelled)
        yield failure.settled
        self.assertEqual(self.ctx.operations_in_flight, 0)
        # libxl stopped between the device model's commands: the drive has
        # its old medium or, past the eject, none.
        self.assertIn((yield self.medium()), [(self.first, 1 << 20, False), ("", None, True)])
        third = self.file("third.iso", size=1 << 22)
        yield self.ctx.insert_cdrom(self.domid, "hdc", third)
        self.assertEqual((yield self.medium()), (third, 1 << 22, False))

    @defer.inlineCallbacks
    def test_a_medium_that_is_not_there_is_a_typed_error_and_the_next_insert_works(self) -> Any:
        missing = os.path.join(self.files, "no-such.iso")
        with self.assertRaises(errors.GeneralFailure) as caught:
            yield self.ctx.insert_cdrom(self.domid, "hdc", missing)
        self.assertIn(f"Failed to open cdrom file {missing}", caught.exception.message)
        self.assertEqual(self.ctx.operations_in_flight, 0)
        # libxl ejected the old medium before it tried the new one.
        self.assertEqual((yield self.medium()), ("", None, True))
        other = self.file("other.iso", size=1 << 21)
        yield self.ctx.insert_cdrom(self.domid, "hdc", other)
        self.assertEqual((yield self.medium()), (other, 1 << 21, False))

    @defer.inlineCallbacks
    def test_a_drive_that_is_not_a_cdrom_is_refused_typed(self) -> Any:
        with self.assertRaises(errors.GeneralFailure) as caught:
            yield self.ctx.insert_cdrom(self.domid, "xvda", self.file("other.iso", size=1 << 21))
        self.assertIn("Virtual device not found", caught.exception.message)
        self.assertEqual((yield self.medium())[0], self.first)

    def test_a_medium_path_with_a_comma_is_the_callers_mistake(self) -> Any:
        return self.assertFailure(self.ctx.insert_cdrom(self.domid, "hdc", "/a,b.iso"), ValueError)


class ChangeTests(BuildingTestCase):
    @defer.inlineCallbacks
    def test_the_memory_target_is_set_and_read_back(self) -> Any:
        domid = yield self.running()
        self.ctx.set_memory_target(domid, 131072)
        self.assertEqual(self.ctx.memory_target(domid), 131072)
        config = yield self.ctx.domain_config(domid)
        self.assertEqual(config["b_info"]["target_memkb"], 131072)

    @defer.inlineCallbacks
    def test_vcpus_go_offline_and_online_as_asked(self) -> Any:
        domid = yield self.running(self.config(vcpus=2))
        yield self.ctx.set_vcpus(domid, 1)
        yield self.until(lambda: self.ctx.domain_info(domid).vcpus_online == 1)
        yield self.ctx.set_vcpus(domid, 2)
        yield self.until(lambda: self.ctx.domain_info(domid).vcpus_online == 2)

    @defer.inlineCallbacks
    def test_more_vcpus_than_the_maximum_are_refused_with_libxls_message(self) -> Any:
        domid = yield self.running(self.config(vcpus=2))
        with self.assertRaises(errors.LibxlError) as caught:
            yield self.ctx.set_vcpus(domid, 3)
        self.assertIn("maxcpus is 2", caught.exception.message)

    @defer.inlineCallbacks
    def test_a_renamed_domain_has_its_new_name_everywhere(self) -> Any:
        domid = yield self.running()
        self.ctx.rename(domid, "db1")
        self.assertEqual((self.ctx.domid_to_name(domid), self.ctx.name_to_domid("db1")), ("db1", domid))
        config = yield self.ctx.domain_config(domid)
        self.assertEqual(config["c_info"]["name"], "db1")
        self.assertRaises(errors.LibxlError, self.ctx.rename, domid, "db2", old_name="web1")

    @defer.inlineCallbacks
    def test_the_console_tty_is_the_one_the_host_gave(self) -> Any:
        domid = yield self.running()
        self.assertEqual(self.ctx.console_tty(domid), f"/dev/pts/sim{domid}")


class ManyTests(BuildingTestCase):
    timeout = 300

    @defer.inlineCallbacks
    def test_a_hundred_creates_in_parallel_then_destroyed_leave_nothing(self) -> Any:
        consoles: List[Any] = []
        creates = [
            self.ctx.create(self.config(f"many{i}", memory_kb=65536, vcpus=1, disks=[]), on_console=consoles.append)
            for i in range(100)
        ]
        domids = yield defer.gatherResults(creates, consumeErrors=True)
        self.assertEqual(len(set(domids)), 100)
        self.assertEqual(sorted(c.domid for c in consoles), sorted(domids))
        self.assertEqual(sorted(g.domid for g in self.guests()), sorted(domids))
        watches = [self.ctx.watch_domain(domid) for domid in domids]
        yield defer.gatherResults([self.ctx.destroy(domid) for domid in domids], consumeErrors=True)
        deaths = yield defer.gatherResults([w.when_dead() for w in watches], consumeErrors=True)
        self.assertEqual(sorted(d.domid for d in deaths if isinstance(d, DomainDeath)), sorted(domids))
        yield self.assertNothingLeft()
