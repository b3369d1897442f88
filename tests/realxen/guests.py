"""
Real guests on real Xen, for the scenarios: what runs in the dom0 of the
test image (``xen/``), and how a test finds out it is not there.

The guests are created with ``xl create -p`` (libxl's create path is not
in txlibxl), paused.  By default every ``on_*`` action is ``preserve`` and
``-e`` leaves no ``xl`` daemon behind, so that the test's Context alone
sees and handles a shutdown; a :class:`~tests.realxen.scenarios.GuestSpec`
that asks for another action (``on_reboot="restart"``) gets xl's daemon,
which carries it out.

They boot the dom0's own Debian kernel with a busybox initrd whose
``/init`` (``xen/guest/init``) does the guest's action.  The action happens
once per guest, not on every boot: each guest gets its own initrd, the
shared one plus a small overlay (``/realxen-boot``) naming the action.
Once ``xl create`` has loaded it into the new domain, the overlay is
rewritten to ``action=idle boot=restart``; a domain restarted by the
toolstack (xl reads the initrd file again, while nothing of the guest's
memory survives) boots idle and says ``boot=restart``.  Their consoles are
logged by xenconsoled, one file per guest name (a restarted domain's
console goes on in the same file).

The CD-ROM of the disk scenario has no device model behind it (its guest
is PV): its xenstore nodes are written here the way libxl writes a
``phy`` CD-ROM, and its eject is the write the old device model
(``qemu-traditional``) made to the frontend's ``eject`` node.  libxl's
watch, xenstored and the event are real.  An HVM guest's real drive in
``qemu-system-xen`` is in :mod:`tests.realxen.test_hvm`.
"""
from __future__ import annotations

import gzip
import itertools
import os
from typing import Any, List, Optional

from twisted.internet import defer, task, utils

from .scenarios import GuestHost, GuestSpec

__all__ = ["real_xen_unavailable", "RealGuestHost", "CommandFailed"]

IMAGE_DIR = "/var/lib/realxen"
KERNEL = os.path.join(IMAGE_DIR, "vmlinuz")
RAMDISK = os.path.join(IMAGE_DIR, "guest.cpio.gz")
CONSOLE_LOG = "/var/log/xen/console/guest-{name}.log"
CDROM_DEVID = 5632  # libxl__device_disk_dev_number("hdc"): major 22, minor 0


def real_xen_unavailable() -> Optional[str]:
    """
    Why this is not a Xen control domain the real-Xen tests can use, or
    ``None`` if it is one.
    """
    try:
        with open("/proc/xen/capabilities") as f:
            caps = f.read()
    except OSError:
        caps = None
    if caps is None or "control_d" not in caps:
        if not os.path.exists("/dev/xen/privcmd"):
            return "not a Xen control domain (no control_d in /proc/xen/capabilities, no /dev/xen/privcmd)"
    if os.geteuid() != 0:
        return "the real-Xen tests need root in dom0"
    for need in (KERNEL, RAMDISK):
        if not os.path.exists(need):
            return f"{need} is missing: run the real-Xen tests in the image xen/runner.py boots"
    return None


def _newc_entry(name: str, data: bytes, mode: int, ino: int) -> bytes:
    """One entry of a newc cpio archive (the kernel's initramfs format)."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields) + encoded
    header += b"\0" * (-len(header) % 4)
    return header + data + b"\0" * (-len(data) % 4)


def boot_overlay(action: str, boot: str) -> bytes:
    """
    A cpio archive holding ``/realxen-boot`` (``action=...`` and
    ``boot=...``, read by the guest's ``/init``), to follow the guest's
    initrd: the kernel unpacks concatenated archives in order.
    """
    body = f"action={action}\nboot={boot}\n".encode()
    return _newc_entry("realxen-boot", body, 0o100644, 1) + _newc_entry("TRAILER!!!", b"", 0, 0)


def write_initrd(path: str, action: str, boot: str, base: str = RAMDISK) -> None:
    """
    Write (atomically) C{path}: the shared guest initrd, uncompressed, then
    its boot overlay.  One uncompressed stream: libxc inflates a gzip'd PV
    ramdisk to the size the *last* gzip member's trailer gives, so a second
    gzip member after the first makes it fail ("xc_dom_do_gunzip: inflate
    failed", seen when xl restarted a guest).
    """
    with open(base, "rb") as f:
        shared = f.read()
    if shared[:2] == b"\x1f\x8b":
        shared = gzip.decompress(shared)
    shared += b"\0" * (-len(shared) % 4)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(shared + boot_overlay(action, boot))
    os.replace(tmp, path)


class CommandFailed(Exception):
    """A dom0 command exited non-zero; args: the command, status, output."""


def run(*argv: str) -> "defer.Deferred[str]":
    """Run C{argv} without blocking the reactor; its stdout, or CommandFailed."""

    def check(result: Any) -> str:
        out, err, code = result
        if code != 0:
            raise CommandFailed(argv, code, (out + err).decode(errors="replace"))
        return out.decode(errors="replace")

    d = utils.getProcessOutputAndValue(argv[0], argv[1:], env=os.environ)
    d.addCallback(check)
    return d


async def poll(reactor: Any, check: Any, what: str, timeout: float = 90.0, interval: float = 0.25) -> None:
    """Call C{check()} (an awaitable of a bool) until it is true."""
    deadline = reactor.seconds() + timeout
    while not await check():
        if reactor.seconds() >= deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        await task.deferLater(reactor, interval, lambda: None)


class RealGuestHost(GuestHost):
    """
    Guests on this real Xen host.  C{cleanup()} destroys every guest it
    started that is still there (use it as a test cleanup).
    """

    _numbers = itertools.count(1)

    def __init__(self, reactor: Any, workdir: str, memory_mb: int = 128) -> None:
        self._reactor = reactor
        self._workdir = workdir
        self._memory = memory_mb
        self._started: List[int] = []
        self.names: dict = {}

    def initrd(self, name: str) -> str:
        """Where guest C{name}'s own initrd is."""
        return os.path.join(self._workdir, name + ".initrd")

    def config(self, name: str, spec: GuestSpec) -> str:
        """The xl configuration of guest C{name}."""
        return "\n".join(
            [
                f'name = "{name}"',
                f'type = "{spec.type}"',
                f'kernel = "{KERNEL}"',
                f'ramdisk = "{self.initrd(name)}"',
                f'extra = "console=hvc0 quiet realxen.action={spec.action}"',
                f"memory = {self._memory}",
                "vcpus = 1",
                f'on_poweroff = "{spec.on_poweroff}"',
                f'on_reboot = "{spec.on_reboot}"',
                f'on_crash = "{spec.on_crash}"',
                "",
            ]
        )

    @staticmethod
    def create_arguments(spec: GuestSpec, path: str) -> List[str]:
        """
        ``xl create``'s arguments: always paused (``-p``); without xl's
        daemon (``-e``) unless an ``on_*`` action needs it to be carried out.
        """
        return ["create", "-p"] + (["-e"] if spec.preserved else []) + [path]

    async def start(self, spec: GuestSpec) -> int:
        name = f"rx{os.getpid()}-{next(self._numbers)}-{spec.action}"
        path = os.path.join(self._workdir, name + ".cfg")
        with open(path, "w") as f:
            f.write(self.config(name, spec))
        write_initrd(self.initrd(name), spec.action, "first")
        started = self._reactor.seconds()
        await run("xl", *self.create_arguments(spec, path))
        # The domain has its initrd in memory: a restart reads the file again.
        write_initrd(self.initrd(name), "idle", "restart")
        domid = int((await run("xl", "domid", name)).strip())
        print(f"GUEST-CREATED {name} domid={domid} in {self._reactor.seconds() - started:.1f} s", flush=True)
        self._started.append(domid)
        self.names[domid] = name
        if spec.cdrom:
            await self._add_cdrom(domid)
        return domid

    async def _add_cdrom(self, domid: int) -> None:
        front = f"/local/domain/{domid}/device/vbd/{CDROM_DEVID}"
        back = f"/local/domain/0/backend/vbd/{domid}/{CDROM_DEVID}"
        copy = f"/libxl/{domid}/device/vbd/{CDROM_DEVID}"  # libxl's own record
        settings = [
            ("params", "/var/lib/realxen/empty.iso"),
            ("frontend-id", str(domid)),
            ("online", "1"),
            ("removable", "1"),
            ("bootable", "1"),
            ("state", "4"),
            ("dev", "hdc"),
            ("type", "phy"),
            ("mode", "r"),
            ("device-type", "cdrom"),
        ]
        nodes = [(back + "/frontend", front), (copy + "/frontend", front), (copy + "/backend", back)]
        nodes += [(f"{where}/{k}", v) for where in (back, copy) for k, v in settings]
        nodes += [
            (front + "/backend", back),
            (front + "/backend-id", "0"),
            (front + "/state", "4"),
            (front + "/virtual-device", str(CDROM_DEVID)),
            (front + "/device-type", "cdrom"),
        ]
        await run("xenstore-write", *[x for pair in nodes for x in pair])
        await run("xenstore-chmod", front, f"n{domid}", "r0")
        await run("xenstore-chmod", back, "n0", f"r{domid}")

    async def ready(self, domid: int, boot: str = "first") -> None:
        """Fires once guest C{domid}'s console says it is up (on its C{boot})."""
        log = CONSOLE_LOG.format(name=self.names[domid])

        async def booted() -> bool:
            try:
                with open(log, errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError:
                return False
            return any("GUEST-READY" in line and f"boot={boot}" in line for line in lines)

        await poll(self._reactor, booted, f"guest {domid} to boot ({log}, boot={boot})", timeout=120)

    async def act(self, domid: int, action: str) -> None:
        return None  # the guest's /init does it by itself

    async def request_written(self, domid: int) -> None:
        node = f"/local/domain/{domid}/control/shutdown"

        async def written() -> bool:
            try:
                return (await run("xenstore-read", node)).strip() != ""
            except CommandFailed:
                return False

        await poll(self._reactor, written, f"libxl to write {node}")

    async def eject(self, domid: int, vdev: str) -> None:
        await run("xenstore-write", f"/local/domain/{domid}/device/vbd/{CDROM_DEVID}/eject", "eject")

    def console(self, domid: int) -> str:
        """The guest's console log so far (for failure messages)."""
        try:
            with open(CONSOLE_LOG.format(name=self.names[domid]), errors="replace") as f:
                return f.read()
        except (OSError, KeyError):
            return ""

    async def cleanup(self) -> None:
        # A domain the toolstack restarted has a new domid, the same name.
        for domid, name in self.names.items():
            try:
                current = int((await run("xl", "domid", name)).strip())
            except (CommandFailed, ValueError):
                continue
            if current not in self._started:
                self._started.append(current)
        for domid in self._started:
            # The hand-made CD-ROM has no backend to answer a device
            # removal: drop it, or libxl's destroy waits 10 s for it.
            for path in (f"/libxl/{domid}/device/vbd", f"/local/domain/{domid}/device/vbd",
                         f"/local/domain/0/backend/vbd/{domid}"):
                await run("xenstore-rm", path).addErrback(lambda _: None)
            await run("xl", "destroy", str(domid)).addErrback(lambda _: None)
