"""
The real libxenlight, driven by a C toolstack (``tests/cclient``), on the
simulated host.

Each test starts a fresh simulated host, plays the outside world through
its control socket (a guest shutting down, another toolstack destroying a
domain, QEMU ejecting a CD) and checks what libxl, running in a separate C
process with the shim preloaded, reports.  These tests are the contract
between the simulator and libxl: if one fails, libxl does not see on the
simulator what it would see on Xen.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List

from twisted.internet import reactor, utils
from twisted.trial.unittest import SkipTest

from tests.cclient import CClientBuildError, CClientProcess, CClientUnavailable, cached_build
from txlibxl.testing import SimulatedHostTestCase


def is_line(**fields: Any):
    """A predicate: the line has all these fields with these values."""

    def predicate(line: Dict[str, Any]) -> bool:
        return all(line.get(k) == v for k, v in fields.items())

    return predicate


def is_event(kind: str, domid: int):
    return is_line(event=kind, domid=domid)


class LibxlOnSimTestCase(SimulatedHostTestCase):
    """
    A simulated host and a way to run the C client against it.  The test
    process itself never loads libxenlight.
    """

    simulatedHostInProcess = False
    timeout = 180

    def setUp(self) -> Any:
        try:
            self.cclient_binary = cached_build()
        except CClientUnavailable as e:
            raise SkipTest(f"cannot build the C client: {e}")
        return super().setUp()

    def cclient(self, *args: Any) -> CClientProcess:
        """Start the C client with these commands; killed in cleanup if still running."""
        proc = CClientProcess.spawn(
            reactor, self.cclient_binary, [str(a) for a in args], self.host.environment(preload=True)
        )
        self.addCleanup(proc.ensure_stopped)
        return proc

    async def cclient_ok(self, *args: Any) -> CClientProcess:
        """Run the C client to its end and require exit status 0."""
        proc = self.cclient(*args)
        code = await proc.finished()
        self.assertEqual(code, 0, proc.describe("failed"))
        return proc

    async def create(self, name: str, **kw: Any) -> Dict[str, Any]:
        return await self.host.control.create_domain(name=name, **kw)

    async def watching(self, proc: CClientProcess, domid: int) -> None:
        """Wait until the client's death watch on C{domid} is enabled."""
        line = await proc.wait_for(is_line(cmd="watch-death", domid=domid))
        self.assertEqual(line["rc"], 0, proc.describe("could not watch"))

    async def xenstore(self, tool: str, *args: str) -> str:
        """Run a xenstore-utils tool against the host's xenstored."""
        path = shutil.which(tool)
        if path is None:
            raise SkipTest(f"{tool} is not installed (Debian package xenstore-utils)")
        env = dict(os.environ)
        env.update(self.host.environment())
        out, err, code = await utils.getProcessOutputAndValue(path, list(args), env=env)
        self.assertEqual(code, 0, f"{tool} {' '.join(args)} failed: {err.decode(errors='replace')}")
        return out.decode()

    async def sim_domids(self) -> List[int]:
        return sorted(d["domid"] for d in await self.host.control.list())


class QueryTests(LibxlOnSimTestCase):
    async def test_list_shows_domain0_and_created_domains_with_their_names_and_uuids(self) -> None:
        web = await self.create("web1")
        db = await self.create("db1")
        proc = await self.cclient_ok("list")
        [result] = proc.results("list")
        domains = {d["domid"]: d for d in result["domains"]}
        self.assertEqual(sorted(domains), [0, web["domid"], db["domid"]])
        self.assertEqual(domains[0]["name"], "Domain-0")
        for created in (web, db):
            self.assertEqual(domains[created["domid"]]["name"], created["name"])
            self.assertEqual(domains[created["domid"]]["uuid"], created["uuid"])

    async def test_domain_info_reports_type_memory_vcpus_and_state(self) -> None:
        dom = await self.create("big", type="hvm", memory_kb=524288, vcpus=3)
        proc = await self.cclient_ok("info", dom["domid"])
        [result] = proc.results("info")
        info = result["domain"]
        self.assertEqual(info["type"], "hvm")
        self.assertEqual(info["max_memkb"], 524288)
        self.assertEqual(info["vcpu_online"], 3)
        self.assertEqual((info["shutdown"], info["dying"], info["paused"]), (0, 0, 0))
        self.assertIn(info["state"], ("running", "blocked"))
        self.assertEqual(info["uuid"], dom["uuid"])

    async def test_domain_info_reports_a_paused_domain_as_paused(self) -> None:
        dom = await self.create("held", paused=True)
        proc = await self.cclient_ok("info", dom["domid"])
        self.assertEqual(proc.results("info")[0]["domain"]["state"], "paused")

    async def test_domain_info_of_a_missing_domain_is_an_error(self) -> None:
        proc = self.cclient("info", 4242)
        code = await proc.finished()
        self.assertEqual(code, 1)
        self.assertEqual(proc.results("info")[0]["rc"], -21)  # ERROR_DOMAIN_NOTFOUND

    async def test_domid_to_name_reads_the_name_from_xenstore(self) -> None:
        dom = await self.create("named")
        proc = await self.cclient_ok("name", dom["domid"])
        self.assertEqual(proc.results("name")[0]["name"], "named")

    async def test_pause_and_unpause_change_the_hypervisor_state(self) -> None:
        dom = await self.create("pausable")
        await self.cclient_ok("pause", dom["domid"])
        self.assertEqual((await self.host.control.info(dom["domid"]))["state"], "paused")
        await self.cclient_ok("unpause", dom["domid"])
        self.assertNotEqual((await self.host.control.info(dom["domid"]))["state"], "paused")


class DomainDeathEventTests(LibxlOnSimTestCase):
    async def shutdown_then_destroy(self, reason: str) -> CClientProcess:
        """A guest shuts down with C{reason}, then another toolstack destroys it."""
        dom = await self.create("guest")
        domid = dom["domid"]
        proc = self.cclient("watch-death", domid, "wait-events", 2, 60)
        await self.watching(proc, domid)
        await self.host.control.shutdown(domid, reason)
        await proc.wait_for(is_event("domain_shutdown", domid))
        await self.host.control.destroy([domid])
        await proc.wait_for(is_event("domain_death", domid))
        self.assertEqual(await proc.finished(), 0, proc.describe("failed"))
        self.assertEqual([e["event"] for e in proc.events()], ["domain_shutdown", "domain_death"])
        return proc

    async def test_poweroff_is_reported_as_shutdown_poweroff_then_death(self) -> None:
        proc = await self.shutdown_then_destroy("poweroff")
        self.assertEqual(proc.events("domain_shutdown")[0]["shutdown_reason"], "poweroff")

    async def test_reboot_is_reported_as_shutdown_reboot_then_death(self) -> None:
        proc = await self.shutdown_then_destroy("reboot")
        self.assertEqual(proc.events("domain_shutdown")[0]["shutdown_reason"], "reboot")

    async def test_suspend_is_reported_as_shutdown_suspend_then_death(self) -> None:
        proc = await self.shutdown_then_destroy("suspend")
        self.assertEqual(proc.events("domain_shutdown")[0]["shutdown_reason"], "suspend")

    async def test_crash_is_reported_as_shutdown_crash_then_death(self) -> None:
        proc = await self.shutdown_then_destroy("crash")
        self.assertEqual(proc.events("domain_shutdown")[0]["shutdown_reason"], "crash")

    async def test_destroy_without_shutdown_is_reported_as_death_only(self) -> None:
        dom = await self.create("victim")
        domid = dom["domid"]
        proc = self.cclient("watch-death", domid, "wait-events", 1, 60)
        await self.watching(proc, domid)
        await self.host.control.destroy([domid])
        self.assertEqual(await proc.finished(), 0, proc.describe("failed"))
        self.assertEqual([(e["event"], e["domid"]) for e in proc.events()], [("domain_death", domid)])

    async def test_each_watched_domain_gets_its_own_death(self) -> None:
        doms = [await self.create(f"g{i}") for i in range(3)]
        domids = [d["domid"] for d in doms]
        proc = self.cclient("watch-death", *domids, "wait-events", 3, 60)
        for domid in domids:
            await self.watching(proc, domid)
        await self.host.control.destroy(domids)
        self.assertEqual(await proc.finished(), 0, proc.describe("failed"))
        self.assertEqual(sorted(e["domid"] for e in proc.events("domain_death")), sorted(domids))


class DiskEjectEventTests(LibxlOnSimTestCase):
    async def test_cdrom_eject_is_reported_as_an_empty_cdrom_disk(self) -> None:
        cdrom = {"vdev": "hdc", "cdrom": True, "target": "/srv/iso/install.iso", "format": "raw"}
        dom = await self.create("installer", type="hvm", disks=[cdrom])
        domid = dom["domid"]
        proc = self.cclient("watch-eject", domid, "hdc", "wait-events", 1, 60)
        line = await proc.wait_for(is_line(cmd="watch-eject", domid=domid))
        self.assertEqual(line["rc"], 0, proc.describe("could not watch"))
        await self.host.control.eject(domid, "hdc")
        self.assertEqual(await proc.finished(), 0, proc.describe("failed"))
        [event] = proc.events()
        self.assertEqual((event["event"], event["domid"]), ("disk_eject", domid))
        # What libxl 4.17 reports for an ejected CD-ROM
        # (libxl_disk.c disk_eject_xswatch_callback): an empty, removable,
        # read-only cdrom on the backend domain named by the frontend's
        # "backend" node.
        disk = event["disk"]
        self.assertEqual(
            (disk["backend_domid"], disk["is_cdrom"], disk["removable"], disk["pdev_path"], disk["format"]),
            (0, 1, 1, "", "empty"),
        )
        # The vdev, on Xen as here, is null: libxl 4.17 never sets the
        # event's u.disk_eject.vdev, and takes disk.vdev from the
        # frontend's "dev" node, which its own device creation writes only
        # in the backend.  Users must remember which vdev they watched.
        self.assertEqual((event["vdev"], disk["vdev"]), (None, None))

    async def test_only_the_watched_cdrom_is_reported(self) -> None:
        cdroms = [
            {"vdev": vdev, "cdrom": True, "target": f"/srv/iso/{vdev}.iso", "format": "raw"} for vdev in ("hdc", "hdd")
        ]
        dom = await self.create("two-drives", type="hvm", disks=cdroms)
        domid = dom["domid"]
        proc = self.cclient("watch-eject", domid, "hdd", "wait-events", 1, 60)
        await proc.wait_for(is_line(cmd="watch-eject", domid=domid))
        # Xenstore delivers in order: an event for hdc would come first.
        await self.host.control.eject(domid, "hdc")
        await self.host.control.eject(domid, "hdd")
        self.assertEqual(await proc.finished(), 0, proc.describe("failed"))
        self.assertEqual([e["for_user"] for e in proc.events()], [line["for_user"] for line in proc.results("watch-eject")])
        # hdc (device 5632) was left alone, hdd (5696) acknowledged.
        self.assertEqual((await self.xenstore("xenstore-read", f"/local/domain/{domid}/device/vbd/5632/eject")).strip(), "eject")
        self.assertEqual((await self.xenstore("xenstore-read", f"/local/domain/{domid}/device/vbd/5696/eject")).strip(), "")

    async def test_libxl_acknowledges_the_eject_by_clearing_the_node(self) -> None:
        cdrom = {"vdev": "hdc", "cdrom": True, "target": "/srv/iso/install.iso", "format": "raw"}
        dom = await self.create("installer", type="hvm", disks=[cdrom])
        domid = dom["domid"]
        proc = self.cclient("watch-eject", domid, "hdc", "wait-events", 1, 60)
        await proc.wait_for(is_line(cmd="watch-eject", domid=domid))
        await self.host.control.eject(domid, "hdc")
        self.assertEqual(await proc.finished(), 0, proc.describe("failed"))
        # hdc is xenstore device 5632 (IDE major 22, minor 0).
        value = await self.xenstore("xenstore-read", f"/local/domain/{domid}/device/vbd/5632/eject")
        self.assertEqual(value.strip(), "")


class OperationTests(LibxlOnSimTestCase):
    async def test_shutdown_op_completes_when_the_guest_acks_then_shutdown_is_reported(self) -> None:
        dom = await self.create("polite")
        domid = dom["domid"]
        proc = await self.cclient_ok("watch-death", domid, "shutdown", domid, "wait-events", 1, 60)
        self.assertEqual(proc.results("shutdown"), [{"cmd": "shutdown", "domid": domid, "rc": 0}])
        self.assertEqual(proc.timeouts_fired(), [], "libxl had to time out waiting for the guest")
        [event] = proc.events()
        self.assertEqual((event["event"], event["shutdown_reason"]), ("domain_shutdown", "poweroff"))
        self.assertEqual((await self.host.control.info(domid))["shutdown_reason"], "poweroff")

    async def test_reboot_op_is_reported_as_shutdown_reboot(self) -> None:
        dom = await self.create("rebooter")
        domid = dom["domid"]
        proc = await self.cclient_ok("watch-death", domid, "reboot", domid, "wait-events", 1, 60)
        self.assertEqual(proc.results("reboot")[0]["rc"], 0)
        self.assertEqual(proc.timeouts_fired(), [])
        self.assertEqual(proc.events()[0]["shutdown_reason"], "reboot")

    async def test_destroy_op_completes_without_a_timeout_and_the_domain_is_gone(self) -> None:
        disk = {"vdev": "xvda", "target": "/dev/null", "format": "raw"}
        dom = await self.create("doomed", disks=[disk], vifs=1)
        domid = dom["domid"]
        proc = await self.cclient_ok("watch-death", domid, "destroy", domid, "wait-events", 1, 60)
        self.assertEqual(proc.results("destroy"), [{"cmd": "destroy", "domid": domid, "rc": 0}])
        self.assertEqual(proc.timeouts_fired(), [], "libxl had to time out (backends or hotplug)")
        self.assertEqual([(e["event"], e["domid"]) for e in proc.events()], [("domain_death", domid)])
        self.assertNotIn(domid, await self.sim_domids())
        listed = (await self.cclient_ok("list")).results("list")[0]["domains"]
        self.assertNotIn(domid, [d["domid"] for d in listed])

    async def test_destroy_child_forked_by_libxl_destroys_the_domain_in_the_hypervisor(self) -> None:
        # libxl calls xc_domain_destroy only in a child it forks: the
        # domain leaving the hypervisor and xenstore proves the child ran
        # with the shim, talked to the host and was reaped.
        dom = await self.create("forked")
        domid = dom["domid"]
        proc = await self.cclient_ok("destroy", domid)
        self.assertEqual(proc.results("destroy")[0]["rc"], 0)
        self.assertEqual(await self.sim_domids(), [0])
        domains = (await self.xenstore("xenstore-list", "/local/domain")).split()
        self.assertEqual(domains, ["0"])

    async def test_libxl_state_files_go_under_the_hosts_root(self) -> None:
        # libxl's destroy child records the freed domid in the hard-coded
        # /var/run/xen/domid-history: the shim redirects it under the
        # host's root, which is what lets all this run without root.
        dom = await self.create("recorded")
        await self.cclient_ok("destroy", dom["domid"])
        history = os.path.join(self.host.info["root"], "var", "run", "xen", "domid-history")
        with open(history) as f:
            recorded = [line.split()[-1] for line in f.read().splitlines() if line.strip()]
        self.assertIn(str(dom["domid"]), recorded)

    async def test_a_backend_that_never_closes_makes_libxl_time_out_its_destroy(self) -> None:
        # The control case for the "no timeout fired" checks above: when a
        # backend does not reach Closed, libxl's 10 s LIBXL_DESTROY_TIMEOUT
        # really fires through the client's loop, is reported, and libxl
        # still completes the destroy.
        disk = {"vdev": "xvda", "target": "/dev/null", "format": "raw"}
        dom = await self.create("stuck", disks=[disk])
        await self.host.control.fault("slow_backend", seconds=3600)
        proc = await self.cclient_ok("destroy", dom["domid"])
        self.assertEqual(proc.results("destroy")[0]["rc"], 0)
        self.assertEqual([round(t["after_s"]) for t in proc.timeouts_fired()], [10])
        self.assertNotIn(dom["domid"], await self.sim_domids())
