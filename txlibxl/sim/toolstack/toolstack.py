"""
The :class:`Toolstack`: applies layouts to the store, keeps the registry.

See :mod:`txlibxl.sim.toolstack`.
"""
import os
import time
import uuid as uuidlib
from typing import Dict, Iterable, List, Optional, Tuple

import attr
from twisted.logger import Logger

from ..errors import BadRequest, Conflict, NoSuchDomain

__all__ = [
    "Node",
    "DiskSpec",
    "DomainSpec",
    "Device",
    "GuestRecord",
    "HOTPLUG_SCRIPT",
    "vdev_to_devid",
    "dom0_layout",
    "domain_layout",
    "devices_of",
    "Toolstack",
]

log = Logger()

#: The hotplug script written into every backend's ``script`` node; libxl
#: fork+execs it with ``remove`` (or ``offline`` for a vif) on destroy.
HOTPLUG_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "hotplug")

# Xenbus states (xen/io/xenbus.h).
XENBUS_INITIALISING = 1
XENBUS_CONNECTED = 4
XENBUS_CLOSING = 5
XENBUS_CLOSED = 6

DOMAIN_TYPES = ("pv", "pvh", "hvm")
DISK_FORMATS = ("raw", "qcow", "qcow2", "vhd", "empty", "qed")

#: The tag of the native PV protocol (``xc_domain_get_native_protocol``).
NATIVE_PROTOCOL = "x86_64-abi"
#: libxl's LIBXL_XENCONSOLE_LIMIT and LIBXL_XENCONSOLE_PROTOCOL.
CONSOLE_LIMIT = "1048576"
CONSOLE_PROTOCOL = "vt100"
#: Default video RAM of an HVM guest (libxl's default for stdvga is 16 MiB,
#: cirrus 8 MiB; the sim picks the cirrus size).
HVM_VIDEO_MEMKB = 8192


Perms = Tuple[str, ...]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Node:
    """One xenstore node to write: its path, value and, if set, its perms."""

    path: str
    value: str
    perms: Optional[Perms] = None


def _domid_perm(letter: str, domid: int) -> str:
    return "%s%d" % (letter, domid)


def _ro(domid: int) -> Perms:
    """libxl's ``roperm``: owned by dom0, readable by the guest."""
    return ("n0", _domid_perm("r", domid))


def _rw(domid: int) -> Perms:
    """libxl's ``rwperm``: owned by the guest."""
    return (_domid_perm("n", domid),)


_NOPERM: Perms = ("n0",)


# -- virtual disk names ----------------------------------------------------


def _disk_index(rest: str, max_index: int) -> Optional[Tuple[int, str]]:
    """Decode the drive letters of a vdev as libxl does (base 26, a=0)."""
    index = -1
    i = 0
    while i < len(rest) and "a" <= rest[i] <= "z":
        index = (index + 1) * 26 + (ord(rest[i]) - ord("a"))
        if index > max_index:
            return None
        i += 1
    if index < 0:
        return None
    return index, rest[i:]


def _partition(rest: str, max_partition: int) -> Optional[int]:
    if not rest:
        return 0
    if rest[0] == "0" or not rest.isdigit():
        return None
    value = int(rest)
    return value if value <= max_partition else None


def vdev_to_devid(vdev: str) -> int:
    """
    The xenstore device id of a virtual disk name, computed exactly as
    libxl's ``libxl__device_disk_dev_number``: ``xvda`` is 51712, ``hdc``
    is 5632, ``sda`` is 2048, ``d0p1`` is 51713; a plain number is taken as
    is.

    @raise BadRequest: C{vdev} is not a disk name libxl accepts.
    """
    if not isinstance(vdev, str) or not vdev:
        raise BadRequest("vdev must be a non-empty string, got %r" % (vdev,))
    disk = partition = None
    if vdev.startswith("d") and "p" in vdev:
        d, _, p = vdev[1:].partition("p")
        if d.isdigit() and p.isdigit() and int(d) < (1 << 20) and int(p) < 256:
            disk, partition = int(d), int(p)
    if disk is None and vdev.startswith("xvd"):
        decoded = _disk_index(vdev[3:], (1 << 20) - 1)
        if decoded is not None:
            part = _partition(decoded[1], 255)
            if part is not None:
                disk, partition = decoded[0], part
    if disk is not None and partition is not None:
        if disk <= 15 and partition <= 15:
            return (202 << 8) | (disk << 4) | partition
        return (1 << 28) | (disk << 8) | partition
    try:
        number = int(vdev, 0)
    except ValueError:
        number = -1
    if 0 <= number <= 0x7FFFFFFF:
        return number
    for prefix, max_disk, max_part in (("hd", 3, 63), ("sd", 15, 15)):
        if vdev.startswith(prefix):
            decoded = _disk_index(vdev[len(prefix):], max_disk)
            if decoded is None:
                continue
            part = _partition(decoded[1], max_part)
            if part is None:
                continue
            d = decoded[0]
            if prefix == "hd":
                return ((3 if d < 2 else 22) << 8) | ((d & 1) << 6) | part
            return (8 << 8) | (d << 4) | part
    raise BadRequest("%r is not a virtual disk name libxl accepts" % (vdev,))


# -- requests --------------------------------------------------------------


def _check_int(args: dict, key: str, default: int, low: int, high: int) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("%s must be an integer, got %r" % (key, value))
    if not low <= value <= high:
        raise BadRequest("%s must be in [%d, %d], got %d" % (key, low, high, value))
    return value


def _check_bool(args: dict, key: str, default: bool) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest("%s must be true or false, got %r" % (key, value))
    return value


def _check_str(args: dict, key: str, default: Optional[str]) -> str:
    value = args.get(key, default)
    if not isinstance(value, str) or not value:
        raise BadRequest("%s must be a non-empty string, got %r" % (key, value))
    return value


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DiskSpec:
    """A virtual disk as ``create_domain`` takes it."""

    vdev: str
    cdrom: bool = False
    target: str = "/dev/null"
    format: str = "raw"

    @property
    def devid(self) -> int:
        return vdev_to_devid(self.vdev)

    @classmethod
    def from_args(cls, args: object) -> "DiskSpec":
        """
        Validate one disk of a request.

        @raise BadRequest: unknown keys, a bad vdev or format.
        """
        if not isinstance(args, dict):
            raise BadRequest("a disk must be an object, got %r" % (args,))
        unknown = set(args) - {"vdev", "cdrom", "target", "format"}
        if unknown:
            raise BadRequest("unknown disk keys: %s" % ", ".join(sorted(unknown)))
        spec = cls(
            vdev=_check_str(args, "vdev", None),
            cdrom=_check_bool(args, "cdrom", False),
            target=_check_str(args, "target", "/dev/null"),
            format=_check_str(args, "format", "raw"),
        )
        if spec.format not in DISK_FORMATS:
            raise BadRequest("format must be one of %s, got %r" % (", ".join(DISK_FORMATS), spec.format))
        spec.devid  # validates the vdev
        return spec


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DomainSpec:
    """What ``create_domain`` is asked to build."""

    name: str
    type: str = "pv"
    memory_kb: int = 262144
    vcpus: int = 1
    disks: Tuple[DiskSpec, ...] = ()
    vifs: int = 0
    paused: bool = False

    #: The request keys besides ``name`` (shared with ``create_domains``).
    KEYS = ("type", "memory_kb", "vcpus", "disks", "vifs", "paused")

    @classmethod
    def from_args(cls, args: dict, name: Optional[str] = None) -> "DomainSpec":
        """
        Validate a ``create_domain`` request (or the shared part of a
        ``create_domains`` one, with C{name} given).

        @raise BadRequest: on unknown keys or bad values.
        """
        allowed = set(cls.KEYS) | ({"name"} if name is None else set())
        unknown = set(args) - allowed
        if unknown:
            raise BadRequest("unknown arguments: %s" % ", ".join(sorted(unknown)))
        if name is None:
            name = _check_str(args, "name", None)
        if "/" in name or len(name) > 256:
            raise BadRequest("invalid domain name %r" % (name,))
        dtype = args.get("type", "pv")
        if dtype not in DOMAIN_TYPES:
            raise BadRequest("type must be one of %s, got %r" % (", ".join(DOMAIN_TYPES), dtype))
        disks_arg = args.get("disks", [])
        if not isinstance(disks_arg, list):
            raise BadRequest("disks must be a list, got %r" % (disks_arg,))
        disks = tuple(DiskSpec.from_args(d) for d in disks_arg)
        devids = [d.devid for d in disks]
        if len(set(devids)) != len(devids):
            raise BadRequest("two disks share a device id: %s" % ", ".join(d.vdev for d in disks))
        return cls(
            name=name,
            type=dtype,
            memory_kb=_check_int(args, "memory_kb", 262144, 1024, 1 << 40),
            vcpus=_check_int(args, "vcpus", 1, 1, 128),
            disks=disks,
            vifs=_check_int(args, "vifs", 0, 0, 64),
            paused=_check_bool(args, "paused", False),
        )


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Device:
    """
    One paravirtual device of a guest, as libxl recorded it: its kind
    (``vbd``, ``vif`` or ``console``), device id, and the three paths.
    ``vdev`` and ``cdrom`` are set for disks only.
    """

    kind: str
    devid: int
    frontend: str
    backend: str
    libxl: str
    vdev: Optional[str] = None
    cdrom: bool = False


@attr.s(frozen=True, slots=True, auto_attribs=True)
class GuestRecord:
    """A domain the toolstack created."""

    domid: int
    uuid: str
    name: str
    type: str
    devices: Tuple[Device, ...]

    def disk(self, vdev: str) -> Device:
        """
        The disk named C{vdev}.

        @raise BadRequest: the domain has no such disk (or C{vdev} is not a
            disk name).
        """
        devid = vdev_to_devid(vdev)
        for device in self.devices:
            if device.kind == "vbd" and device.devid == devid:
                return device
        raise BadRequest("domain %d has no disk %s" % (self.domid, vdev))


# -- layouts ---------------------------------------------------------------


def dom0_layout() -> List[Node]:
    """
    The nodes a freshly booted dom0 has (``xen-init-dom0``): its domid and
    name, and the cpupool entry.  Dom0 has no ``vm`` node on a real host.
    """
    return [
        Node("/local/domain/0/domid", "0"),
        Node("/local/domain/0/name", "Domain-0"),
        Node("/local/pool/0/name", "Pool-0"),
    ]


def devices_of(domid: int, spec: DomainSpec) -> Tuple[Device, ...]:
    """The devices libxl would give a domain built from C{spec}."""
    dom = "/local/domain/%d" % domid
    lib = "/libxl/%d/device" % domid
    devices = [
        Device(
            "console",
            0,
            frontend=dom + "/console",
            backend="/local/domain/0/backend/console/%d/0" % domid,
            libxl=lib + "/console/0",
        )
    ]
    for disk in spec.disks:
        devid = disk.devid
        devices.append(
            Device(
                "vbd",
                devid,
                frontend="%s/device/vbd/%d" % (dom, devid),
                backend="/local/domain/0/backend/vbd/%d/%d" % (domid, devid),
                libxl="%s/vbd/%d" % (lib, devid),
                vdev=disk.vdev,
                cdrom=disk.cdrom,
            )
        )
    for devid in range(spec.vifs):
        devices.append(
            Device(
                "vif",
                devid,
                frontend="%s/device/vif/%d" % (dom, devid),
                backend="/local/domain/0/backend/vif/%d/%d" % (domid, devid),
                libxl="%s/vif/%d" % (lib, devid),
            )
        )
    return tuple(devices)


def _mac(uuid: str, devid: int) -> str:
    raw = uuidlib.UUID(uuid).bytes
    return "00:16:3e:%02x:%02x:%02x" % (raw[0] & 0x7F, raw[1], (raw[2] + devid) & 0xFF)


def _generic_device(
    domid: int,
    device: Device,
    back: List[Tuple[str, str]],
    front: List[Tuple[str, str]],
    ro_front: List[Tuple[str, str]] = (),
    frontend_owned_by_backend: bool = False,
) -> List[Node]:
    """
    ``libxl__device_generic_add``: the libxl copy, the frontend directory
    (owned by the guest, readable by the backend; the primary console's is
    owned by the backend instead) and the backend directory (owned by the
    backend, readable by the guest).
    """
    frontend_perms = (_domid_perm("n", domid), "r0")
    backend_perms = ("n0", _domid_perm("r", domid))
    nodes = [
        Node(device.libxl + "/frontend", device.frontend),
        Node(device.libxl + "/backend", device.backend),
        Node(device.frontend, "", backend_perms if frontend_owned_by_backend else frontend_perms),
        Node(device.frontend + "/backend", device.backend),
    ]
    nodes.extend(Node("%s/%s" % (device.frontend, k), v, frontend_perms) for k, v in front)
    nodes.extend(Node("%s/%s" % (device.frontend, k), v, backend_perms) for k, v in ro_front)
    nodes.append(Node(device.backend, "", backend_perms))
    nodes.append(Node(device.backend + "/frontend", device.frontend))
    nodes.extend(Node("%s/%s" % (device.backend, k), v) for k, v in back)
    nodes.extend(Node("%s/%s" % (device.libxl, k), v) for k, v in back)
    return nodes


def _console_nodes(domid: int, device: Device) -> List[Node]:
    back = [
        ("frontend-id", str(domid)),
        ("online", "1"),
        ("state", str(XENBUS_CONNECTED)),
        ("protocol", CONSOLE_PROTOCOL),
    ]
    front = [("backend-id", "0")]
    ro_front = [
        ("limit", CONSOLE_LIMIT),
        ("type", "xenconsoled"),
        ("output", "pty"),
        ("tty", "/dev/pts/%d" % (domid % 4096)),
        ("port", "2"),
        ("ring-ref", str(0x100000 + 2 * domid + 1)),
    ]
    return _generic_device(domid, device, back, front, ro_front, frontend_owned_by_backend=True)


def _disk_nodes(domid: int, dtype: str, device: Device, disk: DiskSpec, script: str) -> List[Node]:
    back = [
        ("params", disk.target),
        ("script", script),
        ("frontend-id", str(domid)),
        ("online", "1"),
        ("removable", "1" if disk.cdrom else "0"),
        ("bootable", "1"),
        ("state", str(XENBUS_CONNECTED)),
        ("dev", disk.vdev),
        ("type", "phy"),
        ("mode", "r" if disk.cdrom else "w"),
        ("device-type", "cdrom" if disk.cdrom else "disk"),
        ("discard-enable", "0" if disk.cdrom else "1"),
        ("specification", "xen"),
    ]
    front = [
        ("backend-id", "0"),
        ("state", str(XENBUS_CONNECTED)),
        ("virtual-device", str(device.devid)),
        ("device-type", "cdrom" if disk.cdrom else "disk"),
        ("trusted", "1"),
    ]
    if dtype == "pv":
        front.append(("protocol", NATIVE_PROTOCOL))
    nodes = _generic_device(domid, device, back, front)
    # What blkback and the hotplug script add once the disk is connected.
    be = device.backend
    nodes.extend(
        [
            Node(be + "/hotplug-status", "connected"),
            Node(be + "/physical-device", "1:3"),
            Node(be + "/sectors", "0"),
            Node(be + "/sector-size", "512"),
            Node(be + "/info", "5" if disk.cdrom else "0"),
        ]
    )
    return nodes


def _vif_nodes(domid: int, dtype: str, uuid: str, device: Device, script: str) -> List[Node]:
    mac = _mac(uuid, device.devid)
    # libxl__device_nic_setdefault: an HVM guest's boot-time nics are
    # emulated too (QEMU's tap plus the PV vif); PV and PVH get a plain vif.
    nictype = "vif_ioemu" if dtype == "hvm" else "vif"
    back = [
        ("frontend-id", str(domid)),
        ("online", "1"),
        ("state", str(XENBUS_CONNECTED)),
        ("script", script),
        ("mac", mac),
        ("bridge", "xenbr0"),
        ("handle", str(device.devid)),
        ("type", nictype),
        ("hotplug-status", "connected"),
    ]
    front = [
        ("backend-id", "0"),
        ("state", str(XENBUS_CONNECTED)),
        ("handle", str(device.devid)),
        ("mac", mac),
        ("trusted", "1"),
    ]
    ro_front = [("mtu", "1500")]
    return _generic_device(domid, device, back, front, ro_front)


def domain_layout(
    domid: int,
    uuid: str,
    spec: DomainSpec,
    devices: Tuple[Device, ...],
    script: str = HOTPLUG_SCRIPT,
    start_time: Optional[float] = None,
) -> List[Node]:
    """
    Every node libxl 4.17 writes for a new domain, in the order it writes
    them (``libxl__domain_make``, ``store_libxl_entry``, the console,
    ``libxl__build_post``, then each disk and vif), with devices already in
    their connected state (4) as their backends and the guest leave them.

    Deliberately absent: ``image/device-model-{pid,domid}`` and ``target``
    (no device model or stub domain runs, so libxl's destroy skips the
    device-model kill), the PCI backend, the guest-written ``data`` and
    ``memory`` feedback, and QEMU's ``/local/domain/0/device-model`` tree.
    """
    dom = "/local/domain/%d" % domid
    vm = "/vm/%s" % uuid
    lib = "/libxl/%d" % domid
    ro, rw = _ro(domid), _rw(domid)
    hvm = spec.type == "hvm"
    if start_time is None:
        start_time = time.time()
    nodes = [
        Node(dom, "", ro),
        Node(vm, "", ro),
        Node(lib, "", _NOPERM),
        Node(lib + "/device", "", _NOPERM),
        Node(dom + "/vm", vm),
        Node(dom + "/name", spec.name),
        Node(dom + "/cpu", "", ro),
        Node(dom + "/memory", "", ro),
        Node(dom + "/device", "", ro),
        Node(dom + "/device/suspend/event-channel", "", rw),
        Node(dom + "/control", "", ro),
    ]
    if hvm:
        nodes.append(Node(dom + "/hvmloader", "", ro))
    features = ["shutdown", "feature-poweroff", "feature-reboot", "feature-suspend"]
    if hvm:
        features += ["feature-s3", "feature-s4"]
    features.append("sysrq")
    nodes.extend(Node("%s/control/%s" % (dom, f), "", rw) for f in features)
    nodes.extend(Node("%s/%s" % (dom, d), "", rw) for d in ("data", "drivers", "feature", "attr", "error"))
    nodes += [
        Node(vm + "/uuid", uuid),
        Node(vm + "/name", spec.name),
        Node(dom + "/control/platform-feature-multiprocessor-suspend", "1"),
        Node(dom + "/control/platform-feature-xs_reset_watches", "1"),
        Node(lib + "/type", spec.type),
        Node(lib + "/dm-version", "qemu_xen"),
    ]
    # libxl__build_post
    video = HVM_VIDEO_MEMKB if hvm else 0
    nodes += [
        Node(dom + "/memory/static-max", str(spec.memory_kb)),
        Node(dom + "/memory/target", str(spec.memory_kb - video)),
        Node(dom + "/memory/videoram", str(video)),
        Node(dom + "/domid", str(domid)),
        Node(dom + "/store/port", "1"),
        Node(dom + "/store/ring-ref", str(0x100000 + 2 * domid)),
    ]
    nodes.extend(Node("%s/cpu/%d/availability" % (dom, i), "online") for i in range(spec.vcpus))
    stamp = "%d.%02d" % (int(start_time), int((start_time % 1) * 100))
    if spec.type == "pv":
        nodes += [
            Node(vm + "/image/ostype", "linux"),
            Node(vm + "/image/kernel", "/boot/vmlinuz-sim"),
            Node(vm + "/start_time", stamp),
        ]
    elif hvm:
        nodes += [
            Node(vm + "/rtc/timeoffset", ""),
            Node(vm + "/image/ostype", "hvm"),
            Node(vm + "/start_time", stamp),
            Node(dom + "/platform/acpi", "1"),
            Node(dom + "/platform/acpi_s3", "1"),
            Node(dom + "/platform/acpi_s4", "1"),
            Node(dom + "/platform/acpi_laptop_slate", "0"),
            Node(dom + "/platform/device-model", "qemu_xen"),
        ]
    else:
        nodes.append(Node(vm + "/start_time", stamp))
    disks = {d.devid: d for d in spec.disks}
    for device in devices:
        if device.kind == "console":
            nodes += _console_nodes(domid, device)
        elif device.kind == "vbd":
            nodes += _disk_nodes(domid, spec.type, device, disks[device.devid], script)
        else:
            nodes += _vif_nodes(domid, spec.type, uuid, device, script)
    return nodes


# -- the toolstack ---------------------------------------------------------


class Toolstack:
    """
    Plays libxl's create path on a store and a hypervisor, and keeps the
    registry of domains it created.

    Every operation costs time proportional to the size of one domain's
    tree, never to the number of domains.

    @param store: a ``txlibxl.sim.store.Store``.
    @param hypervisor: a ``txlibxl.sim.hypervisor.Hypervisor``.
    @param script: the hotplug script path written into backends.
    """

    def __init__(self, store, hypervisor, script: str = HOTPLUG_SCRIPT, clock=time.time):
        self._store = store
        self._hv = hypervisor
        self._script = script
        self._clock = clock
        self._records: Dict[int, GuestRecord] = {}
        self._by_name: Dict[str, int] = {}

    # registry

    def get(self, domid: int) -> GuestRecord:
        """
        @raise NoSuchDomain: the toolstack created no live domain C{domid}.
        """
        try:
            return self._records[domid]
        except KeyError:
            raise NoSuchDomain("no domain %r" % (domid,)) from None

    def by_name(self, name: str) -> GuestRecord:
        """
        @raise NoSuchDomain: no live domain is called C{name}.
        """
        try:
            return self._records[self._by_name[name]]
        except KeyError:
            raise NoSuchDomain("no domain named %r" % (name,)) from None

    def records(self) -> Iterable[GuestRecord]:
        return self._records.values()

    def forget(self, domid: int) -> Optional[GuestRecord]:
        """
        Drop C{domid} from the registry (its domain is gone) and return its
        record, or C{None} if it was not known.
        """
        record = self._records.pop(domid, None)
        if record is not None and self._by_name.get(record.name) == domid:
            del self._by_name[record.name]
        return record

    # create

    def setup_dom0(self) -> None:
        """Write dom0's own entries, as ``xen-init-dom0`` does at boot."""
        self._apply(dom0_layout())

    def create(self, spec: DomainSpec) -> GuestRecord:
        """
        Create a paused domain in the hypervisor, write its xenstore tree
        and introduce it to xenstored.  The caller starts the agents and
        unpauses.

        @raise Conflict: a live domain already has this name.
        """
        if spec.name in self._by_name or spec.name == "Domain-0":
            raise Conflict("a domain named %r already exists" % (spec.name,))
        domain = self._hv.create_domain(spec.name, spec.type, spec.memory_kb, spec.vcpus, paused=True)
        domid = domain.domid
        uuid = str(domain.uuid)
        devices = devices_of(domid, spec)
        # libxl removes whatever an earlier domain with this domid left.
        for stale in ["/local/domain/%d" % domid, "/libxl/%d" % domid] + [
            "/local/domain/0/backend/%s/%d" % (kind, domid) for kind in ("console", "vbd", "vif")
        ]:
            if self._store.exists(stale):
                self._store.rm(stale)
        self._apply(domain_layout(domid, uuid, spec, devices, self._script, self._clock()))
        self._store.introduce(domid)
        record = GuestRecord(domid, uuid, spec.name, spec.type, devices)
        self._records[domid] = record
        self._by_name[spec.name] = domid
        return record

    def _apply(self, nodes: Iterable[Node]) -> None:
        """
        Write C{nodes} in order as dom0.  A node dom0 creates copies its
        parent's permissions, so a SET_PERMS that would set those same
        permissions again is skipped (the result is the same tree).
        """
        write = self._store.write
        set_perms = self._store.set_perms
        known: Dict[str, Optional[Perms]] = {}
        for node in nodes:
            write(node.path, node.value.encode())
            inherited = known.get(node.path.rsplit("/", 1)[0])
            if node.perms is not None and node.perms != inherited:
                set_perms(node.path, list(node.perms))
            known[node.path] = node.perms if node.perms is not None else inherited

    # teardown

    def teardown(self, record: GuestRecord) -> None:
        """
        Remove the domain's trees as a toolstack that destroys it would
        (libxl's ``libxl__devices_destroy`` then ``devices_destroy_cb``):
        each device's frontend, libxl copy and backend with their emptied
        parents, then ``/vm/<uuid>``, ``/local/domain/<domid>`` and
        ``/libxl/<domid>``.  Nodes that are already gone are skipped.
        """
        for device in record.devices:
            for path in (device.frontend, device.libxl, device.backend):
                self._path_cleanup(path)
        store = self._store
        for path in (
            "/vm/%s" % record.uuid,
            "/local/domain/%d" % record.domid,
            "/libxl/%d" % record.domid,
        ):
            if store.exists(path):
                store.rm(path)

    def _path_cleanup(self, path: str) -> None:
        """``libxl__xs_path_cleanup``: rm, then rm each empty "" parent."""
        store = self._store
        if not store.exists(path):
            return
        store.rm(path)
        parent = path.rsplit("/", 1)[0]
        while parent and parent not in ("/local/domain/0", "/local/domain", "/local", "/libxl"):
            if not store.exists(parent) or store.read(parent) != b"" or store.directory(parent):
                break
            store.rm(parent)
            parent = parent.rsplit("/", 1)[0]
