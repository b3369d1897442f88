"""
HVM guests through txlibxl on real Xen: a guest with a device model
(``qemu-system-xen`` in dom0, started by libxl) and an emulated IDE CD-ROM,
created with :meth:`~txlibxl.context.Context.create`; its medium ejected
and a new one put in with :meth:`~txlibxl.context.Context.insert_cdrom`
(``libxl_cdrom_insert``); destroyed with nothing left behind.  A create
whose firmware is missing fails typed.

The guest runs no OS: hvmloader and SeaBIOS run until SeaBIOS has found
the emulated drive (its messages reach Xen's console, ``xl dmesg``,
through the debug port); then the guest is paused, and the medium is
changed under the paused guest.  The device model runs all the while.

The eject is the one QEMU does for a guest: the tray opens (QMP ``eject``,
the command libxl's own insert starts with).  Upstream QEMU does not
write the frontend's xenstore ``eject`` node the old device model wrote
(the test checks that nothing came of the tray opening alone), so the
test writes it, and libxl's watch reports the
:class:`~txlibxl.events.DiskEject`.

Runs only in a Xen control domain of the image ``xen/runner.py`` boots,
with HVM in the hypervisor's capabilities and the device model installed;
skipped anywhere else, with what is missing.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SkipTest

from .guests import CommandFailed, poll, run
from .test_building import MEMORY_KB, BuildingTestCase, _hvm_capable, xenstore_has

HVMLOADER = "/usr/lib/xen-4.17/boot/hvmloader"
DEVICE_MODELS = ("/usr/libexec/xen-qemu-system-i386", "/usr/lib/xen-4.17/bin/qemu-system-i386")
CDROM_VDEV = "hdc"
CDROM_DEVID = 5632  # libxl__device_disk_dev_number("hdc")
CDROM_QDEV = f"ide-{CDROM_DEVID}"  # the id libxl gives QEMU's drive


def _hvm_unavailable() -> Optional[str]:
    """Why this dom0 cannot run an HVM guest with a device model, or None."""
    caps = _hvm_capable() or ""
    if "hvm" not in caps:
        return f"the hypervisor offers no HVM guests (capabilities: {caps or 'unreadable'})"
    if not os.path.exists(HVMLOADER):
        return f"dom0 has no {HVMLOADER} (xen-utils-4.17's HVM firmware)"
    if not any(os.path.exists(p) for p in DEVICE_MODELS):
        return f"dom0 has no device model ({' or '.join(DEVICE_MODELS)}; Debian's qemu-system-xen)"
    return None


def hvm_config(name: str, disks: List[Dict[str, Any]], **hvm: Any) -> Dict[str, Any]:
    """An HVM guest's config in libxl's JSON shape: no display, boots from CD-ROM."""
    return {
        "c_info": {"type": "hvm", "name": name},
        "b_info": {
            "max_vcpus": 1,
            "avail_vcpus": [0],
            "max_memkb": MEMORY_KB,
            "target_memkb": MEMORY_KB,
            "device_model_version": "qemu_xen",
            "type.hvm": dict({"vga": {"kind": "none"}, "vnc": {"enable": "False"},
                              "nographic": "True", "boot": "d"}, **hvm),
        },
        "disks": disks,
        "on_poweroff": "destroy",
        "on_reboot": "destroy",
        "on_crash": "destroy",
    }


def _alive(pid: int) -> bool:
    """Whether process C{pid} runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _device_model_processes(matches: Callable[[List[bytes]], bool]) -> List[int]:
    """The live device-model processes (``-xen-domid`` in their command line) whose argv C{matches}."""
    found = []
    for entry in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"-xen-domid" in argv and matches(argv):
            pid = int(entry.split("/")[2])
            if _alive(pid):
                found.append(pid)
    return found


def _device_models(domid: int) -> List[int]:
    """The live processes that are domain C{domid}'s device model."""
    wanted = str(domid).encode()
    return _device_model_processes(
        lambda argv: any(arg == b"-xen-domid" and value == wanted for arg, value in zip(argv, argv[1:]))
    )


class HvmTests(BuildingTestCase):
    """
    An HVM guest with qemu-system-xen as its device model, its CD-ROM
    medium changed through txlibxl.
    """

    # Xen, its HVM guest and the device model in dom0 are all emulated by
    # one TCG QEMU.
    timeout = 900
    log_level = "info"

    def setUp(self) -> None:
        why = _hvm_unavailable()
        if why:
            raise SkipTest(why)
        super().setUp()

    def medium_file(self, name: str, size: int) -> str:
        """A raw CD-ROM image: C{size} bytes, a label at the start."""
        path = os.path.join(self.guests.workdir, name)
        with open(path, "wb") as f:
            f.write(f"REALXEN-CDROM {name}\n".encode())
            f.truncate(size)
        return path

    async def show_device_model(self, domid: int, name: str) -> None:
        """The device model's log and the guest's firmware lines (the record)."""
        for log in sorted(glob.glob(f"/var/log/xen/qemu-dm-{name}.log*")):
            with open(log, errors="replace") as f:
                for line in f.read().splitlines()[-15:]:
                    print(f"QEMU-DM-LOG {line}", flush=True)
        try:
            dmesg = await run("xl", "dmesg")
        except CommandFailed as e:
            dmesg = str(e)
        lines = [line for line in dmesg.splitlines() if f"(d{domid})" in line]
        for line in lines[:6] + (["..."] if len(lines) > 12 else []) + lines[6:][-6:]:
            print(f"HVM-XEN-LOG {line}", flush=True)

    async def medium(self, domid: int) -> Tuple[Optional[str], Optional[int], Optional[bool], Dict[str, Any]]:
        """
        The CD-ROM's medium as libxl's stored configuration and the device
        model (QMP ``query-block``, on the monitor libxl leaves for
        libxenstat) have it: the configured path, the inserted image's
        size and whether the tray is open, and QEMU's whole record.
        """
        from tests.sim.qmp_client import qmp_connect

        config = await self.ctx.domain_config(domid)
        [cd] = [d for d in config.get("disks", []) if d.get("vdev") == CDROM_VDEV]
        client = await qmp_connect(f"/var/run/xen/qmp-libxenstat-{domid}")
        try:
            blocks = await client.call("query-block")
        finally:
            await client.close()
        [block] = [b for b in blocks if CDROM_QDEV in (b.get("qdev"), b.get("device"))]
        inserted = block.get("inserted")
        size = inserted["image"]["virtual-size"] if inserted else None
        return cd.get("pdev_path"), size, block.get("tray_open"), block

    def test_an_hvm_guest_runs_its_device_model_and_takes_a_new_cdrom(self) -> Any:
        return defer.ensureDeferred(self._cdrom())

    async def _cdrom(self) -> None:
        from txlibxl.events import DiskEject

        name = self.guests.name("hvm")
        first = self.medium_file("first.iso", 1 << 20)
        second = self.medium_file("second.iso", 2 << 20)
        cdrom = {"pdev_path": first, "vdev": CDROM_VDEV, "format": "raw", "is_cdrom": 1, "removable": 1}
        config = hvm_config(name, [cdrom])
        self.tracing = True  # libxl's account of the create, on the console
        try:
            domid, _, _ = await self.guests.create(config)
        except Exception:
            await self.show_device_model(-1, name)
            raise
        finally:
            self.tracing = False
        self.addCleanup(lambda: defer.ensureDeferred(self.show_device_model(domid, name)))
        info = self.ctx.domain_info(domid)
        self.assertEqual((info.name, info.type), (name, "hvm"))
        kept = await self.ctx.domain_config(domid)
        self.assertEqual(kept["c_info"]["type"], "hvm")

        pid = int((await run("xenstore-read", f"/local/domain/{domid}/image/device-model-pid")).strip())
        self.assertEqual(_device_models(domid), [pid])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            program = f.read().split(b"\0")[0].decode()
        print(f"DEVICE-MODEL pid={pid} {program}", flush=True)

        started = reactor.seconds()
        await self.ctx.unpause(domid)

        # hvmloader hands over to SeaBIOS, which finds the emulated drive;
        # then the guest is paused, so that none of the firmware's timers
        # (its boot menu's wait, its reset when nothing boots) runs into
        # the test.
        async def found_the_drive() -> bool:
            return any(line.startswith(f"(d{domid}) ") and "DVD/CD [" in line
                       for line in (await run("xl", "dmesg")).splitlines())

        await poll(reactor, found_the_drive, f"domain {domid}'s firmware to find the CD-ROM drive", timeout=300, interval=1)
        await self.ctx.pause(domid)
        print(f"HVM-FIRMWARE SeaBIOS found the drive {reactor.seconds() - started:.1f} s after unpause", flush=True)

        path, size, tray_open, block = await self.medium(domid)
        print(f"QUERY-BLOCK {block}", flush=True)
        self.assertEqual((path, size, tray_open), (first, 1 << 20, False))

        # The guest's eject, as the device model does it and the old one
        # reported it to libxl.
        watch = self.ctx.watch_disk_eject(domid, CDROM_VDEV)
        self.addCleanup(watch.cancel)
        ejected = watch.next_event()
        from tests.sim.qmp_client import qmp_connect

        client = await qmp_connect(f"/var/run/xen/qmp-libxenstat-{domid}")
        try:
            await client.call("eject", {"id": CDROM_QDEV})
        finally:
            await client.close()
        # QEMU tells xenstore nothing of it: libxl has nothing to report.
        eject_node = f"/local/domain/{domid}/device/vbd/{CDROM_DEVID}/eject"
        await task.deferLater(reactor, 3, lambda: None)
        self.assertFalse(await xenstore_has(eject_node), "QEMU wrote the eject node")
        self.assertFalse(ejected.called, "a DiskEject came from QEMU's eject alone")
        await run("xenstore-write", eject_node, "eject")
        event = await ejected
        self.assertIsInstance(event, DiskEject)
        self.assertEqual((event.domid, event.vdev, event.disk.is_cdrom), (domid, CDROM_VDEV, 1))
        self.assertEqual((await self.medium(domid))[1:3], (None, True))

        started = reactor.seconds()
        result = await self.ctx.insert_cdrom(domid, CDROM_VDEV, second)
        print(f"CDROM-INSERTED {second} in {reactor.seconds() - started:.1f} s", flush=True)
        self.assertIsNone(result)
        path, size, tray_open, block = await self.medium(domid)
        print(f"QUERY-BLOCK {block}", flush=True)
        self.assertEqual((path, size, tray_open), (second, 2 << 20, False))

        info = self.ctx.domain_info(domid)
        self.assertEqual((info.paused, info.shutdown, info.dying), (True, False, False))
        await self.ctx.destroy(domid)
        await self.assertGone(domid)
        await poll(reactor, lambda: defer.succeed(not _alive(pid) and not _device_models(domid)),
                   f"domain {domid}'s device model (pid {pid}) to end", 30)
        self.assertEqual(glob.glob(f"/var/run/xen/qmp-lib*-{domid}"), [])

    def test_an_hvm_create_without_its_firmware_fails_typed_and_leaves_no_domain(self) -> Any:
        return defer.ensureDeferred(self._no_firmware())

    async def _no_firmware(self) -> None:
        from txlibxl import errors

        before = self.domids()
        missing = "/var/lib/realxen/no-such-hvmloader"
        config = hvm_config(self.guests.name("nofirmware"), [], firmware=missing)
        with self.assertRaises(errors.LibxlError) as caught:
            domid = await self.ctx.create(config)
            self.guests.names[domid] = config["c_info"]["name"]
        print(f"HVM-CREATE {type(caught.exception).__name__} {caught.exception}", flush=True)
        # The hypervisor builds the HVM domain; libxl then loads its
        # firmware, fails, and takes the domain down again.
        self.assertIsInstance(caught.exception, errors.GeneralFailure)
        self.assertIn(missing, caught.exception.message)
        await poll(reactor, lambda: defer.succeed(self.domids() == before), "the HVM create's domain to go", 30)
        self.assertEqual(_device_models_of_name(config["c_info"]["name"]), [])


def _device_models_of_name(name: str) -> List[int]:
    """Live device-model processes whose command line names guest C{name}."""
    return _device_model_processes(lambda argv: name.encode() in argv)
