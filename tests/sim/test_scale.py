"""
Scale: thousands of domains on the simulated host, watched by the real
libxenlight (through the C client), destroyed in one burst.

This checks that the simulator keeps up and cleans up after itself, not
how fast anything is (that is the benchmarks' job).
"""
from __future__ import annotations

import os
import shutil
from typing import Any

from twisted.internet import utils
from twisted.trial.unittest import SkipTest

from tests.sim.test_libxl_on_sim import LibxlOnSimTestCase, is_line

DOMAINS = 5000


class BurstDestroyScaleTests(LibxlOnSimTestCase):
    timeout = 900

    async def test_5000_domains_die_in_a_burst_and_leave_nothing_behind(self) -> None:
        before = await self.guest_visible_tree()
        disk = {"vdev": "xvda", "target": "/dev/null", "format": "raw"}
        created = await self.host.control.create_domains(DOMAINS, prefix="scale", disks=[disk], vifs=1)
        self.assertEqual(len(created), DOMAINS)
        domids = [d["domid"] for d in created]
        self.assertEqual(len(set(domids)), DOMAINS)
        self.assertEqual(len(await self.sim_domids()), DOMAINS + 1)

        # libxl watches every one of them, then they all die at once.
        proc = self.cclient("watch-death-all", "wait-events", DOMAINS, 600, "list")
        watched = await proc.wait_for(is_line(cmd="watch-death-all"), timeout=600)
        self.assertEqual((watched["rc"], watched["count"]), (0, DOMAINS), proc.describe("could not watch"))
        await self.host.control.destroy(domids, mode="burst")
        self.assertEqual(await proc.finished(timeout=700), 0, proc.describe("failed"))

        deaths = proc.events("domain_death")
        self.assertEqual(sorted(e["domid"] for e in deaths), sorted(domids))
        self.assertEqual(proc.events("domain_shutdown"), [])
        [listed] = proc.results("list")
        self.assertEqual([d["domid"] for d in listed["domains"]], [0])

        # Nothing of them is left in the hypervisor or in xenstore.
        self.assertEqual(await self.sim_domids(), [0])
        self.assertEqual((await self.xenstore("xenstore-list", "/local/domain")).split(), ["0"])
        self.assertEqual(await self.guest_visible_tree(), before)

    async def guest_visible_tree(self) -> Any:
        """
        The children of the xenstore directories where domains leave
        entries (an absent directory counts as empty).
        """
        tree = {}
        for path in ("/local/domain", "/vm", "/libxl", "/local/domain/0/backend/vbd", "/local/domain/0/backend/vif"):
            if await self.xenstore_exists(path):
                tree[path] = sorted((await self.xenstore("xenstore-list", path)).split())
            else:
                tree[path] = []
        return tree

    async def xenstore_exists(self, path: str) -> bool:
        tool = shutil.which("xenstore-exists")
        if tool is None:
            raise SkipTest("xenstore-exists is not installed (Debian package xenstore-utils)")
        env = dict(os.environ)
        env.update(self.host.environment())
        _, _, code = await utils.getProcessOutputAndValue(tool, [path], env=env)
        return code == 0
