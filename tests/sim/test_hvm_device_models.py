"""
The device models libxl meets on the simulated host beyond a good
create: the one the host plays for the HVM domains it makes (libxl's
unpause and destroy go through it as through QEMU), and a device model
that never answers (the ``device_model_mute``/``_hang`` faults), which
makes libxl's create fail with its own timeout and leave nothing.
"""
from __future__ import annotations

import os
from typing import Any, Dict

from twisted.internet import reactor, task

from tests.sim.qmp_client import qmp_connect, qmp_open
from tests.sim.test_libxl_hvm import HvmTestCase

#: libxl 4.17's LIBXL_QMP_CMD_TIMEOUT and LIBXL_DEVICE_MODEL_START_TIMEOUT.
QMP_COMMAND_TIMEOUT_S = 10.0
DEVICE_MODEL_START_TIMEOUT_S = 60.0


class SimMadeHvmTests(HvmTestCase):
    async def made(self, **kw: Any) -> Dict[str, Any]:
        kw.setdefault("disks", [{"vdev": "hdc", "cdrom": True, "target": self.file("cd.iso")}])
        return await self.host.control.create_domain(name="made", type="hvm", **kw)

    async def test_libxl_unpauses_a_sim_made_hvm_domain_through_its_device_model(self) -> None:
        dom = await self.made(paused=True)
        proc = await self.cclient_ok("unpause", dom["domid"], "info", dom["domid"])
        self.assertEqual(proc.results("unpause")[0]["rc"], 0)
        self.assertEqual(proc.timeouts_fired(), [])
        self.assertIn((await self.host.control.info(dom["domid"]))["state"], ("running", "blocked"))
        client = await qmp_connect(self.qmp_socket(dom["domid"]))
        self.assertEqual((await client.call("query-status"))["status"], "running")
        self.assertEqual(await client.call("query-name"), {"name": "made"})
        await client.close()

    async def test_its_device_model_says_it_runs_and_has_its_cdrom(self) -> None:
        dom = await self.made()
        self.assertEqual(await self.read("/local/domain/0/device-model/%d/state" % dom["domid"]), "running")
        cd = await self.query_cd(dom["domid"])
        self.assertEqual((cd["removable"], cd["inserted"]["file"]), (True, self.files + "/cd.iso"))

    async def test_its_device_model_goes_with_the_domain_whoever_destroys_it(self) -> None:
        before = await self.host_tree()
        first = await self.made()
        await self.host.control.destroy([first["domid"]])
        second = await self.made()
        proc = await self.cclient_ok("destroy", second["domid"])
        self.assertEqual(proc.results("destroy")[0]["rc"], 0)
        for dom in (first, second):
            self.assertFalse(os.path.exists(self.qmp_socket(dom["domid"])))
        await task.deferLater(reactor, 0.1, lambda: None)
        await self.assert_nothing_left(before)

    async def test_a_pv_domain_has_no_device_model(self) -> None:
        dom = await self.host.control.create_domain(name="pv")
        self.assertFalse(os.path.exists(self.qmp_socket(dom["domid"])))


class DeviceModelFaultTests(HvmTestCase):
    timeout = 240

    async def create_fails(self, kind: str, deadline: float) -> None:
        before = await self.host_tree()
        await self.host.control.fault(kind)
        proc = self.cclient("create", self.json("hvm1", self.hvm_config()))
        self.assertEqual(await proc.finished(timeout=deadline + 60), 1)
        self.assertNotEqual(proc.results("create")[0]["rc"], 0)
        self.assertIn(deadline, [t["after_s"] for t in proc.timeouts_fired()])
        await self.no_process_left()
        await self.assert_nothing_left(before)

    async def test_a_device_model_that_never_answers_qmp_fails_the_create(self) -> None:
        # It says it runs; libxl's first QMP command (query-chardev) times out.
        await self.create_fails("device_model_mute", QMP_COMMAND_TIMEOUT_S)

    async def test_a_device_model_that_never_starts_fails_the_create(self) -> None:
        # It never says it runs: libxl's spawn times out.
        await self.create_fails("device_model_hang", DEVICE_MODEL_START_TIMEOUT_S)

    async def test_a_sim_made_domains_device_model_goes_silent_too(self) -> None:
        dom = await self.host.control.create_domain(name="made", type="hvm", paused=True)
        await self.host.control.fault("device_model_mute")
        client = await qmp_open(self.qmp_socket(dom["domid"]))
        await task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(client.messages, [])
        await client.close()
        await self.host.control.fault("clear")
        await self.cclient_ok("unpause", dom["domid"])
