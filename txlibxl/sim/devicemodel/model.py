"""
What a device model stand-in knows of its guest's emulated machine: the
run state QMP reports, its vCPUs, the block devices with their media and
trays, and the file descriptor sets a client passed (``add-fd``).

The rules are QEMU 7.2's, for what libxl 4.17 does with them: ``cont``
runs the machine, ``stop`` pauses it; ejecting opens the tray and takes the
medium out; changing the medium opens the tray, inserts the new one and
closes it again; a file named ``/dev/fdset/N`` is a descriptor of set N,
which stays open while a medium uses it; a set nobody uses goes when the
client that added it disconnects.  There is no block layer behind it: an
image is a name, a format and a size (from the file, when it can be
seen).  Errors are :class:`QmpError`, with QEMU's error class and text.

Whoever needs to follow the machine subscribes (:meth:`DeviceModel.subscribe`)
and is told of QMP's events (``STOP``, ``RESUME``, ``DEVICE_TRAY_MOVED``).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional

import attr

from .cmdline import CommandLine

__all__ = ["BlockDevice", "DeviceModel", "FDSET_PREFIX", "QmpError", "IMAGE_FORMATS"]

#: The run states a client may see, and those ``cont`` leaves.
RUNNING, PAUSED, PRELAUNCH, INMIGRATE = "running", "paused", "prelaunch", "inmigrate"

#: How QEMU names a file descriptor set in a file name.
FDSET_PREFIX = "/dev/fdset/"

#: The image formats ``blockdev-change-medium`` accepts.
IMAGE_FORMATS = frozenset(("raw", "qcow", "qcow2", "vpc", "vhdx", "qed", "vmdk", "host_device", "host_cdrom"))


class QmpError(Exception):
    """A command's failure: QMP's error ``class`` and ``desc``."""

    def __init__(self, desc: str, cls: str = "GenericError") -> None:
        super().__init__(desc)
        self.cls = cls
        self.desc = desc


@attr.s(slots=True, auto_attribs=True)
class BlockDevice:
    """One drive and the device using it (``query-block``'s entry)."""

    device: str
    qdev: Optional[str]
    removable: bool
    readonly: bool
    medium: Optional[str] = None
    format: str = "raw"
    tray_open: bool = False
    locked: bool = False
    #: The descriptor set the medium was opened from, if any.
    fdset: Optional[int] = None


@attr.s(slots=True, auto_attribs=True)
class FdSet:
    id: int
    #: (fd, opaque) in the order added.
    fds: List[Any] = attr.ib(factory=list)
    #: The session that added it (None: kept).
    owner: Any = None


class DeviceModel:
    """
    One guest's emulated machine, as QMP sees it.

    @param domid: the guest.
    @param name: the guest's name (``-name``).
    @param start_paused: started with ``-S`` (``prelaunch`` until ``cont``).
    """

    def __init__(self, domid: int, name: Optional[str] = None, start_paused: bool = False,
                 vcpus: int = 1, max_vcpus: Optional[int] = None) -> None:
        self.domid = domid
        self.name = name
        self.status = PRELAUNCH if start_paused else RUNNING
        #: The vCPUs present (by socket), and how many there may be.
        self.cpus = set(range(vcpus))
        self.max_cpus = max(vcpus, max_vcpus or vcpus)
        self.blocks: Dict[str, BlockDevice] = {}
        self.fdsets: Dict[int, FdSet] = {}
        self.chardevs: List[Dict[str, Any]] = []
        self.vnc: Optional[Dict[str, Any]] = None
        self._subscribers: List[Callable[[str, Dict[str, Any]], Any]] = []

    @classmethod
    def from_command_line(cls, cmdline: CommandLine, pty: Callable[[str], str] = lambda label: label) -> "DeviceModel":
        """
        The machine libxl asked for.  C{pty} names the pseudo-terminal of
        a ``pty`` chardev or serial port (there is none behind it).
        """
        model = cls(cmdline.domid, cmdline.name, cmdline.start_paused, cmdline.vcpus, cmdline.max_vcpus)
        for drive in cmdline.drives:
            used = cmdline.device_for(drive.id)
            driver, opts = used if used is not None else ("", {})
            cdrom = driver == "ide-cd" or drive.media == "cdrom"
            model.add_block(BlockDevice(
                device=drive.id,
                qdev=opts.get("id"),
                removable=cdrom,
                readonly=drive.readonly or cdrom,
                medium=drive.file,
                format=drive.format,
            ))
        for chardev in cmdline.chardevs:
            if chardev.backend == "socket":
                where = "fd=%d" % chardev.fd if chardev.fd is not None else (chardev.path or "")
                filename = "unix:%s%s" % (where, ",server=on" if chardev.server else "")
            elif chardev.backend == "pty":
                filename = "pty:" + pty(chardev.id)
            else:
                filename = chardev.backend
            model.chardevs.append({"label": chardev.id, "filename": filename, "frontend-open": False})
        for n, serial in enumerate(cmdline.serials):
            if serial == "pty":
                label = "serial%d" % n
                model.chardevs.append({"label": label, "filename": "pty:" + pty(label), "frontend-open": True})
        if cmdline.vnc is not None and not cmdline.vnc.startswith("none"):
            display = cmdline.vnc.split(",", 1)[0]
            host, _, number = display.rpartition(":")
            try:
                port = 5900 + int(number)
            except ValueError:
                port = 5900
            model.vnc = {"enabled": True, "host": host or "0.0.0.0", "service": str(port),
                         "family": "ipv4", "auth": "none", "clients": []}
        return model

    def add_block(self, block: BlockDevice) -> None:
        self.blocks[block.device] = block

    # -- events -------------------------------------------------------------

    def subscribe(self, callback: Callable[[str, Dict[str, Any]], Any]) -> None:
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[str, Dict[str, Any]], Any]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def _emit(self, event: str, data: Dict[str, Any]) -> None:
        for callback in list(self._subscribers):
            callback(event, data)

    # -- the run state --------------------------------------------------------

    def cont(self) -> None:
        if self.status == INMIGRATE:
            raise QmpError("Guest is waiting for an incoming migration")
        if self.status != RUNNING:
            self.status = RUNNING
            self._emit("RESUME", {})

    def stop(self) -> None:
        if self.status == RUNNING:
            self.status = PAUSED
            self._emit("STOP", {})

    def add_cpu(self, socket_id: int) -> None:
        """A vCPU hot-plugged (``device_add`` of a CPU; never unplugged)."""
        if not 0 <= socket_id < self.max_cpus:
            raise QmpError("Invalid CPU [socket: %d, core: 0, thread: 0], maximum socket: %d"
                           % (socket_id, self.max_cpus - 1))
        if socket_id in self.cpus:
            raise QmpError("CPU[%d] with APIC ID %d exists" % (socket_id, socket_id))
        self.cpus.add(socket_id)

    # -- block devices --------------------------------------------------------

    def find_block(self, device: Optional[str] = None, id: Optional[str] = None) -> BlockDevice:
        """The drive named C{device}, or used by the device C{id}."""
        if (device is None) == (id is None):
            raise QmpError("Need exactly one of 'device' and 'id'")
        for block in self.blocks.values():
            if (device is not None and block.device == device) or (id is not None and block.qdev == id):
                return block
        raise QmpError("Device '%s' not found" % (device if device is not None else id), "DeviceNotFound")

    def _name(self, block: BlockDevice) -> str:
        return block.qdev or block.device

    def open_tray(self, block: BlockDevice, force: bool = False) -> None:
        if not block.removable:
            raise QmpError("Device '%s' is not removable" % self._name(block))
        if block.tray_open:
            return
        if block.locked and not force:
            raise QmpError("Device '%s' is locked and force was not specified, "
                           "wait for tray to open and try again" % self._name(block))
        block.tray_open = True
        block.locked = False
        self._tray_moved(block)

    def close_tray(self, block: BlockDevice) -> None:
        if not block.removable:
            raise QmpError("Device '%s' is not removable" % self._name(block))
        if block.tray_open:
            block.tray_open = False
            self._tray_moved(block)

    def remove_medium(self, block: BlockDevice) -> None:
        if not block.removable:
            raise QmpError("Device '%s' is not removable" % self._name(block))
        if not block.tray_open:
            raise QmpError("Tray of device '%s' is not open" % self._name(block))
        self._release(block)

    def eject(self, block: BlockDevice, force: bool = False) -> None:
        """QMP ``eject``: open the tray, take the medium out."""
        self.open_tray(block, force)
        self._release(block)

    def change_medium(self, block: BlockDevice, filename: str, format: Optional[str] = None,
                      read_only: Optional[bool] = None, force: bool = False) -> None:
        """QMP ``blockdev-change-medium``."""
        if format is not None and format not in IMAGE_FORMATS:
            raise QmpError("Unknown driver '%s'" % format)
        fdset = self._open(filename)
        self.open_tray(block, force)
        self._release(block)
        block.medium = filename
        block.format = format or "raw"
        block.fdset = fdset
        if read_only is not None:
            block.readonly = read_only
        self.close_tray(block)

    def guest_ejected(self, block: BlockDevice) -> None:
        """The guest ejected the medium (its eject command to the drive)."""
        if block.removable:
            block.locked = False
            if not block.tray_open:
                block.tray_open = True
                self._tray_moved(block)
            self._release(block)

    def _open(self, filename: str) -> Optional[int]:
        if not filename.startswith(FDSET_PREFIX):
            if not os.path.exists(filename):
                raise QmpError("Could not open '%s': No such file or directory" % filename)
            return None
        try:
            number = int(filename[len(FDSET_PREFIX):])
        except ValueError:
            number = -1
        fdset = self.fdsets.get(number)
        if fdset is None or not fdset.fds:
            raise QmpError("Could not open '%s': No such file or directory" % filename)
        return number

    def _release(self, block: BlockDevice) -> None:
        block.medium = None
        fdset, block.fdset = block.fdset, None
        if fdset is not None:
            owner = self.fdsets.get(fdset)
            if owner is not None and owner.owner is None and not self._in_use(fdset):
                self._close_set(fdset)

    def _tray_moved(self, block: BlockDevice) -> None:
        self._emit("DEVICE_TRAY_MOVED", {"device": block.device, "id": block.qdev or "",
                                         "tray-open": block.tray_open})

    def _size(self, block: BlockDevice) -> int:
        try:
            if block.fdset is not None:
                return os.fstat(self.fdsets[block.fdset].fds[0][0]).st_size
            return os.stat(block.medium).st_size if block.medium else 0
        except (OSError, KeyError, IndexError):
            return 0

    def query_block(self) -> List[Dict[str, Any]]:
        result = []
        for block in self.blocks.values():
            entry: Dict[str, Any] = {
                "device": block.device,
                "locked": block.locked,
                "removable": block.removable,
                "type": "unknown",
                "io-status": "ok",
            }
            if block.qdev is not None:
                entry["qdev"] = block.qdev
            if block.removable:
                entry["tray_open"] = block.tray_open
            if block.medium is not None:
                entry["inserted"] = {
                    "file": block.medium,
                    "ro": block.readonly,
                    "drv": block.format,
                    "encrypted": False,
                    "backing_file_depth": 0,
                    "image": {"filename": block.medium, "format": block.format,
                              "virtual-size": self._size(block), "dirty-flag": False},
                }
            result.append(entry)
        return result

    # -- file descriptor sets ---------------------------------------------------

    def add_fd(self, fd: int, owner: Any, fdset_id: Optional[int] = None,
               opaque: Optional[str] = None) -> Dict[str, int]:
        """QMP ``add-fd``: C{fd} (now the model's) joins a set."""
        if fdset_id is None:
            fdset_id = 0
            while fdset_id in self.fdsets:
                fdset_id += 1
        elif fdset_id < 0:
            os.close(fd)
            raise QmpError("Parameter 'fdset-id' expects a non-negative value")
        fdset = self.fdsets.setdefault(fdset_id, FdSet(fdset_id, owner=owner))
        fdset.fds.append((fd, opaque))
        return {"fdset-id": fdset_id, "fd": fd}

    def remove_fd(self, fdset_id: int, fd: Optional[int] = None) -> None:
        fdset = self.fdsets.get(fdset_id)
        found = [entry for entry in (fdset.fds if fdset else []) if fd is None or entry[0] == fd]
        if not found:
            name = "fdset-id:%d" % fdset_id if fd is None else "fdset-id:%d, fd:%d" % (fdset_id, fd)
            raise QmpError("File descriptor named '%s' not found" % name)
        if fdset is not None and not self._in_use(fdset_id):
            for entry in found:
                fdset.fds.remove(entry)
                os.close(entry[0])
            if not fdset.fds:
                del self.fdsets[fdset_id]
        elif fdset is not None:
            # In use by a medium: removed once the medium lets it go.
            fdset.owner = None

    def query_fdsets(self) -> List[Dict[str, Any]]:
        return [
            {"fdset-id": s.id, "fds": [dict({"fd": fd}, **({"opaque": o} if o is not None else {}))
                                       for fd, o in s.fds]}
            for s in sorted(self.fdsets.values(), key=lambda s: s.id)
        ]

    def fdset_fd(self, filename: str) -> int:
        """The descriptor a ``/dev/fdset/N`` name stands for."""
        number = self._open(filename)
        if number is None:
            raise QmpError("'%s' is not a file descriptor set" % filename)
        return self.fdsets[number].fds[0][0]

    def client_gone(self, owner: Any) -> None:
        """The client C{owner} disconnected: its sets nobody uses go."""
        for fdset_id in [i for i, s in self.fdsets.items() if s.owner is owner]:
            if self._in_use(fdset_id):
                self.fdsets[fdset_id].owner = None
            else:
                self._close_set(fdset_id)

    def _in_use(self, fdset_id: int) -> bool:
        return any(b.fdset == fdset_id for b in self.blocks.values())

    def _close_set(self, fdset_id: int) -> None:
        fdset = self.fdsets.pop(fdset_id, None)
        for fd, _ in fdset.fds if fdset else ():
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        """Close every descriptor the model holds."""
        for block in self.blocks.values():
            block.fdset = None
        for fdset_id in list(self.fdsets):
            self._close_set(fdset_id)
