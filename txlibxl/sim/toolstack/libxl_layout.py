"""
The xenstore tree libxl 4.17 writes for a domain it creates.

:func:`domain_layout` lists every node ``libxl__domain_make``,
``libxl__build_post`` and ``libxl__device_generic_add`` write for the
domain, its console, each disk and each vif, with the permissions libxl
sets, in the order it writes them.  Today the simulator writes this tree in
libxl's place (:class:`~txlibxl.sim.toolstack.Toolstack`); what other
writers add (dom0's own entries, the backends' nodes) is in
:mod:`~txlibxl.sim.toolstack.host_layout`, and :func:`domain_layout` merges
the backends' nodes in where they would appear.
"""
import time
import uuid as uuidlib
from typing import List, Optional, Tuple

from .devices import Device
from .host_layout import HOTPLUG_SCRIPT, disk_backend_nodes
from .nodes import XENBUS_CONNECTED, Node, _domid_perm, _NOPERM, _ro, _rw
from .specs import DiskSpec, DomainSpec

__all__ = ["domain_layout"]

#: The tag of the native PV protocol (``xc_domain_get_native_protocol``).
NATIVE_PROTOCOL = "x86_64-abi"
#: libxl's LIBXL_XENCONSOLE_LIMIT and LIBXL_XENCONSOLE_PROTOCOL.
CONSOLE_LIMIT = "1048576"
CONSOLE_PROTOCOL = "vt100"
#: How libxl names an image format in a qdisk backend's ``params``
#: (``libxl__device_disk_string_of_format``).
QDISK_FORMATS = {"raw": "aio", "qcow": "qcow", "qcow2": "qcow2", "vhd": "vhd", "qed": "qed", "empty": "raw"}
#: Default video RAM of an HVM guest (libxl's default for stdvga is 16 MiB,
#: cirrus 8 MiB; the sim picks the cirrus size).
HVM_VIDEO_MEMKB = 8192


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
    qdisk = device.backend_kind == "qdisk"
    # A qdisk backend is QEMU's: the image with its format, no script.
    back = [("params", "%s:%s" % (QDISK_FORMATS.get(disk.format, disk.format), disk.target))] if qdisk else [
        ("params", disk.target),
        ("script", script),
    ]
    back += [
        ("frontend-id", str(domid)),
        ("online", "1"),
        ("removable", "1" if disk.cdrom else "0"),
        ("bootable", "1"),
        ("state", str(XENBUS_CONNECTED)),
        ("dev", disk.vdev),
        ("type", "qdisk" if qdisk else "phy"),
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
    return _generic_device(domid, device, back, front)


def _vif_nodes(domid: int, dtype: str, uuid: str, device: Device, script: str) -> List[Node]:
    mac = device.mac or _mac(uuid, device.devid)
    # libxl__device_nic_setdefault: an HVM guest's boot-time nics are
    # emulated too (QEMU's tap plus the PV vif); PV and PVH get a plain vif.
    nictype = "vif_ioemu" if dtype == "hvm" else "vif"
    back = [
        ("frontend-id", str(domid)),
        ("online", "1"),
        ("state", str(XENBUS_CONNECTED)),
        ("script", script),
        ("mac", mac),
        ("bridge", device.bridge or "xenbr0"),
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
    (an HVM guest's device model is the host itself, not a process of its
    own libxl could kill, and there are no stub domains, so libxl's destroy
    skips the device-model kill), the PCI backend, the guest-written
    ``data`` and ``memory`` feedback, and QEMU's
    ``/local/domain/0/device-model`` tree (the host's device model writes
    it: :mod:`txlibxl.sim.host_device_models`).
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
            if device.backend_kind == "vbd":
                nodes += disk_backend_nodes(device, disks[device.devid])
        else:
            nodes += _vif_nodes(domid, spec.type, uuid, device, script)
    return nodes
