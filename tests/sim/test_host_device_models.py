"""
The host's side of HVM guests, in-process: the device model it plays for
the HVM domains it makes (its QMP socket, its xenstore node, its drives,
gone with the domain), the guest's eject on those domains and on the
ones a toolstack built, the device model faults, and what the host's
backends do for QEMU's backends of a built domain.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.sim.qmp_client import qmp_connect
from txlibxl.sim.errors import BadRequest, NoSuchDomain
from txlibxl.sim.host import SimHost
from txlibxl.sim.host_root import DM_FAULTS, GUEST_EJECT, populate_root

CD = {"vdev": "hdc", "cdrom": True, "target": "/srv/cd.iso"}


class HostCase(TestCase):
    def setUp(self) -> None:
        # Short, for the QMP socket path under it.
        self.root = tempfile.mkdtemp(prefix="txr-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.root, True)
        populate_root(self.root)
        self.host = SimHost(reactor, root=self.root)
        self.addCleanup(self.host.close)

    def socket(self, domid: int) -> str:
        return os.path.join(self.root, "var/run/xen/qmp-libxl-%d" % domid)

    def read(self, path: str) -> Any:
        return self.host.store.read(path).decode() if self.host.store.exists(path) else None


class PlayedDeviceModelTests(HostCase):
    async def test_an_hvm_domain_the_host_makes_has_a_device_model(self) -> None:
        domid = self.host.create_domain(name="h", type="hvm", disks=[{"vdev": "xvda"}, CD])["domid"]
        self.assertEqual(self.read("/local/domain/0/device-model/%d/state" % domid), "running")
        client = await qmp_connect(self.socket(domid))
        disk, cd = await client.call("query-block")
        self.assertEqual((disk["device"], disk["removable"]), ("ide0-hd0", False))
        self.assertEqual((cd["qdev"], cd["inserted"]["file"]), ("ide-5632", "/srv/cd.iso"))
        self.assertEqual((await client.call("query-name")), {"name": "h"})
        await client.close()

    def test_pv_and_pvh_domains_have_none(self) -> None:
        for n, dtype in enumerate(("pv", "pvh")):
            domid = self.host.create_domain(name="g%d" % n, type=dtype)["domid"]
            self.assertNotIn(domid, self.host.device_models)
            self.assertFalse(os.path.exists(self.socket(domid)))

    async def test_the_guests_eject_empties_the_drive_and_writes_the_node(self) -> None:
        domid = self.host.create_domain(name="h", type="hvm", disks=[CD])["domid"]
        self.host.eject(domid=domid, vdev="hdc")
        self.assertEqual(self.read("/local/domain/%d/device/vbd/5632/eject" % domid), "eject")
        client = await qmp_connect(self.socket(domid))
        [cd] = await client.call("query-block")
        self.assertEqual((cd["tray_open"], "inserted" in cd), (True, False))
        await client.close()

    def test_it_goes_with_its_domain(self) -> None:
        domid = self.host.create_domain(name="h", type="hvm", disks=[CD])["domid"]
        self.host.destroy(domids=[domid])
        self.assertFalse(os.path.exists(self.socket(domid)))
        self.assertIsNone(self.read("/local/domain/0/device-model/%d" % domid))
        self.assertNotIn(domid, self.host.device_models)

    def test_an_hvm_cdrom_has_qemus_qdisk_backend_and_a_pv_one_blkbacks(self) -> None:
        hvm = self.host.create_domain(name="h", type="hvm", disks=[CD])["domid"]
        pv = self.host.create_domain(name="p", disks=[CD])["domid"]
        qdisk = "/local/domain/0/backend/qdisk/%d/5632" % hvm
        self.assertEqual((self.read(qdisk + "/type"), self.read(qdisk + "/params")), ("qdisk", "aio:/srv/cd.iso"))
        self.assertIsNone(self.read(qdisk + "/script"))
        self.assertEqual(self.read("/local/domain/%d/device/vbd/5632/backend" % hvm), qdisk)
        self.assertEqual(self.read("/local/domain/0/backend/vbd/%d/5632/type" % pv), "phy")


class FaultTests(HostCase):
    def test_the_device_model_faults_are_written_for_the_stand_ins_and_cleared(self) -> None:
        path = os.path.join(self.root, DM_FAULTS)
        for kind in ("device_model_hang", "device_model_mute"):
            self.host.fault(kind=kind)
            with open(path) as f:
                self.assertEqual(json.load(f), {"kind": kind})
        self.host.fault(kind="clear")
        self.assertFalse(os.path.exists(path))
        self.assertIsNone(self.host.device_models.fault)


class BuiltDomainEjectTests(HostCase):
    """A domain libxl built: its CD-ROM is known from libxl's /libxl copy."""

    def built(self, domid: int = 9, device_type: str = "cdrom") -> None:
        store = self.host.store
        fe = "/local/domain/%d/device/vbd/5632" % domid
        be = "/local/domain/0/backend/qdisk/%d/5632" % domid
        store.write("/libxl/%d/device/vbd/5632/frontend" % domid, fe.encode())
        store.write("/libxl/%d/device/vbd/5632/backend" % domid, be.encode())
        store.write(be + "/device-type", device_type.encode())
        store.write(fe + "/backend", be.encode())

    def test_with_its_device_model_running_the_device_model_is_asked(self) -> None:
        self.built()
        self.host.store.write("/local/domain/0/device-model/9/state", b"running")
        self.host.eject(domid=9, vdev="hdc")
        self.assertEqual(self.read(GUEST_EJECT % (9, 5632)), "eject")
        self.assertIsNone(self.read("/local/domain/9/device/vbd/5632/eject"))

    def test_without_one_the_node_is_written_directly(self) -> None:
        self.built()
        self.host.eject(domid=9, vdev="hdc")
        self.assertEqual(self.read("/local/domain/9/device/vbd/5632/eject"), "eject")

    def test_only_a_cdrom_of_a_known_domain_can_be_ejected(self) -> None:
        self.built(device_type="disk")
        self.assertRaises(BadRequest, self.host.eject, domid=9, vdev="hdc")
        self.assertRaises(BadRequest, self.host.eject, domid=9, vdev="hdd")
        self.assertRaises(NoSuchDomain, self.host.eject, domid=10, vdev="hdc")
