"""
libxl's virtual disk names and the device ids they stand for.

:func:`vdev_to_devid` is ``libxl__device_disk_dev_number``: the xenstore
device id (the ``<devid>`` of ``device/vbd/<devid>``) of a name such as
``xvda``, ``hdc``, ``sda`` or ``d0p1``.
"""
from typing import Optional, Tuple

from ..errors import BadRequest

__all__ = ["vdev_to_devid"]


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
