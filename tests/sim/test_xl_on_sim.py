"""
The real ``xl`` (Debian's xen-utils-4.17) as a second toolstack on the
simulated host: the shim LD_PRELOADed, the host's environment, nothing
else.  It creates PV guests from xl configuration files, reads the domains
the simulator made itself, and runs the lifecycle and device commands; the
monitor it forks for a created domain ends with the domain.

Skipped, with the reason, where xl is not installed.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Tuple

from twisted.internet import reactor, task, utils
from twisted.trial.unittest import SkipTest

from tests.sim.libxl_configs import leftover_processes, saved_configs
from tests.sim.test_libxl_create import CreateTestCase

#: Debian's xl; /usr/sbin/xl is a wrapper that wants /sys/hypervisor.
XL = "/usr/lib/xen-4.17/bin/xl"


class XlTestCase(CreateTestCase):
    def setUp(self) -> Any:
        if not os.access(XL, os.X_OK):
            raise SkipTest(f"{XL} is not installed (Debian package xen-utils-4.17)")
        return super().setUp()

    async def xl(self, *args: Any, ok: bool = True) -> Tuple[str, str, int]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(self.host.environment(preload=True))
        out, err, code = await utils.getProcessOutputAndValue(
            XL, [str(a) for a in args], env=env, path=self.files
        )
        if ok:
            self.assertEqual(code, 0, "xl %s failed (%d): %s" % (" ".join(map(str, args)), code,
                                                                err.decode(errors="replace")))
            self.assertNotIn(b"is not simulated", err, "xl %s hit a stub" % (args,))
        return out.decode(), err.decode(), code

    def xl_config(self, name: str, type: str = "pv") -> str:
        image = self.file(name + ".img", size=1 << 24)
        path = os.path.join(self.files, name + ".cfg")
        with open(path, "w") as f:
            f.write(
                'name = "%s"\ntype = "%s"\nkernel = "%s"\nmemory = 256\nvcpus = 2\n'
                'disk = [ "format=raw, vdev=xvda, access=rw, target=%s" ]\n'
                'vif = [ "mac=00:16:3e:5e:01:01,bridge=xenbr0" ]\n' % (name, type, self.kernel, image)
            )
        return path

    async def domain_named(self, name: str) -> Dict[str, Any]:
        [domain] = [d for d in await self.host.control.list() if d["name"] == name]
        return domain



class XlCreateTests(XlTestCase):
    async def test_xl_create_runs_a_pv_guest_whose_monitor_ends_with_it(self) -> None:
        before = await self.host_tree()
        await self.xl("create", self.xl_config("xl1"))
        domain = await self.domain_named("xl1")
        self.assertEqual((domain["type"], domain["state"]), ("pv", "running"))
        self.assertEqual(len(leftover_processes(self.host.info["hypercall"])), 1, "no xl monitor")
        self.assertTrue(os.path.exists(os.path.join(self.host.info["root"], "var/log/xen/xl-xl1.log")))
        await self.xl("destroy", "xl1")
        await self.no_process_left()
        await self.assert_nothing_left(before)

    async def test_xl_create_runs_a_pvh_guest(self) -> None:
        before = await self.host_tree()
        await self.xl("create", "-e", self.xl_config("pvh1", type="pvh"))
        domain = await self.domain_named("pvh1")
        self.assertEqual((domain["type"], domain["state"]), ("pvh", "running"))
        out, _, _ = await self.xl("list", "-l", "pvh1")
        self.assertEqual(json.loads(out)[0]["config"]["c_info"]["type"], "pvh")
        await self.xl("destroy", "pvh1")
        await self.assert_nothing_left(before)

    async def test_xl_create_e_leaves_no_monitor(self) -> None:
        await self.xl("create", "-e", self.xl_config("xl1"))
        self.assertEqual(leftover_processes(self.host.info["hypercall"]), [])
        self.assertEqual((await self.domain_named("xl1"))["state"], "running")

    async def test_xl_dry_run_prints_json_that_libxl_creates_from(self) -> None:
        out, _, _ = await self.xl("-N", "create", self.xl_config("dry"))
        cfg = json.loads(out)
        self.assertEqual((cfg["c_info"]["name"], cfg["b_info"]["max_memkb"]), ("dry", 262144))
        self.assertEqual(await self.sim_domids(), [0])
        domid, _ = await self.create(cfg)
        self.assertEqual((await self.domain_named("dry"))["domid"], domid)

    async def test_xl_list_l_reads_the_saved_configuration(self) -> None:
        await self.xl("create", "-e", self.xl_config("xl1"))
        out, _, _ = await self.xl("list", "-l", "xl1")
        [entry] = json.loads(out)
        domain = await self.domain_named("xl1")
        self.assertEqual(entry["domid"], domain["domid"])
        self.assertEqual(entry["config"]["c_info"]["uuid"], domain["uuid"])
        [saved] = saved_configs(self.host.info["root"]).values()
        self.assertEqual(saved["c_info"]["uuid"], domain["uuid"])
        self.assertEqual([d["vdev"] for d in entry["config"]["disks"]], ["xvda"])


class XlOnSimMadeDomainsTests(XlTestCase):
    async def test_xl_list_shows_the_simulators_domains(self) -> None:
        dom = await self.host.control.create_domain(name="web1", vcpus=2, memory_kb=524288)
        out, _, _ = await self.xl("list")
        rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
        self.assertEqual(rows["web1"][1:4], [str(dom["domid"]), "512", "2"])

    async def test_xl_list_l_reads_what_the_simulator_saved_in_libxls_place(self) -> None:
        disks = [{"vdev": "xvda", "target": "/dev/null"}]
        dom = await self.host.control.create_domain(name="web1", vcpus=2, disks=disks, vifs=1)
        out, _, _ = await self.xl("list", "-l", "web1")
        [entry] = json.loads(out)
        cfg = entry["config"]
        self.assertEqual((entry["domid"], cfg["c_info"]["uuid"]), (dom["domid"], dom["uuid"]))
        self.assertEqual(([d["vdev"] for d in cfg["disks"]], len(cfg["nics"])), (["xvda"], 1))
        await self.host.control.destroy([dom["domid"]])
        await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(saved_configs(self.host.info["root"]), {})

    async def test_xl_info_describes_the_simulated_host(self) -> None:
        out, _, _ = await self.xl("info")
        info = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in out.splitlines()))
        self.assertEqual((info["nr_cpus"], info["nr_nodes"]), ("4", "1"))
        self.assertEqual((info["xen_version"], info["xen_scheduler"]), ("4.17.0-txsim", "credit2"))
        self.assertEqual(info["virt_caps"].split()[:2], ["pv", "hvm"])
        self.assertEqual(int(info["total_memory"]), 16 * 1024 * 1024)

    async def test_xl_vcpu_list_shows_every_vcpu_of_a_domain(self) -> None:
        dom = await self.host.control.create_domain(name="web1", vcpus=3)
        out, _, _ = await self.xl("vcpu-list", "web1")
        rows = [line.split() for line in out.splitlines()[1:]]
        self.assertEqual([(r[0], r[1], r[2]) for r in rows], [("web1", str(dom["domid"]), str(v)) for v in range(3)])
        self.assertEqual({r[6] for r in rows}, {"all"})


class XlLifecycleTests(XlTestCase):
    async def started(self) -> int:
        await self.xl("create", self.xl_config("xl1"))
        return (await self.domain_named("xl1"))["domid"]

    async def test_pause_unpause_mem_set_and_vcpu_set(self) -> None:
        domid = await self.started()
        await self.xl("pause", "xl1")
        self.assertEqual((await self.domain_named("xl1"))["state"], "paused")
        await self.xl("unpause", "xl1")
        await self.xl("mem-set", "xl1", "128m")
        await self.xl("vcpu-set", "xl1", "1")
        await task.deferLater(reactor, 0.2, lambda: None)
        out, _, _ = await self.xl("list", "xl1")
        self.assertEqual(out.splitlines()[1].split()[1:4], [str(domid), "128", "1"])
        out, _, _ = await self.xl("vcpu-list", "xl1")
        # vCPU, CPU, state: the one taken down has no CPU and is offline.
        rows = [line.split()[2:5] for line in out.splitlines()[1:]]
        self.assertEqual([(r[0], r[2]) for r in rows], [("0", "r--"), ("1", "--p")])
        self.assertEqual(rows[1][1], "-")
        await self.xl("destroy", "xl1")
        await self.no_process_left()

    async def test_block_and_network_attach_and_detach(self) -> None:
        await self.started()
        extra = self.file("extra.img", size=1 << 20)
        await self.xl("block-attach", "xl1", "format=raw,vdev=xvdb,access=rw,target=%s" % extra)
        out, _, _ = await self.xl("block-list", "xl1")
        self.assertEqual([line.split()[0] for line in out.splitlines()[1:]], ["51712", "51728"])
        await self.xl("block-detach", "xl1", "xvdb")
        out, _, _ = await self.xl("block-list", "xl1")
        self.assertEqual([line.split()[0] for line in out.splitlines()[1:]], ["51712"])
        await self.xl("network-attach", "xl1", "mac=00:16:3e:5e:01:02,bridge=xenbr0")
        out, _, _ = await self.xl("network-list", "xl1")
        self.assertEqual([line.split()[4] for line in out.splitlines()[1:]], ["4", "4"])
        await self.xl("network-detach", "xl1", "1")
        out, _, _ = await self.xl("network-list", "xl1")
        self.assertEqual(len(out.splitlines()[1:]), 1)
        await self.xl("destroy", "xl1")
        await self.no_process_left()

    async def test_rename_then_shutdown_ends_the_monitor(self) -> None:
        before = await self.host_tree()
        await self.started()
        await self.xl("rename", "xl1", "xl2")
        self.assertEqual((await self.domain_named("xl2"))["state"], "running")
        await self.xl("shutdown", "-w", "xl2")
        await self.no_process_left()
        await self.assert_nothing_left(before)

    async def test_reboot_makes_the_monitor_rebuild_the_domain(self) -> None:
        first = await self.started()
        await self.xl("reboot", "-w", "xl1")
        rebuilt = None
        for _ in range(100):
            named = [d for d in await self.host.control.list() if d["name"] == "xl1"]
            if named and named[0]["domid"] != first and named[0]["state"] == "running":
                rebuilt = named[0]
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertIsNotNone(rebuilt, "the monitor did not rebuild xl1")
        await self.xl("destroy", "xl1")
        await self.no_process_left()
