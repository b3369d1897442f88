"""
What ``create_domain`` is asked to build: a :class:`DomainSpec` with its
disks (:class:`DiskSpec`) and network interfaces (:class:`VifSpec`),
validated from a control request's arguments.

Every bad argument is a :class:`~txlibxl.sim.errors.BadRequest` naming it.
"""
import re
from typing import Optional, Tuple

import attr

from ..errors import BadRequest
from .vdev import vdev_to_devid

__all__ = ["DOMAIN_TYPES", "DISK_FORMATS", "MAX_VIFS", "DiskSpec", "VifSpec", "DomainSpec"]

DOMAIN_TYPES = ("pv", "pvh", "hvm")
DISK_FORMATS = ("raw", "qcow", "qcow2", "vhd", "empty", "qed")
MAX_VIFS = 64
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


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
class VifSpec:
    """
    A virtual network interface as ``create_domain`` takes it: its MAC
    (``None``: one made from the domain's UUID, in Xen's ``00:16:3e``
    range, as libxl makes one) and the bridge its backend joins.
    """

    mac: Optional[str] = None
    bridge: str = "xenbr0"

    @classmethod
    def from_args(cls, args: object) -> "VifSpec":
        """
        Validate one vif of a request.

        @raise BadRequest: unknown keys, a bad MAC or bridge.
        """
        if not isinstance(args, dict):
            raise BadRequest("a vif must be an object, got %r" % (args,))
        unknown = set(args) - {"mac", "bridge"}
        if unknown:
            raise BadRequest("unknown vif keys: %s" % ", ".join(sorted(unknown)))
        mac = args.get("mac")
        if mac is not None:
            if not isinstance(mac, str) or not _MAC.match(mac.lower()):
                raise BadRequest("mac must be six hex bytes separated by colons, got %r" % (mac,))
            mac = mac.lower()
        bridge = _check_str(args, "bridge", "xenbr0")
        if "/" in bridge:
            raise BadRequest("invalid bridge name %r" % (bridge,))
        return cls(mac=mac, bridge=bridge)


def _vifs(value: object) -> Tuple[VifSpec, ...]:
    """A request's ``vifs``: a list of vif objects, or how many default ones."""
    if isinstance(value, bool):
        raise BadRequest("vifs must be a list of vifs or a count, got %r" % (value,))
    if isinstance(value, int):
        if not 0 <= value <= MAX_VIFS:
            raise BadRequest("vifs must be in [0, %d], got %d" % (MAX_VIFS, value))
        return tuple(VifSpec() for _ in range(value))
    if not isinstance(value, list):
        raise BadRequest("vifs must be a list of vifs or a count, got %r" % (value,))
    if len(value) > MAX_VIFS:
        raise BadRequest("at most %d vifs, got %d" % (MAX_VIFS, len(value)))
    vifs = tuple(VifSpec.from_args(v) for v in value)
    macs = [v.mac for v in vifs if v.mac is not None]
    if len(set(macs)) != len(macs):
        raise BadRequest("two vifs share a mac: %s" % ", ".join(macs))
    return vifs


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DomainSpec:
    """What ``create_domain`` is asked to build."""

    name: str
    type: str = "pv"
    memory_kb: int = 262144
    vcpus: int = 1
    disks: Tuple[DiskSpec, ...] = ()
    vifs: Tuple[VifSpec, ...] = ()
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
            vifs=_vifs(args.get("vifs", [])),
            paused=_check_bool(args, "paused", False),
        )
