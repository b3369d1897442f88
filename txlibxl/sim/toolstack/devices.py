"""
A created domain as the toolstack remembers it: its :class:`GuestRecord`
and the record of each of its devices (:class:`Device`).

:func:`devices_of` names the devices libxl gives a domain built from a
:class:`~txlibxl.sim.toolstack.specs.DomainSpec` (a console, then each disk
and each vif) with the three xenstore paths of each: frontend, backend and
libxl's own copy under ``/libxl/<domid>/device``.  The agents find a
domain's backends and frontends through these records.
"""
from typing import Optional, Tuple

import attr

from ..errors import BadRequest
from .specs import DomainSpec
from .vdev import vdev_to_devid

__all__ = ["Device", "GuestRecord", "devices_of"]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Device:
    """
    One paravirtual device of a guest, as libxl recorded it: its kind
    (``vbd``, ``vif`` or ``console``: the frontend's), device id, and the
    three paths.  ``vdev`` and ``cdrom`` are set for disks only, ``mac``
    (if it was given) and ``bridge`` for vifs only.
    """

    kind: str
    devid: int
    frontend: str
    backend: str
    libxl: str
    vdev: Optional[str] = None
    cdrom: bool = False
    mac: Optional[str] = None
    bridge: Optional[str] = None

    @property
    def backend_kind(self) -> str:
        """The backend's kind (``vbd``, ``qdisk``, ``vif``, ``console``)."""
        return self.backend.split("/")[5]


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
        # libxl 4.17 gives an HVM guest's CD-ROM QEMU's qdisk backend
        # (libxl__device_disk_setdefault): its device model emulates it.
        backend = "qdisk" if disk.cdrom and spec.type == "hvm" else "vbd"
        devices.append(
            Device(
                "vbd",
                devid,
                frontend="%s/device/vbd/%d" % (dom, devid),
                backend="/local/domain/0/backend/%s/%d/%d" % (backend, domid, devid),
                libxl="%s/vbd/%d" % (lib, devid),
                vdev=disk.vdev,
                cdrom=disk.cdrom,
            )
        )
    for devid, vif in enumerate(spec.vifs):
        devices.append(
            Device(
                "vif",
                devid,
                frontend="%s/device/vif/%d" % (dom, devid),
                backend="/local/domain/0/backend/vif/%d/%d" % (domid, devid),
                libxl="%s/vif/%d" % (lib, devid),
                mac=vif.mac,
                bridge=vif.bridge,
            )
        )
    return tuple(devices)
