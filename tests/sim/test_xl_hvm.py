"""
The real ``xl`` with HVM guests on the simulated host: ``xl create``
spawns the device model stand-in and its monitor ends with the guest;
``xl cd-eject`` and ``xl cd-insert`` change the medium through QMP, and
the guest's next eject still reaches a toolstack watching for it.

Skipped, with the reason, where xl is not installed.
"""
from __future__ import annotations

import os
from typing import Any, Dict

from tests.sim.libxl_configs import leftover_processes
from tests.sim.qmp_client import qmp_connect
from tests.sim.test_libxl_on_sim import is_line
from tests.sim.test_xl_on_sim import XlTestCase


class XlHvmTests(XlTestCase):
    def hvm_config(self, name: str = "xlh") -> str:
        self.image = self.file(name + ".img", size=1 << 24)
        self.iso = self.file("cd.iso", size=1 << 20)
        self.other = self.file("other.iso", size=1 << 21)
        path = os.path.join(self.files, name + ".cfg")
        with open(path, "w") as f:
            f.write(
                'name = "%s"\ntype = "hvm"\nmemory = 256\nvcpus = 2\n'
                'disk = [ "format=raw, vdev=hda, access=rw, target=%s",\n'
                '         "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=%s" ]\n'
                'vif = [ "mac=00:16:3e:5e:01:01,bridge=xenbr0" ]\n' % (name, self.image, self.iso)
            )
        return path

    async def query_cd(self, domid: int) -> Dict[str, Any]:
        client = await qmp_connect(os.path.join(self.host.info["root"], "var/run/xen/qmp-libxl-%d" % domid))
        try:
            blocks = await client.call("query-block")
        finally:
            await client.close()
        [cd] = [b for b in blocks if b.get("qdev") == "ide-5632"]
        return cd

    async def params(self, domid: int) -> str:
        return (await self.xenstore("xenstore-read", "/local/domain/0/backend/qdisk/%d/5632/params" % domid)).strip()

    async def test_xl_create_runs_an_hvm_guest_whose_monitor_ends_with_it(self) -> None:
        before = await self.host_tree()
        await self.xl("create", self.hvm_config())
        domain = await self.domain_named("xlh")
        self.assertEqual((domain["type"], domain["state"]), ("hvm", "running"))
        state = "/local/domain/0/device-model/%d/state" % domain["domid"]
        self.assertEqual((await self.xenstore("xenstore-read", state)).strip(), "running")
        # The monitor and the device model.
        self.assertEqual(len(self.leftover()), 2, self.leftover())
        await self.xl("destroy", "xlh")
        await self.no_process_left()
        await self.assert_nothing_left(before)

    def leftover(self) -> Any:
        return leftover_processes(self.host.info["hypercall"])

    async def test_xl_cd_eject_and_cd_insert_change_the_medium(self) -> None:
        await self.xl("create", "-e", self.hvm_config())
        domid = (await self.domain_named("xlh"))["domid"]
        await self.xl("cd-eject", "xlh", "hdc")
        cd = await self.query_cd(domid)
        self.assertEqual((cd["tray_open"], "inserted" in cd, await self.params(domid)), (True, False, ""))
        await self.xl("cd-insert", "xlh", "hdc", self.other)
        cd = await self.query_cd(domid)
        self.assertEqual((cd["tray_open"], cd["inserted"]["image"]["virtual-size"]), (False, 1 << 21))
        self.assertEqual(await self.params(domid), "aio:" + self.other)
        out, _, _ = await self.xl("list", "-l", "xlh")
        self.assertIn(self.other, out)
        await self.xl("destroy", "xlh")
        await self.no_process_left()

    async def test_the_guests_eject_fires_again_after_xl_cd_insert(self) -> None:
        await self.xl("create", "-e", self.hvm_config())
        domid = (await self.domain_named("xlh"))["domid"]
        proc = self.cclient("watch-eject", domid, "hdc", "wait-events", 2, 60)
        line = await proc.wait_for(is_line(cmd="watch-eject"))
        self.assertEqual(line["rc"], 0, proc.describe("could not watch"))
        await self.host.control.eject(domid, "hdc")
        await proc.wait_for(is_line(event="disk_eject"))
        await self.xl("cd-insert", "xlh", "hdc", self.other)
        await self.host.control.eject(domid, "hdc")
        self.assertEqual(await proc.finished(), 0, proc.describe("failed"))
        self.assertEqual([e["event"] for e in proc.events()], ["disk_eject"] * 2)
        await self.xl("destroy", "xlh")
        await self.no_process_left()
