"""
A domain as Xen reports it: the immutable :class:`Domain` snapshot, the
:class:`HostInfo` of the physical host, and the codes that go with them
(:class:`ShutdownReason`, :class:`DomainChange`, the ``XEN_DOMINF_*`` bits).

Domains are immutable snapshots (:class:`Domain` is frozen): every change
replaces the domain's entry with a new value, so a snapshot handed to a
caller or a subscriber never changes under it.
"""
from __future__ import annotations

import enum
import uuid as _uuid
from typing import Dict, FrozenSet, Optional, Tuple

import attr

__all__ = [
    "DOMID_FIRST_RESERVED",
    "Domain",
    "DomainChange",
    "HostInfo",
    "ShutdownReason",
]

#: Xen's first reserved domid (``DOMID_FIRST_RESERVED``); normal domids are
#: below it.
DOMID_FIRST_RESERVED = 0x7FF0

#: Xen's ``XEN_DOMINF_*`` bits, as in ``<xen/domctl.h>``.
DOMINF_DYING = 1 << 0
DOMINF_HVM_GUEST = 1 << 1
DOMINF_SHUTDOWN = 1 << 2
DOMINF_PAUSED = 1 << 3
DOMINF_BLOCKED = 1 << 4
DOMINF_RUNNING = 1 << 5
DOMINF_HAP = 1 << 8
DOMINF_SHUTDOWNSHIFT = 16
DOMINF_SHUTDOWNMASK = 255

#: Xen's ``SHUTDOWN_CODE_INVALID`` (``~0u``): the code of a domain that has
#: not been asked to shut down.  Xen shifts it into ``flags`` regardless.
_SHUTDOWN_CODE_INVALID = 0xFFFFFFFF


class ShutdownReason(enum.IntEnum):
    """Xen's ``SHUTDOWN_*`` codes (``<xen/sched.h>``)."""

    POWEROFF = 0
    REBOOT = 1
    SUSPEND = 2
    CRASH = 3
    WATCHDOG = 4
    SOFT_RESET = 5


class DomainChange(enum.Enum):
    """What happened to a domain, as told to :meth:`Hypervisor.subscribe`."""

    CREATED = "created"
    PAUSED = "paused"
    UNPAUSED = "unpaused"
    SHUTDOWN = "shutdown"
    DYING = "dying"
    DESTROYED = "destroyed"
    UPDATED = "updated"  # blocked state, HVM parameters
    RESUMED = "resumed"  # a shut-down (suspended) domain runs again


@attr.s(frozen=True, slots=True, auto_attribs=True)
class HostInfo:
    """The physical host, as ``xc_physinfo`` reports it."""

    nr_cpus: int = 4
    threads_per_core: int = 1
    cores_per_socket: int = 4
    nr_nodes: int = 1
    cpu_khz: int = 2_000_000
    total_memory_kb: int = 64 * 1024 * 1024
    #: ``XEN_SYSCTL_PHYSCAP_{hvm,pv,hap}``.
    capabilities: int = (1 << 0) | (1 << 1) | (1 << 3)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Domain:
    """
    One domain as the hypervisor sees it: everything ``xc_domaininfo_t``
    reports.  Immutable: the hypervisor replaces it on every change.
    """

    domid: int
    uuid: _uuid.UUID
    name: str
    type: str  # "pv" | "pvh" | "hvm"
    memory_kb: int
    max_memory_kb: int
    vcpus: int
    pause_count: int = 0
    blocked: bool = False
    #: Xen's ``is_shut_down``: the shutdown has completed.
    shutdown: bool = False
    #: The first shutdown code asked for, kept until the domain dies.
    shutdown_reason: Optional[ShutdownReason] = None
    #: Destroyed and waiting for its last pages to be freed.
    dying: bool = False
    #: Nanoseconds spent running, accounted whenever the domain stops
    #: running (pause, shutdown, blocked, death); it does not advance
    #: between two state changes.
    cpu_time_ns: int = 0
    ssidref: int = 0
    cpupool: int = 0
    gpaddr_bits: int = 52
    #: HVM parameters (``HVM_PARAM_*`` index -> value) of an HVM/PVH domain.
    hvm_params: Dict[int, int] = attr.ib(factory=dict)
    #: The vCPUs the guest has taken down (``VCPUOP_down``); the others of
    #: ``0 .. vcpus-1`` are up.
    offline_vcpus: FrozenSet[int] = frozenset()
    #: Unbound event channels the toolstack allocated in this domain
    #: (``EVTCHNOP_alloc_unbound``): (port, remote domid), by port.
    event_channels: Tuple[Tuple[int, int], ...] = ()
    #: The first machine frame of the domain's memory: frames
    #: ``mfn_base .. mfn_base + tot_pages - 1`` are its own (0: none yet).
    mfn_base: int = 0
    #: The frames the builder seeded the grant table with for the xenstore
    #: and console rings (``xc_dom_gnttab_seed``), as the guest sees them.
    xenstore_gfn: Optional[int] = None
    console_gfn: Optional[int] = None

    @property
    def online_vcpus(self) -> int:
        """How many vCPUs are up (``nr_online_vcpus``)."""
        return self.vcpus - len(self.offline_vcpus)

    @property
    def paused(self) -> bool:
        """Paused by the toolstack (``XEN_DOMINF_paused``)."""
        return self.pause_count > 0

    @property
    def hvm(self) -> bool:
        """An HVM container (HVM or PVH), as ``XEN_DOMINF_hvm_guest`` says."""
        return self.type != "pv"

    @property
    def crashed(self) -> bool:
        return self.shutdown and self.shutdown_reason is ShutdownReason.CRASH

    @property
    def running(self) -> bool:
        """Some vCPU is (notionally) on a physical CPU right now."""
        return not (self.paused or self.shutdown or self.dying or self.blocked)

    @property
    def tot_pages(self) -> int:
        return self.memory_kb // 4

    @property
    def max_pages(self) -> int:
        return self.max_memory_kb // 4

    @property
    def flags(self) -> int:
        """``xc_domaininfo_t.flags`` exactly as Xen 4.17's ``getdomaininfo``."""
        flags = 0
        if self.vcpus and not self.dying:
            if self.running:
                flags |= DOMINF_RUNNING
            elif self.blocked and not (self.paused or self.shutdown):
                flags |= DOMINF_BLOCKED
        if self.dying:
            flags |= DOMINF_DYING
        if self.shutdown:
            flags |= DOMINF_SHUTDOWN
        if self.paused:
            flags |= DOMINF_PAUSED
        if self.hvm:
            flags |= DOMINF_HVM_GUEST | DOMINF_HAP
        code = (
            _SHUTDOWN_CODE_INVALID
            if self.shutdown_reason is None
            else int(self.shutdown_reason)
        )
        return (flags | (code << DOMINF_SHUTDOWNSHIFT)) & 0xFFFFFFFF
