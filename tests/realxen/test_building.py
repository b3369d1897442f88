"""
Building and changing domains through txlibxl on real Xen: guests created
with :meth:`~txlibxl.context.Context.create` from libxl JSON configs (not
``xl create``), booted, changed while they run (disks, NICs, memory
target, vCPUs, name) and destroyed; a create that fails leaves nothing.
HVM guests, with their device model and CD-ROM, are in
:mod:`tests.realxen.test_hvm`.

Runs only in a Xen control domain with the guest kernel and initrd of the
image ``xen/runner.py`` boots (:func:`~tests.realxen.guests.real_xen_unavailable`);
skipped anywhere else.  A device test whose dom0 lacks what the device
needs (a backend driver, a bridge) is skipped with what is missing, never
passed.
"""
from __future__ import annotations

import glob
import itertools
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest, TestCase

from .guests import CONSOLE_LOG, KERNEL, CommandFailed, poll, real_xen_unavailable, run, write_initrd

_UNAVAILABLE = real_xen_unavailable()

BRIDGE = "xenbr0"
MEMORY_KB = 131072


def _hvm_capable() -> Optional[str]:
    """The hypervisor's capabilities line, or None if unreadable."""
    try:
        with open("/sys/hypervisor/properties/capabilities") as f:
            return f.read().strip()
    except OSError:
        return None


async def _modprobe(loaded: List[str], *modules: str) -> Optional[str]:
    """
    Load C{modules} (or see them loaded or built in), adding those this
    call loaded to C{loaded}; why not, or None.
    """
    for module in modules:
        if os.path.isdir(f"/sys/module/{module.replace('-', '_')}"):
            continue
        try:
            await run("modprobe", module)
        except CommandFailed as e:
            return f"dom0 cannot load {module} ({e.args[2].strip() or 'modprobe failed'})"
        loaded.append(module)
    return None


class Building:
    """
    Guests of one test: their configs, initrds and console logs, and a
    cleanup that destroys whatever is left.
    """

    _numbers = itertools.count(1)

    def __init__(self, ctx: Any, workdir: str) -> None:
        self.ctx = ctx
        self.workdir = workdir
        self.names: Dict[int, str] = {}
        self.loops: List[str] = []
        #: Modules a test loaded: unloaded again, so that the modules that
        #: run after this one find dom0 as it was (a loaded xen-blkback
        #: would take up the scenarios' hand-made CD-ROM).
        self.modules: List[str] = []

    def name(self, what: str) -> str:
        return f"bx{os.getpid()}-{next(self._numbers)}-{what}"

    def config(self, name: str, type: str = "pv", vcpus: int = 1, kernel: str = KERNEL) -> Dict[str, Any]:
        """A guest's config in libxl's JSON shape (no UUID: txlibxl gives one)."""
        initrd = os.path.join(self.workdir, name + ".initrd")
        write_initrd(initrd, "idle", "first")
        return {
            "c_info": {"type": type, "name": name},
            "b_info": {
                "max_vcpus": vcpus,
                # libxl makes only vCPU 0 available unless told (xl's vcpus=).
                "avail_vcpus": list(range(vcpus)),
                "max_memkb": MEMORY_KB,
                "target_memkb": MEMORY_KB,
                "kernel": kernel,
                "ramdisk": initrd,
                "cmdline": "console=hvc0 quiet realxen.action=idle",
                f"type.{type}": {},
            },
            "on_poweroff": "destroy",
            "on_reboot": "destroy",
            "on_crash": "destroy",
        }

    async def create(self, config: Dict[str, Any]) -> tuple:
        """Create C{config}; (domid, the console reports, seconds)."""
        started = reactor.seconds()
        consoles: List[Any] = []
        d = self.ctx.create(config, on_console=consoles.append)
        fired: List[int] = []

        def once(domid: int) -> int:
            fired.append(domid)
            return domid

        d.addCallback(once)
        domid = await d
        self.names[domid] = config["c_info"]["name"]
        elapsed = reactor.seconds() - started
        print(f"GUEST-CREATED {config['c_info']['name']} domid={domid} through txlibxl in {elapsed:.1f} s", flush=True)
        if fired != [domid]:
            raise AssertionError(f"the create's Deferred fired {fired}, not once with {domid}")
        return domid, consoles, elapsed

    def console(self, name: str) -> str:
        try:
            with open(CONSOLE_LOG.format(name=name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    async def booted(self, domid: int) -> None:
        """Fires once the guest's /init says it is up."""
        name = self.names[domid]

        async def ready() -> bool:
            return "GUEST-READY action=idle boot=first" in self.console(name)

        await poll(reactor, ready, f"guest {name} (domain {domid}) to boot", timeout=180)

    async def loop_device(self, size_mb: int = 8) -> str:
        """A new loop device over a new sparse file."""
        image = os.path.join(self.workdir, f"disk{len(self.loops)}.img")
        with open(image, "wb") as f:
            f.truncate(size_mb << 20)
        device = (await run("losetup", "--find", "--show", image)).strip()
        self.loops.append(device)
        return device

    def show_consoles(self) -> None:
        for name in self.names.values():
            for line in self.console(name).splitlines()[-8:]:
                print(f"GUEST-CONSOLE {name}: {line}")

    async def cleanup(self) -> None:
        for domid in self.names:
            await run("xl", "destroy", str(domid)).addErrback(lambda _: None)
        for device in self.loops:
            await run("losetup", "-d", device).addErrback(lambda _: None)
        for module in reversed(self.modules):
            await run("modprobe", "-r", module).addErrback(lambda _: None)


async def xenstore_has(path: str) -> bool:
    try:
        await run("xenstore-exists", path)
    except CommandFailed:
        return False
    return True


class BuildingTestCase(TestCase):
    # A create is 10-20 s under TCG on an idle machine, a boot as long
    # again; three times as long on a loaded one.
    timeout = 480
    if _UNAVAILABLE:
        skip = _UNAVAILABLE

    #: libxl's log level; its messages go to dom0's console while
    #: C{self.tracing} is true.
    log_level = "warn"

    def setUp(self) -> None:
        from twisted.logger import globalLogPublisher

        from txlibxl.context import Context

        self.tracing = False

        def show(event: Dict[str, Any]) -> None:
            if self.tracing and "text" in event:
                print(f"LIBXL-LOG {event['text'].rstrip()}", flush=True)

        globalLogPublisher.addObserver(show)
        self.addCleanup(globalLogPublisher.removeObserver, show)
        self.ctx = Context(reactor, log_level=self.log_level)
        self.addCleanup(self.ctx.close)
        workdir = tempfile.mkdtemp(prefix="realxen-build-")
        self.addCleanup(shutil.rmtree, workdir, True)
        self.guests = Building(self.ctx, workdir)
        self.addCleanup(lambda: defer.ensureDeferred(self.guests.cleanup()))
        self.addCleanup(self.guests.show_consoles)

    def domids(self) -> List[int]:
        return sorted(d.domid for d in self.ctx.list_domains())

    async def assertGone(self, domid: int) -> None:
        """Nothing of domain C{domid} is left: hypervisor, xenstore, libxl's files."""
        await poll(reactor, lambda: defer.succeed(domid not in self.domids()), f"domain {domid} to go", 30)
        for path in (f"/local/domain/{domid}", f"/libxl/{domid}", f"/local/domain/0/backend/vbd/{domid}",
                     f"/local/domain/0/backend/vif/{domid}"):
            self.assertFalse(await xenstore_has(path), f"{path} is still in xenstore")
        self.assertEqual(glob.glob(f"/var/lib/xen/userdata-d.{domid}.*"), [])

    async def start_pv(self, what: str, vcpus: int = 1) -> tuple:
        config = self.guests.config(self.guests.name(what), vcpus=vcpus)
        domid, consoles, _ = await self.guests.create(config)
        return config, domid, consoles


class CreateTests(BuildingTestCase):
    """
    PV and PVH guests created through txlibxl, booted, changed, destroyed.
    """

    def test_a_pv_guest_is_created_boots_changes_and_is_destroyed(self) -> Any:
        return defer.ensureDeferred(self._pv())

    async def _pv(self) -> None:
        config, domid, consoles = await self.start_pv("pv", vcpus=2)
        name = config["c_info"]["name"]
        info = self.ctx.domain_info(domid)
        # Reported once, before the Deferred fired with the domid.
        self.assertEqual(len(consoles), 1)
        self.assertEqual((consoles[0].domid, consoles[0].uuid), (domid, info.uuid))
        self.assertEqual((info.name, info.type, info.paused), (name, "pv", True))

        kept = await self.ctx.domain_config(domid)
        self.assertEqual(kept["c_info"]["name"], name)
        self.assertEqual(kept["c_info"]["type"], "pv")
        self.assertEqual(kept["c_info"]["uuid"], info.uuid)
        for key in ("max_vcpus", "avail_vcpus", "max_memkb", "target_memkb", "kernel", "ramdisk", "cmdline"):
            self.assertEqual(kept["b_info"][key], config["b_info"][key], key)
        # What libxl keeps is a config libxl reads back as it is.
        from txlibxl import config as _config

        _config.libxl_json("domain_config", kept, self.ctx._ctx.json_round_trip)

        await self.ctx.unpause(domid)
        await self.guests.booted(domid)
        self.assertFalse(self.ctx.domain_info(domid).paused)

        tty = self.ctx.console_tty(domid)
        self.assertTrue(tty.startswith("/dev/pts/"), tty)
        self.assertTrue(os.path.exists(tty), tty)

        self.ctx.set_memory_target(domid, MEMORY_KB - 32768)
        self.assertEqual(self.ctx.memory_target(domid), MEMORY_KB - 32768)
        kept = await self.ctx.domain_config(domid)
        self.assertEqual(kept["b_info"]["target_memkb"], MEMORY_KB - 32768)

        # The guest's kernel takes a vCPU offline itself when xenstore says
        # so; bringing one online it leaves to its userspace (udev), which
        # the busybox guest does not have: libxl's part is the xenstore node.
        self.assertEqual(self.ctx.domain_info(domid).vcpus_online, 2)
        availability = f"/local/domain/{domid}/cpu/1/availability"
        await self.ctx.set_vcpus(domid, 1)
        self.assertEqual((await run("xenstore-read", availability)).strip(), "offline")
        await poll(reactor, lambda: defer.succeed(self.ctx.domain_info(domid).vcpus_online == 1),
                   "the guest to take vCPU 1 offline", 60)
        await self.ctx.set_vcpus(domid, 2)
        self.assertEqual((await run("xenstore-read", availability)).strip(), "online")

        self.ctx.rename(domid, name + "-renamed", old_name=name)
        self.assertEqual(self.ctx.domid_to_name(domid), name + "-renamed")
        self.assertEqual(self.ctx.name_to_domid(name + "-renamed"), domid)
        self.assertEqual((await self.ctx.domain_config(domid))["c_info"]["name"], name + "-renamed")

        await self.ctx.destroy(domid)
        await self.assertGone(domid)

    def test_a_pvh_guest_is_created_and_boots(self) -> Any:
        caps = _hvm_capable() or ""
        if "hvm" not in caps:
            raise SkipTest(f"the hypervisor offers no HVM containers for PVH (capabilities: {caps})")
        return defer.ensureDeferred(self._pvh())

    async def _pvh(self) -> None:
        config = self.guests.config(self.guests.name("pvh"), type="pvh")
        domid, consoles, _ = await self.guests.create(config)
        self.assertEqual([c.domid for c in consoles], [domid])
        self.assertEqual((await self.ctx.domain_config(domid))["c_info"]["type"], "pvh")
        await self.ctx.unpause(domid)
        await self.guests.booted(domid)
        await self.ctx.destroy(domid)
        await self.assertGone(domid)

    def test_a_create_that_fails_leaves_no_domain(self) -> Any:
        return defer.ensureDeferred(self._failing())

    async def _failing(self) -> None:
        before = self.domids()
        config = self.guests.config(self.guests.name("nokernel"), kernel="/var/lib/realxen/no-such-vmlinuz")
        consoles: List[Any] = []
        with self.assertRaises(Exception) as caught:
            await self.ctx.create(config, on_console=consoles.append)
        from txlibxl import errors

        self.assertIsInstance(caught.exception, errors.LibxlError)
        print(f"FAILED-CREATE {type(caught.exception).__name__}: {caught.exception}", flush=True)
        self.assertEqual(consoles, [])
        await poll(reactor, lambda: defer.succeed(self.domids() == before), "the failed create's domain to go", 30)
        self.assertNotIn(config["c_info"]["name"], [d.name for d in self.ctx.list_domains()])


class DeviceTests(BuildingTestCase):
    """
    Disks and NICs added to and removed from a running guest created
    through txlibxl.  The guest's busybox initrd loads no frontend
    drivers, so its disks and NICs are never connected on the guest's
    side: libxl's add completes once the backend and its hotplug script
    are done, and its remove, with no frontend to close the device, once
    libxl has waited for the backend and taken it down itself.
    """

    log_level = "debug"

    async def show_state(self, domid: int, kind: str) -> None:
        """What xenstore and the kernel say of the backends (on a failure)."""
        for argv in (("xenstore-ls", "-fp", f"/local/domain/0/backend/{kind}/{domid}"),
                     ("xenstore-ls", "-fp", f"/local/domain/{domid}/device/{kind}"),
                     ("ls", "/sys/bus/xen-backend/drivers", "/sys/bus/xen-backend/devices"),
                     ("lsmod",)):
            try:
                out = await run(*argv)
            except (CommandFailed, OSError) as e:
                out = f"{e}"
            for line in out.splitlines():
                print(f"STATE {' '.join(argv[:1])}: {line}", flush=True)

    async def _network_tools(self) -> None:
        """
        ``vif-bridge`` runs ``ip`` and ``brctl``; a dom0 without iproute2
        and bridge-utils gets busybox's, for this test's hotplug scripts.
        """
        missing = [tool for tool in ("ip", "brctl") if shutil.which(tool) is None]
        busybox = shutil.which("busybox")
        if not missing:
            return
        if busybox is None:
            raise SkipTest(f"dom0 has no {' or '.join(missing)} for the vif-bridge hotplug script, nor busybox")
        tools = os.path.join(self.guests.workdir, "bin")
        os.makedirs(tools, exist_ok=True)
        for tool in missing:
            os.symlink(busybox, os.path.join(tools, tool))
        old = os.environ["PATH"]
        os.environ["PATH"] = old + os.pathsep + tools
        self.addCleanup(os.environ.__setitem__, "PATH", old)
        print(f"NETWORK-TOOLS busybox for {', '.join(missing)}", flush=True)

    def test_a_disk_is_added_and_removed_while_the_guest_runs(self) -> Any:
        return defer.ensureDeferred(self._disk())

    async def _disk(self) -> None:
        why = await _modprobe(self.guests.modules, "loop", "xen-blkback")
        if why:
            raise SkipTest(why)
        device = await self.guests.loop_device()
        _, domid, _ = await self.start_pv("disk")
        await self.ctx.unpause(domid)
        await self.guests.booted(domid)

        started = reactor.seconds()
        self.tracing = True
        try:
            added = await self.ctx.add_disk(domid, f"phy:{device},xvdb,w")
        except Exception:
            await self.show_state(domid, "vbd")
            raise
        print(f"DISK-ADDED {device} in {reactor.seconds() - started:.1f} s", flush=True)
        self.assertEqual((added["vdev"], added["pdev_path"]), ("xvdb", device))
        kept = await self.ctx.domain_config(domid)
        self.assertEqual([d["vdev"] for d in kept.get("disks", [])], ["xvdb"])
        [devid] = (await run("xenstore-list", f"/local/domain/0/backend/vbd/{domid}")).split()
        backend = f"/local/domain/0/backend/vbd/{domid}/{devid}"
        self.assertEqual((await run("xenstore-read", backend + "/params")).strip(), device)

        started = reactor.seconds()
        await self.ctx.remove_disk(domid, "xvdb")
        print(f"DISK-REMOVED in {reactor.seconds() - started:.1f} s", flush=True)
        kept = await self.ctx.domain_config(domid)
        self.assertEqual(kept.get("disks", []), [])
        self.assertFalse(await xenstore_has(backend))

        await self.ctx.destroy(domid)
        await self.assertGone(domid)

    def test_a_nic_is_added_and_removed_while_the_guest_runs(self) -> Any:
        return defer.ensureDeferred(self._nic())

    async def _nic(self) -> None:
        why = await _modprobe(self.guests.modules, "xen-netback")
        if why:
            raise SkipTest(why)
        await self._network_tools()
        if not os.path.isdir(f"/sys/class/net/{BRIDGE}/bridge"):
            why = await _modprobe(self.guests.modules, "bridge")
            if why:
                raise SkipTest(f"no bridge {BRIDGE} in dom0, and {why}")
            try:
                await run("brctl", "addbr", BRIDGE)
                await run("ip", "link", "set", "dev", BRIDGE, "up")
            except CommandFailed as e:
                raise SkipTest(f"no bridge {BRIDGE} in dom0, and making one failed: {e}")
            self.addCleanup(lambda: run("brctl", "delbr", BRIDGE).addErrback(lambda _: None))
            self.addCleanup(lambda: run("ip", "link", "set", "dev", BRIDGE, "down").addErrback(lambda _: None))
        _, domid, _ = await self.start_pv("nic")
        await self.ctx.unpause(domid)
        await self.guests.booted(domid)

        started = reactor.seconds()
        self.tracing = True
        nic = await self.ctx.add_nic(domid, {"bridge": BRIDGE})
        print(f"NIC-ADDED {nic.get('mac')} in {reactor.seconds() - started:.1f} s", flush=True)
        self.assertTrue(nic["mac"].startswith("00:16:3e:"), nic)
        kept = await self.ctx.domain_config(domid)
        self.assertEqual([n["mac"] for n in kept.get("nics", [])], [nic["mac"]])
        backend = f"/local/domain/0/backend/vif/{domid}/{nic['devid']}"
        self.assertTrue(await xenstore_has(backend))

        started = reactor.seconds()
        await self.ctx.remove_nic(domid, nic["mac"])
        print(f"NIC-REMOVED in {reactor.seconds() - started:.1f} s", flush=True)
        kept = await self.ctx.domain_config(domid)
        self.assertEqual(kept.get("nics", []), [])
        self.assertFalse(await xenstore_has(backend))

        await self.ctx.destroy(domid)
        await self.assertGone(domid)
