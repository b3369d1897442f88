"""
The real ``xl save`` and ``xl restore`` (Debian's xen-utils-4.17) on the
simulated host: xl's own save file (its header with the configuration,
then libxl's stream, whose middle the save helper writes), its monitor,
``save -c`` (a checkpoint: the domain runs on), and a restore on another
host.  Skipped, with the reason, where xl or the helper is missing.
"""
from __future__ import annotations

import os
from typing import Any, Tuple

from twisted.internet import utils

from tests.sim.libxl_configs import leftover_processes, saved_configs
from tests.sim.test_libxl_save import HELPER, summary
from tests.sim.test_xl_on_sim import XL, XlTestCase
from txlibxl.sim.savestream import format as fmt
from txlibxl.testing.simhost import start_simulated_host
from twisted.trial.unittest import SkipTest


class XlSaveTestCase(XlTestCase):
    def setUp(self) -> Any:
        if not os.access(HELPER, os.X_OK):
            raise SkipTest(f"{HELPER} is not installed (Debian package xen-utils-4.17)")
        return super().setUp()

    async def xl_on(self, host: Any, *args: Any, ok: bool = True) -> Tuple[str, str, int]:
        """xl against another host."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(host.environment(preload=True))
        out, err, code = await utils.getProcessOutputAndValue(XL, [str(a) for a in args], env=env, path=self.files)
        if ok:
            self.assertEqual(code, 0, "xl %s failed: %s" % (args, err.decode(errors="replace")))
        return out.decode(), err.decode(), code

    async def started(self, name: str = "xl1", marker: str = "xl marker") -> dict:
        await self.xl("create", self.xl_config(name))
        domain = await self.domain_named(name)
        await self.host.control.guest_marker(domain["domid"], marker)
        return domain

    def save_file(self) -> str:
        return os.path.join(self.files, "xl1.save")


class XlSaveRestoreTests(XlSaveTestCase):
    async def test_xl_save_then_restore_keeps_uuid_memory_vcpus_and_the_marker(self) -> None:
        before = await self.host_tree()
        first = await self.started()
        await self.xl("save", "xl1", self.save_file())
        # xl destroys the saved domain; its monitor sees it go and exits.
        self.assertEqual(await self.sim_domids(), [0])
        await self.no_process_left()
        stream, data = summary(self.save_file())
        self.assertTrue(data.startswith(fmt.XL_MAGIC))
        self.assertEqual((stream.marker, str(stream.domain.uuid)), (b"xl marker", first["uuid"]))
        await self.xl("restore", self.save_file())
        restored = await self.domain_named("xl1")
        info = await self.host.control.info(restored["domid"])
        self.assertEqual((info["uuid"], info["memory_kb"], info["vcpus"]), (first["uuid"], 262144, 2))
        self.assertEqual((info["marker"], info["state"]), ("xl marker", "running"))
        self.assertEqual(len(leftover_processes(self.host.info["hypercall"])), 1, "no xl monitor")
        await self.xl("destroy", "xl1")
        await self.no_process_left()
        await self.assert_nothing_left(before)

    async def test_xl_save_c_leaves_the_domain_running_and_the_checkpoint_restores_elsewhere(self) -> None:
        other = await start_simulated_host()
        self.addCleanup(other.stop)
        first = await self.started(marker="checkpoint")
        await self.xl("save", "-c", "xl1", self.save_file())
        self.assertEqual((await self.host.control.info(first["domid"]))["state"], "running")
        # The resumed guest still answers, and its shutdown is seen.
        await self.xl("shutdown", "-w", "xl1")
        await self.no_process_left()
        await self.xl_on(other, "restore", "-e", self.save_file())
        [moved] = [d for d in await other.control.list() if d["name"] == "xl1"]
        info = await other.control.info(moved["domid"])
        self.assertEqual((info["uuid"], info["marker"], info["state"]), (first["uuid"], "checkpoint", "running"))
        out, _, _ = await self.xl_on(other, "list", "-l", "xl1")
        self.assertIn(first["uuid"], out)
        self.assertEqual(len(saved_configs(other.info["root"])), 1)
        await self.xl_on(other, "destroy", "xl1")

    async def test_xl_restore_of_a_cut_or_corrupt_file_fails_and_leaves_nothing(self) -> None:
        await self.started()
        await self.xl("save", "xl1", self.save_file())
        await self.no_process_left()
        before = await self.host_tree()
        with open(self.save_file(), "rb") as f:
            data = f.read()
        start, end = fmt.split_libxl_stream(data)
        flipped = bytearray(data)
        flipped[(start + end) // 2] ^= 0x80
        for what, content in (("cut", data[:(start + end) // 2]), ("flipped", bytes(flipped)), ("empty", b"")):
            path = os.path.join(self.files, what + ".save")
            with open(path, "wb") as f:
                f.write(content)
            _, err, code = await self.xl("restore", "-e", path, ok=False)
            self.assertEqual(code, 1, "%s: %s" % (what, err))
            await self.no_process_left()
            await self.assert_nothing_left(before)
