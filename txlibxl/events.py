"""
The events libxl reports, as immutable values.

libxl hands each event over as a C ``libxl_event`` that the application
must free.  The binding copies it into a plain record at once; this module
turns that record into one of the values below, which is what a waiter's
Deferred fires with.  Values compare by content and are hashable, so tests
and sinks can compare them directly.

Domain ids are reused by Xen after a domain dies, so every event also
carries the domain's UUID.
"""
from __future__ import annotations

import enum
from typing import Any, Optional, Union

import attr

__all__ = [
    "ShutdownReason",
    "Disk",
    "DomainShutdown",
    "DomainDeath",
    "DiskEject",
    "OperationComplete",
    "ConsoleAvailable",
    "DomainInfo",
    "Event",
    "event_from_raw",
    "domain_info_from_raw",
]

# libxl_event_type (libxl_types.idl); bit N of an event mask is type N.
_DOMAIN_SHUTDOWN = 1
_DOMAIN_DEATH = 2
_DISK_EJECT = 3
_OPERATION_COMPLETE = 4
_DOMAIN_CREATE_CONSOLE_AVAILABLE = 5


class ShutdownReason(enum.IntEnum):
    """
    Why a domain shut down (``libxl_shutdown_reason``, Xen's ``SHUTDOWN_*``).
    """

    UNKNOWN = -1
    POWEROFF = 0
    REBOOT = 1
    SUSPEND = 2
    CRASH = 3
    WATCHDOG = 4
    SOFT_RESET = 5

    @classmethod
    def from_code(cls, code: Optional[int]) -> "ShutdownReason":
        """
        The reason for a raw code; codes this version does not know (libxl
        passes Xen's value through, as an unsigned byte) are ``UNKNOWN``.
        """
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Disk:
    """
    The disk named by a :class:`DiskEject` event (``libxl_device_disk``),
    as libxl read it back from the backend.
    """

    vdev: Optional[str]
    backend_domid: int = 0
    backend_domname: Optional[str] = None
    pdev_path: Optional[str] = None
    backend: Optional[str] = None
    format: Optional[str] = None
    script: Optional[str] = None
    removable: int = 0
    readwrite: int = 0
    is_cdrom: int = 0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DomainShutdown:
    """
    The domain shut down (it still exists until it is destroyed).

    libxl reports this at most once per watch; a watch re-arms itself
    after ``SUSPEND`` and ``SOFT_RESET`` so that the next shutdown is seen.
    """

    domid: int
    uuid: str
    reason: ShutdownReason


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DomainDeath:
    """
    The domain is gone.  A domain destroyed before it shut down gives only
    this event.  Its domid may now be reused for another domain.
    """

    domid: int
    uuid: str


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DiskEject:
    """
    The guest (or its device model) ejected the medium of a CD-ROM.
    """

    domid: int
    uuid: str
    vdev: str
    disk: Disk


@attr.s(frozen=True, slots=True, auto_attribs=True)
class OperationComplete:
    """
    An asynchronous operation started with an event ``ao_how`` finished
    with libxl code ``rc`` (0 for success).
    """

    domid: int
    uuid: str
    rc: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ConsoleAvailable:
    """
    A domain being created has its console ready to attach.
    """

    domid: int
    uuid: str


Event = Union[DomainShutdown, DomainDeath, DiskEject, OperationComplete, ConsoleAvailable]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DomainInfo:
    """
    One domain as ``libxl_domain_info`` / ``libxl_list_domain`` see it.
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
    shutdown_reason: Optional[ShutdownReason]
    current_memkb: int
    max_memkb: int
    cpu_time_ns: int
    vcpus_online: int


def event_from_raw(raw: Any) -> Optional[Event]:
    """
    The event value for a binding record (``txlibxl._libxl.binding.RawEvent``),
    or ``None`` for an event type this version does not know.
    """
    kind = raw.type
    if kind == _DOMAIN_SHUTDOWN:
        return DomainShutdown(raw.domid, raw.uuid, ShutdownReason.from_code(raw.shutdown_reason))
    if kind == _DOMAIN_DEATH:
        return DomainDeath(raw.domid, raw.uuid)
    if kind == _DISK_EJECT:
        fields = dict(raw.disk or {})
        disk = Disk(**{name: fields[name] for name in _DISK_FIELDS if name in fields})
        return DiskEject(raw.domid, raw.uuid, raw.vdev or "", disk)
    if kind == _OPERATION_COMPLETE:
        return OperationComplete(raw.domid, raw.uuid, raw.rc or 0)
    if kind == _DOMAIN_CREATE_CONSOLE_AVAILABLE:
        return ConsoleAvailable(raw.domid, raw.uuid)
    return None


_DISK_FIELDS = tuple(a.name for a in attr.fields(Disk))


def domain_info_from_raw(raw: Any) -> DomainInfo:
    """
    The :class:`DomainInfo` for a binding record (``DomainInfoRaw``).
    """
    reason = raw.shutdown_reason if raw.shutdown else None
    return DomainInfo(
        domid=raw.domid,
        uuid=raw.uuid,
        name=raw.name,
        type=raw.type,
        running=bool(raw.running),
        blocked=bool(raw.blocked),
        paused=bool(raw.paused),
        shutdown=bool(raw.shutdown),
        dying=bool(raw.dying),
        shutdown_reason=None if reason is None else ShutdownReason.from_code(reason),
        current_memkb=raw.current_memkb,
        max_memkb=raw.max_memkb,
        cpu_time_ns=raw.cpu_time,
        vcpus_online=raw.vcpu_online,
    )
