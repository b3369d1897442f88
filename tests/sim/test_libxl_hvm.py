"""
HVM guests on the simulated host, driven by the real libxl through the C
toolstack (``tests/cclient``): ``libxl_domain_create_new`` spawns the
device model (the host's QMP stand-in, in QEMU's place) and talks QMP to
it; unpause sends ``cont``; the guest's CD eject fires ``DISK_EJECT``,
``libxl_cdrom_insert`` puts a new medium in, and the next eject fires
again; destroy leaves nothing.  The same on the HVM domains the simulator
makes itself, whose device model the host plays.  A device model that
never answers makes libxl's create fail with its own timeout, and leave
nothing.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from tests.cclient import CClientProcess
from tests.sim.libxl_configs import disk, domain_config, nic, saved_configs
from tests.sim.qmp_client import qmp_connect
from tests.sim.test_libxl_create import CreateTestCase
from tests.sim.test_libxl_on_sim import is_line

#: libxl's LIBXL_QEMU_BODGE_TIMEOUT: on destroy it gives each of QEMU's
#: backends (the CD-ROM's qdisk, the vkbd) that long, on Xen too.
QEMU_BODGE_S = 2.0


class HvmTestCase(CreateTestCase):
    def cdrom(self, path: Optional[str] = None, vdev: str = "hdc") -> Dict[str, Any]:
        return {"pdev_path": path or self.file("cd.iso", size=1 << 20), "vdev": vdev, "format": "raw",
                "is_cdrom": 1, "removable": 1}

    def hvm_config(self, name: str = "hvm1", **kw: Any) -> Dict[str, Any]:
        """An HVM guest with a disk (hda), a CD-ROM (hdc) and a nic."""
        kw.setdefault("disks", [disk(self.file(name + ".img", size=1 << 24), "hda"), self.cdrom()])
        kw.setdefault("nics", [nic(0)])
        cfg = domain_config(name, self.kernel, type="hvm", **kw)
        del cfg["b_info"]["kernel"]  # hvmloader boots it
        return cfg

    def qmp_socket(self, domid: int) -> str:
        return os.path.join(self.host.info["root"], "var/run/xen/qmp-libxl-%d" % domid)

    async def query_cd(self, domid: int) -> Dict[str, Any]:
        """The CD-ROM hdc as the device model reports it (QMP query-block)."""
        client = await qmp_connect(self.qmp_socket(domid))
        try:
            blocks = await client.call("query-block")
        finally:
            await client.close()
        [cd] = [b for b in blocks if b.get("qdev") == "ide-5632"]
        return cd

    async def create(self, cfg: Dict[str, Any], *more: Any) -> Tuple[int, CClientProcess]:
        """CreateTestCase's, but a destroy among C{more} may wait for
        QEMU's backends as libxl always does."""
        proc = await self.cclient_ok("create", self.json(cfg["c_info"]["name"], cfg), *more)
        [created] = proc.results("create")
        self.assertEqual(created["rc"], 0, proc.describe("create failed"))
        self.only_bodge_timeouts(proc)
        return created["domid"], proc

    def only_bodge_timeouts(self, proc: CClientProcess) -> None:
        self.assertEqual({t["after_s"] for t in proc.timeouts_fired()} - {QEMU_BODGE_S}, set(),
                         proc.describe("a libxl timeout fired"))

    async def read(self, path: str) -> str:
        return (await self.xenstore("xenstore-read", path)).strip()


class HvmCreateTests(HvmTestCase):
    async def test_an_hvm_guest_is_created_with_its_device_model_running(self) -> None:
        domid, proc = await self.create(self.hvm_config(), "info", "last")
        info = proc.results("info")[0]["domain"]
        self.assertEqual((info["type"], info["state"]), ("hvm", "paused"))
        self.assertEqual(await self.read("/local/domain/0/device-model/%d/state" % domid), "running")
        pid = int(await self.read("/local/domain/%d/image/device-model-pid" % domid))
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        self.assertIn(b"txlibxl.sim.devicemodel", argv)
        self.assertEqual(argv[argv.index(b"-xen-domid") + 1], str(domid).encode())
        # What libxl wrote from the device model's QMP answers (query-vnc).
        self.assertEqual(await self.read("/local/domain/%d/console/vnc-port" % domid), "5900")
        # The guest does not run yet: QEMU's CD-ROM backend waits for it.
        self.assertEqual(await self.read("/local/domain/0/backend/qdisk/%d/5632/state" % domid), "2")
        self.assertEqual((await self.query_cd(domid))["inserted"]["file"], self.files + "/cd.iso")

    async def test_unpause_continues_the_device_model_and_the_guest_runs(self) -> None:
        domid, proc = await self.create(self.hvm_config(), "unpause", "last", "sleep", 0.2, "info", "last")
        self.assertEqual(proc.results("unpause")[0]["rc"], 0)
        self.assertEqual(proc.results("info")[0]["domain"]["state"], "running")
        self.assertEqual(proc.timeouts_fired(), [])
        for kind, devid in (("qdisk", 5632), ("vbd", 768), ("vif", 0)):
            self.assertEqual(await self.read("/local/domain/0/backend/%s/%d/%d/state" % (kind, domid, devid)), "4")

    async def test_pause_does_not_stop_the_device_model(self) -> None:
        # libxl 4.17 pauses an HVM guest in the hypervisor only.
        domid, proc = await self.create(self.hvm_config(), "unpause", "last", "pause", "last", "info", "last")
        self.assertEqual(proc.results("info")[0]["domain"]["state"], "paused")
        client = await qmp_connect(self.qmp_socket(domid))
        self.assertEqual((await client.call("query-status"))["status"], "running")
        await client.close()

    async def test_its_configuration_and_vcpus_are_asked_of_the_device_model(self) -> None:
        # libxl_retrieve_domain_configuration asks QMP query-cpus-fast; a
        # vCPU brought up is device_add'ed (QEMU's vCPU hotplug).
        cfg = self.hvm_config(vcpus=3)
        cfg["b_info"]["avail_vcpus"] = [0]
        domid, proc = await self.create(cfg, "unpause", "last", "config", "last", "vcpu-set", "last", 2,
                                        "sleep", 0.2, "config", "last", "info", "last")
        before, after = (line["config"]["b_info"]["avail_vcpus"] for line in proc.results("config"))
        self.assertEqual((before, after), ([0], [0, 1]))
        self.assertEqual(proc.results("info")[0]["domain"]["vcpu_online"], 2)
        client = await qmp_connect(self.qmp_socket(domid))
        self.assertEqual([c["cpu-index"] for c in await client.call("query-cpus-fast")], [0, 1])
        await client.close()

    async def test_destroy_leaves_no_node_domain_device_model_or_saved_config(self) -> None:
        before = await self.host_tree()
        domid, proc = await self.create(self.hvm_config(), "unpause", "last", "destroy", "last")
        self.assertEqual(proc.results("destroy")[0]["rc"], 0)
        self.only_bodge_timeouts(proc)
        await self.no_process_left()
        await self.assert_nothing_left(before)
        self.assertEqual(os.listdir(os.path.dirname(self.qmp_socket(domid))), ["domid-history"])

    async def test_the_hvm_paths_call_no_unsimulated_function(self) -> None:
        other = self.json("other", self.cdrom(self.file("other.iso", size=1 << 20)))
        domid, proc = await self.create(self.hvm_config(), "unpause", "last", "cdrom-insert", "last", other,
                                        "destroy", "last")
        self.assertNotIn(b"is not simulated", proc.stderr, proc.describe("a stub was hit"))

    async def test_inserting_into_a_disk_that_is_not_a_cdrom_fails(self) -> None:
        domid, _ = await self.create(self.hvm_config(), "unpause", "last")
        proc = self.cclient("cdrom-insert", domid, self.json("hda", self.cdrom(vdev="hda")))
        self.assertEqual(await proc.finished(), 1)
        self.assertIn(b"Virtual device not found", proc.stderr)


class CdromTests(HvmTestCase):
    async def eject_insert_eject(self, domid: Optional[int], *create: Any) -> Tuple[int, CClientProcess]:
        """The guest ejects hdc, libxl inserts other.iso, the guest ejects
        again; the client watches for the ejects throughout."""
        self.other = self.file("other.iso", size=1 << 21)
        last = "last" if domid is None else domid
        proc = self.cclient(*create, "watch-eject", last, "hdc", "wait-events", 1, 60,
                            "cdrom-insert", last, self.json("other", self.cdrom(self.other)),
                            "wait-events", 1, 60)
        line = await proc.wait_for(is_line(cmd="watch-eject"))
        domid = line["domid"]
        self.assertEqual(line["rc"], 0, proc.describe("could not watch"))
        await self.host.control.eject(domid, "hdc")
        inserted = await proc.wait_for(is_line(cmd="cdrom-insert"))
        self.assertEqual(inserted["rc"], 0, proc.describe("cdrom-insert failed"))
        cd = await self.query_cd(domid)
        self.assertEqual((cd["tray_open"], cd["inserted"]["file"], cd["inserted"]["image"]["virtual-size"]),
                         (False, "/dev/fdset/0", 1 << 21))
        await self.host.control.eject(domid, "hdc")
        self.assertEqual(await proc.finished(), 0, proc.describe("failed"))
        ejects = proc.events("disk_eject")
        self.assertEqual([(e["domid"], e["disk"]["backend"], e["disk"]["is_cdrom"]) for e in ejects],
                         [(domid, "qdisk", 1)] * 2)
        cd = await self.query_cd(domid)
        self.assertEqual((cd["tray_open"], "inserted" in cd), (True, False))
        return domid, proc

    async def test_eject_insert_eject_on_a_guest_libxl_built(self) -> None:
        cfg = self.hvm_config()
        domid, proc = await self.eject_insert_eject(None, "create", self.json("hvm1", cfg), "unpause", "last")
        self.assertEqual(proc.timeouts_fired(), [])
        # What libxl wrote for the new medium: the backend and its copy, and
        # the saved configuration.
        for node in ("/local/domain/0/backend/qdisk/%d/5632" % domid, "/libxl/%d/device/vbd/5632" % domid):
            self.assertEqual(await self.read(node + "/params"), "aio:" + self.other)
            self.assertEqual(await self.read(node + "/type"), "qdisk")
        self.assertEqual(await self.read("/local/domain/%d/device/vbd/5632/eject" % domid), "")
        [saved] = saved_configs(self.host.info["root"]).values()
        self.assertEqual([d["pdev_path"] for d in saved["disks"] if d["vdev"] == "hdc"], [self.other])

    async def test_eject_insert_eject_on_a_sim_made_hvm_domain(self) -> None:
        dom = await self.host.control.create_domain(
            name="made", type="hvm", disks=[{"vdev": "hdc", "cdrom": True, "target": self.file("cd.iso")}])
        domid, proc = await self.eject_insert_eject(dom["domid"])
        self.assertEqual(await self.read("/local/domain/0/backend/qdisk/%d/5632/params" % domid), "aio:" + self.other)
