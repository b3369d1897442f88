"""
The real libxenlight creates domains on the simulated host: its own
``libxl_domain_create_new`` path, driven by the C toolstack
(``tests/cclient``), from libxl's JSON configurations, for PV and PVH
guests with disks, nics and the console; then their devices are hot-plugged
and they are destroyed.  The contract: libxl completes every step through
its ao machinery without one of its timeouts firing, and finds on the
simulator what it would find on Xen; a destroyed domain leaves nothing.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import reactor, task, utils
from twisted.trial.unittest import SkipTest

from tests.cclient import CClientProcess
from tests.sim.libxl_configs import (
    disk,
    domain_config,
    leftover_processes,
    nic,
    saved_configs,
    write_json,
)
from tests.sim.test_libxl_on_sim import LibxlOnSimTestCase, is_line


class CreateTestCase(LibxlOnSimTestCase):
    """A host, a kernel and disk images, and libxl's create through cclient."""

    def setUp(self) -> Any:
        self.files = os.path.abspath(self.mktemp())
        os.makedirs(self.files)
        self.kernel = self.file("vmlinuz", b"\x7fELF simulated kernel")
        return super().setUp()

    def file(self, name: str, content: bytes = b"", size: int = 0) -> str:
        path = os.path.join(self.files, name)
        with open(path, "wb") as f:
            f.write(content)
            if size:
                f.truncate(size)
        return path

    def config(self, name: str, **kw: Any) -> Dict[str, Any]:
        kw.setdefault("disks", [disk(self.file(name + ".img", size=1 << 24))])
        kw.setdefault("nics", [nic(0)])
        return domain_config(name, self.kernel, **kw)

    def json(self, name: str, value: Any) -> str:
        return write_json(self.files, name, value)

    async def create(self, cfg: Dict[str, Any], *more: Any) -> Tuple[int, CClientProcess]:
        proc = await self.cclient_ok("create", self.json(cfg["c_info"]["name"], cfg), *more)
        [created] = proc.results("create")
        self.assertEqual(created["rc"], 0, proc.describe("create failed"))
        self.assertEqual(proc.timeouts_fired(), [], proc.describe("a libxl timeout fired"))
        return created["domid"], proc

    async def tree(self, path: str) -> Dict[str, str]:
        """xenstore-ls -f of C{path}: node -> value."""
        out = await self.xenstore("xenstore-ls", "-f", path)
        nodes = {}
        for line in out.splitlines():
            node, _, value = line.partition(" = ")
            nodes[node] = value.strip('"')
        return nodes

    async def host_tree(self) -> List[str]:
        """Every node, but for ``/vm``, ``/libxl`` and
        ``/local/domain/0/device-model`` themselves: libxl makes them on
        its first domain (the last with its first HVM guest) and never
        removes them, on Xen too (what is below them counts)."""
        kept = ("/vm", "/libxl", "/local/domain/0/device-model")
        return sorted(n for n in await self.tree("/") if n not in kept)

    async def retrieved(self, domid: int) -> Dict[str, Any]:
        proc = await self.cclient_ok("config", domid)
        [line] = proc.results("config")
        return line["config"]

    async def no_process_left(self, seconds: float = 10.0) -> None:
        """libxl's children and the device models it started end (some
        asynchronously, like xl's monitor): wait for them."""
        left: List[str] = []
        for _ in range(int(seconds / 0.1)):
            left = leftover_processes(self.host.info["hypercall"])
            if not left:
                return
            await task.deferLater(reactor, 0.1, lambda: None)
        self.fail("processes left behind: %s" % left)

    async def assert_nothing_left(self, before: List[str], domid: Optional[int] = None) -> None:
        self.assertEqual(await self.sim_domids(), [0])
        self.assertEqual(await self.host_tree(), before)
        self.assertEqual(await self.host.control.call("check_store"), [])
        self.assertEqual(saved_configs(self.host.info["root"]), {})
        self.assertEqual(leftover_processes(self.host.info["hypercall"]), [])


class PvCreateTests(CreateTestCase):
    async def test_a_pv_guest_is_created_paused_with_its_memory_vcpus_and_uuid(self) -> None:
        cfg = self.config("web1", memory_kb=524288, vcpus=3)
        domid, proc = await self.create(cfg, "info", "last")
        [created] = proc.results("create")
        self.assertTrue(created["console_available"])
        self.assertTrue(created["console_first"], "console-available came after the completion")
        info = proc.results("info")[0]["domain"]
        self.assertEqual((info["name"], info["uuid"], info["type"]), ("web1", cfg["c_info"]["uuid"], "pv"))
        self.assertEqual((info["state"], info["vcpu_online"], info["vcpu_max_id"]), ("paused", 3, 2))
        self.assertEqual(info["current_memkb"], 524288)
        # libxl asks for its slack over the configured maximum.
        self.assertEqual(info["max_memkb"], 524288 + 1024)

    async def test_the_xenstore_tree_is_the_one_libxl_wrote_and_the_host_answered(self) -> None:
        cfg = self.config("web1")
        domid, _ = await self.create(cfg)
        dom = await self.tree("/local/domain/%d" % domid)
        base = "/local/domain/%d/" % domid
        self.assertEqual(dom[base + "name"], "web1")
        self.assertEqual(dom[base + "vm"], "/vm/" + cfg["c_info"]["uuid"])
        self.assertEqual(dom[base + "memory/target"], "262144")
        self.assertEqual(dom[base + "console/tty"], "/dev/pts/sim%d" % domid)
        self.assertEqual(dom[base + "cpu/1/availability"], "online")
        backends = await self.tree("/local/domain/0/backend")
        # Paused: the backends wait in InitWait for the guest's frontends.
        self.assertEqual(backends["/local/domain/0/backend/vbd/%d/51712/state" % domid], "2")
        self.assertEqual(backends["/local/domain/0/backend/vif/%d/0/state" % domid], "2")

    async def test_the_hotplug_scripts_libxl_runs_are_the_hosts(self) -> None:
        domid, _ = await self.create(self.config("web1"))
        vbd = "/local/domain/0/backend/vbd/%d/51712" % domid
        vif = "/local/domain/0/backend/vif/%d/0" % domid
        backends = await self.tree("/local/domain/0/backend")
        # The compiled-in paths libxl names, and what only the host's
        # scripts (run from its root in their place) write.
        self.assertEqual(backends[vbd + "/script"], "/etc/xen/scripts/block")
        self.assertEqual(backends[vif + "/script"], "/etc/xen/scripts/vif-bridge")
        self.assertEqual((backends[vbd + "/physical-device"], backends[vbd + "/hotplug-status"]),
                         ("fe:0", "connected"))
        self.assertEqual(backends[vif + "/hotplug-status"], "connected")

    async def test_the_store_ring_is_one_of_the_domains_own_frames(self) -> None:
        domid, _ = await self.create(self.config("web1"))
        ring = int(await self.xenstore("xenstore-read", "/local/domain/%d/store/ring-ref" % domid))
        port = int(await self.xenstore("xenstore-read", "/local/domain/%d/store/port" % domid))
        self.assertGreaterEqual(ring, 0x100000)
        self.assertGreater(port, 0)
        introduced = await self.xenstore("xenstore-read", "/local/domain/%d/domid" % domid)
        self.assertEqual(introduced.strip(), str(domid))

    async def test_introducing_the_domain_fires_introduce_domain_once(self) -> None:
        tool = shutil.which("xenstore-watch")
        if tool is None:
            raise SkipTest("xenstore-watch is not installed (Debian package xenstore-utils)")
        env = dict(os.environ)
        env.update(self.host.environment())
        # A new watch fires once at once; the introduction is the second event.
        watched = utils.getProcessOutputAndValue(tool, ["-n", "2", "@introduceDomain"], env=env)
        while not await self.host.control.call("watch_count", path="@introduceDomain"):
            await task.deferLater(reactor, 0.05, lambda: None)
        domid, _ = await self.create(self.config("web1"))
        out, _, code = await watched
        self.assertEqual((code, out.decode().split()), (0, ["@introduceDomain", "@introduceDomain"]))
        self.assertEqual(await self.host.control.call("check_store"), [])

    async def test_the_saved_configuration_is_where_libxl_keeps_it(self) -> None:
        cfg = self.config("web1")
        domid, _ = await self.create(cfg)
        saved = saved_configs(self.host.info["root"])
        name = "userdata-d.%d.%s.libxl-json" % (domid, cfg["c_info"]["uuid"])
        self.assertEqual(list(saved), [name])
        self.assertEqual(saved[name]["c_info"]["name"], "web1")
        self.assertEqual([d["vdev"] for d in saved[name]["disks"]], ["xvda"])

    async def test_a_requested_domid_is_honoured(self) -> None:
        cfg = self.config("fixed")
        cfg["c_info"]["domid"] = 42
        domid, _ = await self.create(cfg)
        self.assertEqual(domid, 42)

    async def test_disks_on_a_block_device_and_on_a_file_both_attach(self) -> None:
        if not os.path.exists("/dev/loop0"):
            raise SkipTest("no /dev/loop0 to name as a block device")
        cfg = self.config("two", disks=[disk("/dev/loop0", "xvda"), disk(self.file("b.img", size=1 << 20), "xvdb")])
        domid, _ = await self.create(cfg, "unpause", "last", "sleep", 0.2)
        backends = await self.tree("/local/domain/0/backend/vbd/%d" % domid)
        for devid in (51712, 51728):
            self.assertEqual(backends["/local/domain/0/backend/vbd/%d/%d/state" % (domid, devid)], "4")


class PvhCreateTests(CreateTestCase):
    async def test_a_pvh_guest_is_an_hvm_container_with_its_rings_in_hvm_params(self) -> None:
        cfg = self.config("pvh1", type="pvh")
        domid, proc = await self.create(cfg, "info", "last", "unpause", "last", "sleep", 0.2)
        info = proc.results("info")[0]["domain"]
        # libxl reports PVH and HVM alike from the hypervisor's flags.
        self.assertEqual((info["name"], info["type"], info["state"]), ("pvh1", "hvm", "paused"))
        self.assertEqual(await self.xenstore("xenstore-read", "/libxl/%d/type" % domid), "pvh\n")
        backends = await self.tree("/local/domain/0/backend")
        self.assertEqual(backends["/local/domain/0/backend/vbd/%d/51712/state" % domid], "4")

    async def test_a_pvh_guest_is_destroyed_without_a_trace(self) -> None:
        before = await self.host_tree()
        domid, _ = await self.create(self.config("pvh1", type="pvh"), "unpause", "last", "destroy", "last")
        await self.assert_nothing_left(before)


class LifecycleTests(CreateTestCase):
    async def test_a_created_guest_boots_connects_its_devices_and_powers_off(self) -> None:
        domid, proc = await self.create(
            self.config("web1"), "watch-death", "last", "unpause", "last", "shutdown", "last", "wait-events", 1
        )
        self.assertEqual([e["shutdown_reason"] for e in proc.events("domain_shutdown")], ["poweroff"])
        fe = await self.tree("/local/domain/%d/device" % domid)
        self.assertEqual(fe["/local/domain/%d/device/vbd/51712/state" % domid], "4")
        self.assertEqual(fe["/local/domain/%d/device/vif/0/state" % domid], "4")

    async def test_reboot_is_acknowledged_by_the_guest(self) -> None:
        domid, proc = await self.create(
            self.config("web1"), "watch-death", "last", "unpause", "last", "reboot", "last", "wait-events", 1
        )
        self.assertEqual([e["shutdown_reason"] for e in proc.events("domain_shutdown")], ["reboot"])

    async def test_destroy_leaves_no_node_domain_saved_config_or_process(self) -> None:
        before = await self.host_tree()
        domid, proc = await self.create(self.config("web1"), "unpause", "last", "sleep", 0.1, "destroy", "last")
        self.assertEqual(proc.results("destroy")[0]["rc"], 0)
        await self.assert_nothing_left(before)

    async def test_pause_and_unpause_work_as_on_sim_made_domains(self) -> None:
        domid, proc = await self.create(self.config("web1"), "unpause", "last", "pause", "last", "info", "last")
        self.assertEqual(proc.results("info")[0]["domain"]["state"], "paused")

    async def test_a_hundred_creates_then_destroys_leave_nothing(self) -> None:
        before = await self.host_tree()
        args: List[Any] = []
        for i in range(100):
            cfg = domain_config("many%d" % i, self.kernel, memory_kb=65536, vcpus=1, nics=[nic(0)])
            args += ["create", self.json("many%d" % i, cfg)]
        created = await self.cclient_ok(*args)
        domids = [line["domid"] for line in created.results("create")]
        self.assertEqual(len(set(domids)), 100)
        self.assertEqual(created.timeouts_fired(), [])
        self.assertEqual(len(await self.sim_domids()), 101)
        destroyed = await self.cclient_ok("ops", "destroy", *domids)
        self.assertEqual(destroyed.results("ops")[0]["failed"], 0)
        await self.assert_nothing_left(before)

    async def test_a_config_libxl_refuses_fails_cleanly(self) -> None:
        before = await self.host_tree()
        cfg = self.config("bad", disks=[disk(self.file("bad.img"), "bogus")])
        proc = self.cclient("create", self.json("bad", cfg))
        self.assertEqual(await proc.finished(), 1)
        self.assertNotEqual(proc.results("create")[0]["rc"], 0)
        self.assertIn(b"Invalid or unsupported virtual disk identifier", proc.stderr)
        await self.assert_nothing_left(before)

    async def test_a_name_in_use_is_refused_and_the_first_domain_stays(self) -> None:
        domid, _ = await self.create(self.config("twin"))
        proc = self.cclient("create", self.json("twin2", self.config("twin")))
        self.assertEqual(await proc.finished(), 1)
        self.assertEqual(await self.sim_domids(), [0, domid])
        self.assertEqual(len(saved_configs(self.host.info["root"])), 1)

    async def test_a_build_that_fails_after_the_domain_exists_leaves_nothing(self) -> None:
        before = await self.host_tree()
        cfg = self.config("nokernel")
        cfg["b_info"]["kernel"] = os.path.join(self.files, "missing-vmlinuz")
        proc = self.cclient("create", self.json("nokernel", cfg))
        self.assertEqual(await proc.finished(), 1)
        self.assertIn(b"xc_dom_kernel_file failed", proc.stderr)
        await self.assert_nothing_left(before)


class HotplugTests(CreateTestCase):
    async def running(self) -> int:
        domid, _ = await self.create(self.config("web1"), "unpause", "last")
        return domid

    async def test_a_disk_added_and_removed_shows_in_config_and_xenstore(self) -> None:
        domid = await self.running()
        extra = self.json("xvdb", disk(self.file("extra.img", size=1 << 20), "xvdb"))
        proc = await self.cclient_ok("disk-add", domid, extra, "config", domid)
        self.assertEqual(proc.timeouts_fired(), [])
        vdevs = [d["vdev"] for d in proc.results("config")[0]["config"]["disks"]]
        self.assertEqual(vdevs, ["xvda", "xvdb"])
        be = "/local/domain/0/backend/vbd/%d/51728" % domid
        self.assertEqual((await self.tree(be))[be + "/state"], "4")
        proc = await self.cclient_ok("disk-remove", domid, extra)
        self.assertEqual(proc.timeouts_fired(), [])
        self.assertEqual([d["vdev"] for d in (await self.retrieved(domid))["disks"]], ["xvda"])
        self.assertNotIn("51728", await self.xenstore("xenstore-list", "/local/domain/0/backend/vbd/%d" % domid))
        self.assertNotIn("51728", await self.xenstore("xenstore-list", "/local/domain/%d/device/vbd" % domid))

    async def test_a_nic_added_and_removed_shows_in_config_and_xenstore(self) -> None:
        domid = await self.running()
        extra = self.json("nic1", nic(1))
        proc = await self.cclient_ok("nic-add", domid, extra, "config", domid)
        self.assertEqual(proc.timeouts_fired(), [])
        macs = [n["mac"] for n in proc.results("config")[0]["config"]["nics"]]
        self.assertEqual(macs, [nic(0)["mac"], nic(1)["mac"]])
        self.assertEqual((await self.xenstore("xenstore-list", "/local/domain/%d/device/vif" % domid)).split(), ["0", "1"])
        await self.cclient_ok("nic-remove", domid, extra)
        self.assertEqual((await self.xenstore("xenstore-list", "/local/domain/%d/device/vif" % domid)).split(), ["0"])
        self.assertEqual(len((await self.retrieved(domid))["nics"]), 1)

    async def test_memory_and_vcpu_changes_land_in_the_hypervisor(self) -> None:
        domid = await self.running()
        proc = await self.cclient_ok("mem-set", domid, 131072, "vcpu-set", domid, 1, "sleep", 0.2, "info", domid)
        info = proc.results("info")[0]["domain"]
        self.assertEqual((info["current_memkb"], info["vcpu_online"]), (131072, 1))
        cfg = await self.retrieved(domid)
        self.assertEqual(cfg["b_info"]["target_memkb"], 131072)

    async def test_rename_and_the_console_tty(self) -> None:
        domid = await self.running()
        proc = await self.cclient_ok("rename", domid, "db1", "name", domid, "console-tty", domid)
        self.assertEqual(proc.results("name")[0]["name"], "db1")
        self.assertEqual(proc.results("console-tty")[0]["tty"], "/dev/pts/sim%d" % domid)
        self.assertEqual((await self.retrieved(domid))["c_info"]["name"], "db1")

    async def test_a_device_cannot_be_added_twice(self) -> None:
        domid = await self.running()
        proc = self.cclient("disk-add", domid, self.json("again", disk(self.file("again.img"), "xvda")))
        self.assertEqual(await proc.finished(), 1)
        self.assertNotEqual(proc.results("disk-add")[0]["rc"], 0)
        self.assertEqual(proc.timeouts_fired(), [])


class NotSimulatedStubTests(CreateTestCase):
    async def test_creation_calls_no_unsimulated_function(self) -> None:
        domid, proc = await self.create(self.config("web1"), "unpause", "last", "destroy", "last")
        self.assertNotIn(b"is not simulated", proc.stderr, proc.describe("a stub was hit"))
        self.assertTrue(is_line(cmd="destroy", rc=0)(proc.results("destroy")[0]))
