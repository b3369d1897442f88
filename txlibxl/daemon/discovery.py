"""
Which domains the service follows, and what changed since it last looked:
:class:`TrackedDomain`, :class:`DomainFilter` and :func:`compare`.

Domains are told apart by ``(domid, uuid)``: Xen reuses domids, and a
toolstack that restarts a rebooted guest gives the new domain the old
UUID.  The comparison is pure (no libxl), so the rules of discovery and
reconciliation are tested without a host.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import attr

from txlibxl.events import DomainInfo

__all__ = ["DomainKey", "TrackedDomain", "DomainFilter", "Changes", "compare", "cdrom_vdevs", "vbd_path", "name_path"]

DomainKey = Tuple[int, str]


@attr.s(auto_attribs=True, eq=False)
class TrackedDomain:
    """
    A domain the service follows.

    :ivar watch: its live ``DomainWatch``, or ``None`` when it has none
        (before arming, after a recovery, or when arming failed).
    :ivar ejects: live ``DiskEjectWatch`` by vdev.
    :ivar shutdown_reported: the reason of the shutdown last published
        for the domain's current shut-down state, or ``None``.
    :ivar skip_repeat: a new watch will report the standing shutdown with
        this reason again: drop that one report.
    :ivar reconcile_next_shutdown: the next shutdown happened while the
        service was not watching (publish it as reconciled).
    """

    domid: int
    uuid: str
    name: Optional[str]
    watch: Any = None
    ejects: Dict[str, Any] = attr.Factory(dict)
    shutdown_reported: Optional[str] = None
    skip_repeat: Optional[str] = None
    reconcile_next_shutdown: bool = False
    dead: bool = False

    @property
    def key(self) -> DomainKey:
        return (self.domid, self.uuid)

    @property
    def watched(self) -> bool:
        """Whether a live watch follows the domain."""
        return self.watch is not None and self.watch.active


class DomainFilter:
    """
    The ``--domains`` selection: domids and names; empty means every
    domain.  Domain-0 is never followed (it cannot shut down or die
    without the host).

    :raises ValueError: an item is empty.
    """

    def __init__(self, items: Iterable[str] = ()) -> None:
        self.domids = set()
        self.names = set()
        for item in items:
            item = item.strip()
            if not item:
                raise ValueError("an empty domain in the list")
            if item.isdigit():
                self.domids.add(int(item))
            else:
                self.names.add(item)

    @classmethod
    def parse(cls, text: str) -> "DomainFilter":
        """A filter from a comma-separated list (``"3,web1"``)."""
        return cls(text.split(","))

    @property
    def everything(self) -> bool:
        return not self.domids and not self.names

    def undecided(self, info: DomainInfo) -> bool:
        """
        Whether the filter cannot tell yet: it names domains, and this one
        is not picked by its domid and has no name (yet: a domain being
        built may be introduced before its name is written).
        """
        return bool(self.names) and info.domid != 0 and info.domid not in self.domids and info.name is None

    def wants(self, info: DomainInfo) -> bool:
        """Whether the domain is to be followed."""
        if info.domid == 0:
            return False
        if self.everything:
            return True
        return info.domid in self.domids or (info.name is not None and info.name in self.names)


@attr.s(frozen=True, auto_attribs=True)
class Changes:
    """
    What a snapshot says about the tracked domains.

    :ivar new: domains to start following.
    :ivar present: tracked domains still there, with their current info.
    :ivar gone: tracked domains no longer on the host.
    """

    new: List[DomainInfo]
    present: List[Tuple[TrackedDomain, DomainInfo]]
    gone: List[TrackedDomain]


def compare(
    tracked: Dict[DomainKey, TrackedDomain], snapshot: Sequence[DomainInfo], wanted: DomainFilter
) -> Changes:
    """
    Compare the tracked domains with C{snapshot} (``list_domains``).  A
    domain the filter does not want is neither new nor present; a tracked
    domain whose ``(domid, uuid)`` is not in the snapshot is gone.
    """
    seen: Dict[DomainKey, DomainInfo] = {
        (info.domid, info.uuid): info for info in snapshot if wanted.wants(info)
    }
    all_keys = {(info.domid, info.uuid) for info in snapshot}
    new = [info for key, info in seen.items() if key not in tracked]
    present = [(dom, seen[key]) for key, dom in tracked.items() if key in seen]
    gone = [dom for key, dom in tracked.items() if key not in all_keys]
    return Changes(new=new, present=present, gone=gone)


def vbd_path(domid: int) -> str:
    """Where libxl keeps its copy of domain C{domid}'s disks' backends."""
    return f"/libxl/{domid}/device/vbd"


def cdrom_vdevs(xenstore: Any, domid: int) -> List[str]:
    """
    The vdevs of domain C{domid}'s CD-ROM drives, from the copy of each
    disk's backend that libxl keeps under ``/libxl/<domid>/device/vbd``
    (``dev`` and ``device-type``), read through C{xenstore} (a
    :class:`~txlibxl._libxl.xenstore.XenstoreConnection`).
    """
    base = vbd_path(domid)
    vdevs = []
    for devid in xenstore.directory(base):
        if xenstore.read(f"{base}/{devid}/device-type") != "cdrom":
            continue
        vdev = xenstore.read(f"{base}/{devid}/dev")
        if vdev:
            vdevs.append(vdev)
    return sorted(vdevs)


def name_path(domid: int) -> str:
    """The xenstore node holding domain C{domid}'s name."""
    return f"/local/domain/{domid}/name"
