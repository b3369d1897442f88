"""
The QEMU command line libxl 4.17 gives an HVM guest's device model
(``libxl__build_device_model_args_new``), parsed into what the stand-in
needs: the domain, the QMP monitors and their sockets, the drives and the
devices that use them, VNC, the serial ports, whether to start paused and
an incoming state.

QEMU's own rules are kept where they matter: an option is ``-name`` or
``--name``; every option takes one argument but the flags in
:data:`FLAGS`; an option argument is a comma-separated list of
``key=value`` (a first item without ``=`` is the option's implied key,
``socket`` in ``-chardev socket,id=...``), where ``,,`` is a literal
comma.  Options the stand-in has no use for are accepted and ignored, as
long as they are well formed.  Anything libxl could not have written (no
``-xen-domid``, an option without its argument) is a :class:`UsageError`,
with which QEMU would exit at once.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import attr

__all__ = ["FLAGS", "Chardev", "CommandLine", "Drive", "UsageError", "parse", "split_options"]

#: The options that take no argument (QEMU 7.2's, of those a toolstack
#: may pass).
FLAGS = frozenset(
    "-S -no-shutdown -nodefaults -no-user-config -nographic -no-reboot -daemonize "
    "-enable-kvm -no-hpet -no-acpi -usb -snapshot -full-screen -no-quit -s "
    "-no-fd-bootchk -only-migratable -xen-attach -xen-domid-restrict -win2k-hack "
    "-rtc-td-hack -localtime -std-vga -no-frame -alt-grab -ctrl-grab".split()
)


class UsageError(Exception):
    """A command line QEMU would refuse."""


def split_options(text: str) -> List[Tuple[Optional[str], str]]:
    """
    QEMU's option list: ``[(key, value), ...]``; an item without ``=`` has
    the key C{None}.  ``,,`` stands for a comma in a value.
    """
    items: List[Tuple[Optional[str], str]] = []
    current = []
    i = 0
    while i <= len(text):
        c = text[i] if i < len(text) else ","
        if c == "," and text[i + 1:i + 2] == "," and i + 1 < len(text):
            current.append(",")
            i += 2
            continue
        if c == ",":
            item = "".join(current)
            current = []
            key, eq, value = item.partition("=")
            items.append((key, value) if eq else (None, item))
        else:
            current.append(c)
        i += 1
    return items


def _keyed(text: str, implied: str) -> Dict[str, str]:
    """The options as a dict, the first bare item under C{implied}."""
    result: Dict[str, str] = {}
    for n, (key, value) in enumerate(split_options(text)):
        if key is None:
            if n or not value:
                continue
            key = implied
        result[key] = value
    return result


def _on(value: Optional[str]) -> bool:
    return value in ("on", "yes", "true", "")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Chardev:
    """A ``-chardev``: its backend (``socket``, ``pty``...) and options."""

    id: str
    backend: str
    path: Optional[str] = None
    #: A listening socket the toolstack opened and passed (``fd=N``).
    fd: Optional[int] = None
    server: bool = False


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Drive:
    """A ``-drive``.  C{id} is what QMP calls the drive (``device``)."""

    id: str
    file: Optional[str]
    format: str
    readonly: bool
    media: str
    interface: str
    index: Optional[int] = None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class CommandLine:
    """What the stand-in takes from its command line."""

    domid: int
    name: Optional[str] = None
    chardevs: Tuple[Chardev, ...] = ()
    #: The chardev ids of the control (QMP) monitors, in order.
    monitors: Tuple[str, ...] = ()
    drives: Tuple[Drive, ...] = ()
    #: ``-device`` drivers with their options (``ide-cd``, id, drive...).
    devices: Tuple[Tuple[str, Tuple[Tuple[str, str], ...]], ...] = ()
    vnc: Optional[str] = None
    serials: Tuple[str, ...] = ()
    #: ``-smp N,maxcpus=M``: the vCPUs present at start, and at most.
    vcpus: int = 1
    max_vcpus: int = 1
    start_paused: bool = False
    incoming: Optional[str] = None

    def chardev(self, id: str) -> Chardev:
        for c in self.chardevs:
            if c.id == id:
                return c
        raise UsageError("no chardev %r" % (id,))

    def device_for(self, drive: str) -> Optional[Tuple[str, Dict[str, str]]]:
        """The ``-device`` that uses drive C{drive}, if any."""
        for driver, options in self.devices:
            opts = dict(options)
            if opts.get("drive") == drive:
                return driver, opts
        return None


def _chardev(text: str) -> Chardev:
    opts = _keyed(text, "backend")
    if "id" not in opts or "backend" not in opts:
        raise UsageError("-chardev %s: needs a backend and an id" % text)
    fd = opts.get("fd")
    try:
        fd_number = int(fd) if fd is not None else None
    except ValueError:
        raise UsageError("-chardev %s: fd must be a number" % text) from None
    return Chardev(opts["id"], opts["backend"], opts.get("path"), fd_number, _on(opts.get("server", "off")))


def _drive(text: str, count: int) -> Drive:
    opts = _keyed(text, "file")
    interface = opts.get("if", "ide")
    index = opts.get("index")
    try:
        index_number = int(index) if index is not None else None
    except ValueError:
        raise UsageError("-drive %s: index must be a number" % text) from None
    drive_id = opts.get("id")
    if drive_id is None:
        # QEMU's name for an -drive without id: <if><bus>-<media><unit>.
        n = index_number if index_number is not None else count
        kind = "cd" if opts.get("media") == "cdrom" else "hd"
        drive_id = "%s%d-%s%d" % (interface, n // 2, kind, n % 2)
    return Drive(
        id=drive_id,
        file=opts.get("file") or None,
        format=opts.get("format", "raw"),
        readonly=_on(opts.get("readonly", "off")),
        media=opts.get("media", "disk"),
        interface=interface,
        index=index_number,
    )


def parse(argv: Sequence[str]) -> CommandLine:
    """
    Parse libxl's command line (without the program name).

    @raise UsageError: what QEMU would refuse, or no ``-xen-domid``.
    """
    domid: Optional[int] = None
    fields: Dict[str, object] = {}
    chardevs: List[Chardev] = []
    monitors: List[str] = []
    drives: List[Drive] = []
    devices: List[Tuple[str, Tuple[Tuple[str, str], ...]]] = []
    serials: List[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        option = args[i]
        if not option.startswith("-") or option == "-":
            raise UsageError("%s: not an option (QEMU takes no disk image here)" % option)
        if option.startswith("--"):
            option = option[1:]
        if option in FLAGS:
            if option == "-S":
                fields["start_paused"] = True
            i += 1
            continue
        if i + 1 >= len(args):
            raise UsageError("%s requires an argument" % option)
        value = args[i + 1]
        i += 2
        if option == "-xen-domid":
            try:
                domid = int(value)
            except ValueError:
                raise UsageError("-xen-domid %s: not a domid" % value) from None
        elif option == "-name":
            fields["name"] = _keyed(value, "guest").get("guest")
        elif option == "-chardev":
            chardevs.append(_chardev(value))
        elif option == "-mon":
            opts = _keyed(value, "chardev")
            if opts.get("mode", "readline") == "control" and "chardev" in opts:
                monitors.append(opts["chardev"])
        elif option == "-qmp":
            raise UsageError("-qmp %s: the stand-in serves -chardev/-mon monitors only" % value)
        elif option == "-drive":
            drives.append(_drive(value, len(drives)))
        elif option == "-device":
            items = split_options(value)
            if not items or items[0][0] is not None:
                raise UsageError("-device %s: needs a driver" % value)
            devices.append((items[0][1], tuple((k, v) for k, v in items[1:] if k is not None)))
        elif option == "-vnc":
            fields["vnc"] = value
        elif option == "-serial":
            serials.append(value)
        elif option == "-smp":
            opts = _keyed(value, "cpus")
            try:
                vcpus = int(opts.get("cpus", "1"))
                max_vcpus = int(opts.get("maxcpus", str(vcpus)))
            except ValueError:
                raise UsageError("-smp %s: not a number of CPUs" % value) from None
            if not 1 <= vcpus <= max_vcpus:
                raise UsageError("-smp %s: cpus must be between 1 and maxcpus" % value)
            fields["vcpus"], fields["max_vcpus"] = vcpus, max_vcpus
        elif option == "-incoming":
            fields["incoming"] = value
    if domid is None or not 0 < domid < 0x7FF0:
        raise UsageError("-xen-domid with a guest's domid is required")
    for monitor in monitors:
        if not any(c.id == monitor for c in chardevs):
            raise UsageError("-mon chardev=%s: no such chardev" % monitor)
    return CommandLine(
        domid=domid,
        chardevs=tuple(chardevs),
        monitors=tuple(monitors),
        drives=tuple(drives),
        devices=tuple(devices),
        serials=tuple(serials),
        **fields,  # type: ignore[arg-type]
    )
