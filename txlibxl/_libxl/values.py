"""
What the binding copies out of C: the value types :class:`RawEvent` and
:class:`DomainInfoRaw`, and the readers that fill them (and a disk's
dict) from libxl's structs.  Nothing here keeps a pointer into C: the
caller frees or disposes what it read.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, NamedTuple, Optional, Tuple

import attr

from . import native
from .constants import (
    DOMAIN_TYPES,
    EVENT_DISK_EJECT,
    EVENT_DOMAIN_SHUTDOWN,
    EVENT_OPERATION_COMPLETE,
    NIL_UUID,
)

__all__ = ["RawEvent", "DomainInfoRaw"]


class RawEvent(NamedTuple):
    """
    A ``libxl_event``, copied out of C (the C event is freed at once).

    Only the fields of the event's own type are set; the others are
    ``None``.  libxl 4.17 leaves two documented fields empty, so the
    binding fills them from what it knew when the generator was enabled:
    ``uuid`` (libxl never sets ``domuuid``; the domain's UUID read at
    ``evenable`` time, or the nil UUID if the domain did not exist then)
    and a disk eject's ``vdev`` / ``disk["vdev"]``.  ``disk`` has the keys ``backend_domid``, ``backend_domname``,
    ``pdev_path``, ``vdev``, ``backend``, ``format`` (the last two as
    libxl's names, e.g. ``"phy"``, ``"raw"``), ``script``, ``removable``,
    ``readwrite``, ``is_cdrom``.

    A named tuple rather than a class: one is made per event, on the path
    whose cost the benchmarks measure.
    """

    type: int
    domid: int
    uuid: str
    for_user: int
    shutdown_reason: Optional[int] = None
    vdev: Optional[str] = None
    disk: Optional[Dict[str, Any]] = None
    rc: Optional[int] = None


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DomainInfoRaw:
    """
    A ``libxl_dominfo``, copied out of C, plus the domain's name.

    ``type`` is ``"pv"``, ``"pvh"``, ``"hvm"`` or ``"unknown"``;
    ``shutdown_reason`` is set only when ``shutdown`` is.  Memory sizes are
    in KiB, ``cpu_time`` in nanoseconds.
    """

    domid: int
    uuid: str
    name: Optional[str]
    type: str
    running: bool
    blocked: bool
    paused: bool
    shutdown: bool
    dying: bool
    never_stop: bool
    shutdown_reason: Optional[int]
    current_memkb: int
    shared_memkb: int
    outstanding_memkb: int
    paged_memkb: int
    max_memkb: int
    cpu_time: int
    vcpu_max_id: int
    vcpu_online: int
    cpupool: int
    ssidref: int
    ssid_label: Optional[str]


# ---------------------------------------------------------------------------
# Copying out of C.

_ffi: Any = None
_lib: Any = None


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


#: One scratch ``txl_event_fields`` per thread, for :func:`read_event`.
_scratch = threading.local()


def c_string(pointer: Any) -> Optional[str]:
    """
    The C string at C{pointer} (UTF-8, bad bytes replaced), or None for NULL.
    """
    if pointer == _ffi.NULL:
        return None
    return _ffi.string(pointer).decode("utf-8", "replace")


def read_disk(fields: Any) -> Dict[str, Any]:
    """
    A ``struct txl_disk_fields`` as :class:`RawEvent`'s ``disk`` dict.
    """
    return {
        "backend_domid": fields.backend_domid,
        "backend_domname": c_string(fields.backend_domname),
        "pdev_path": c_string(fields.pdev_path),
        "vdev": c_string(fields.vdev),
        "backend": c_string(fields.backend),
        "format": c_string(fields.format),
        "script": c_string(fields.script),
        "removable": fields.removable,
        "readwrite": fields.readwrite,
        "is_cdrom": fields.is_cdrom,
    }


def read_event(
    event: Any,
    eject_vdevs: Optional[Dict[Tuple[int, int], str]] = None,
    uuids: Optional[Dict[Tuple[int, int], str]] = None,
) -> RawEvent:
    """
    The :class:`RawEvent` of the ``libxl_event`` at C{event} (not freed
    here), with the vdevs and UUIDs libxl leaves out filled in from
    C{eject_vdevs} and C{uuids}, keyed by ``(domid, for_user)``.
    """
    # One scratch record per thread (callbacks come on any thread that
    # calls libxl), instead of a cffi allocation per event.
    fields = getattr(_scratch, "event_fields", None)
    if fields is None:
        fields = _scratch.event_fields = _ffi.new("struct txl_event_fields *")
    _lib.txl_event_read(event, fields)
    kind = fields.type
    uuid = _ffi.string(fields.uuid).decode("ascii")
    if uuid == NIL_UUID and uuids:
        # libxl 4.17 never fills libxl_event.domuuid: the UUID read when
        # the generator was enabled stands in.
        uuid = uuids.get((fields.domid, fields.for_user), NIL_UUID)
    disk = read_disk(fields.disk) if fields.has_disk else None
    vdev = None
    if kind == EVENT_DISK_EJECT and disk is not None:
        # libxl 4.17 documents u.disk_eject.vdev but never sets it, and
        # fills disk.vdev from the frontend's "dev" node, which neither
        # libxl nor Xen writes (it is a backend node): both are NULL on a
        # real host.  The vdev the generator was enabled for stands in.
        known = (eject_vdevs or {}).get((fields.domid, fields.for_user))
        vdev = c_string(fields.vdev) or disk["vdev"] or known
        if disk["vdev"] is None:
            disk["vdev"] = vdev
    # Positional (type, domid, uuid, for_user, shutdown_reason, vdev, disk,
    # rc): cheaper than keywords on the per-event path.
    return RawEvent(
        kind,
        fields.domid,
        uuid,
        fields.for_user,
        fields.shutdown_reason if kind == EVENT_DOMAIN_SHUTDOWN else None,
        vdev,
        disk,
        fields.rc if kind == EVENT_OPERATION_COMPLETE else None,
    )


def uuid_text(uuid: Any) -> str:
    """
    A ``libxl_uuid`` (a cdata struct, not a pointer) as text.
    """
    buf = _ffi.new("char[40]")
    _lib.txl_uuid_format(_ffi.addressof(uuid), buf)
    return _ffi.string(buf).decode("ascii")


def read_dominfo(info: Any, name: Optional[str]) -> DomainInfoRaw:
    """
    The :class:`DomainInfoRaw` of a ``libxl_dominfo`` (not disposed here).
    """
    shutdown = bool(info.shutdown)
    return DomainInfoRaw(
        domid=info.domid,
        uuid=uuid_text(info.uuid),
        name=name,
        type=DOMAIN_TYPES.get(info.domain_type, "unknown"),
        running=bool(info.running),
        blocked=bool(info.blocked),
        paused=bool(info.paused),
        shutdown=shutdown,
        dying=bool(info.dying),
        never_stop=bool(info.never_stop),
        shutdown_reason=int(info.shutdown_reason) if shutdown else None,
        current_memkb=info.current_memkb,
        shared_memkb=info.shared_memkb,
        outstanding_memkb=info.outstanding_memkb,
        paged_memkb=info.paged_memkb,
        max_memkb=info.max_memkb,
        cpu_time=info.cpu_time,
        vcpu_max_id=info.vcpu_max_id,
        vcpu_online=info.vcpu_online,
        cpupool=info.cpupool,
        ssidref=info.ssidref,
        ssid_label=c_string(info.ssid_label),
    )
