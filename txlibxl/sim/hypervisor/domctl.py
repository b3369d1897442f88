"""
The hypercalls a toolstack makes to build a domain: ``createdomain`` as
Xen takes it (flags, handle, requested domid), ``max_vcpus``, ``max_mem``,
memory population, unbound event channels, the grant table seed, HVM
parameters, and what the guest itself does later (ballooning to its
memory target, taking vCPUs up and down).

:class:`_DomctlMixin` is the :class:`~txlibxl.sim.hypervisor.Hypervisor`'s
part that does it; the rules follow Xen 4.17 (``xen/common/domctl.c``,
``xen/common/domain.c``, ``xen/common/event_channel.c``), with what has
no meaning without guest memory left out: there is no memory behind the
frames, only the count of pages and the machine frames they would be.
"""
from __future__ import annotations

import errno as _errno
import uuid as _uuid
from typing import Any, Callable, Dict, Optional

from .domain import DOMID_FIRST_RESERVED, Domain, DomainChange, HostInfo
from .errors import DomainExists, InvalidDomainConfig, InvalidOperation, NoSuchDomain, OutOfMemory

__all__ = [
    "CDF_HAP",
    "CDF_HVM",
    "CDF_KNOWN",
    "EMU_ALL",
    "EMU_HVM",
    "EMU_LAPIC",
    "EMU_PIT",
    "EMU_VPCI",
    "MAX_VCPUS",
]

#: ``XEN_DOMCTL_CDF_*``: the createdomain flags Xen 4.17 knows.
CDF_HVM = 1 << 0
CDF_HAP = 1 << 1
CDF_KNOWN = (1 << 8) - 1
#: ``XEN_X86_EMU_*``.  What Xen 4.17 lets a guest (not the hardware
#: domain) emulate (``emulation_flags_ok``): a PVH domain only the local
#: APIC, an HVM domain everything but vPCI (:data:`EMU_HVM`, what libxl
#: asks for), a PV domain nothing or only the PIT.
EMU_LAPIC = 1 << 0
EMU_PIT = 1 << 8
EMU_VPCI = 1 << 10
EMU_ALL = (1 << 11) - 1
EMU_HVM = EMU_ALL & ~EMU_VPCI
#: Xen's ``HVM_MAX_VCPUS`` on x86 (also the PV limit the sim enforces).
MAX_VCPUS = 128
#: The first machine frame the simulated host hands out (frames below it
#: are the hypervisor's and dom0's).
_FIRST_MFN = 0x100000
_KB_PER_PAGE = 4
_DOMID_SELF = 0x7FF0


class _DomctlMixin:
    """Domain building hypercalls (part of :class:`~txlibxl.sim.hypervisor.Hypervisor`)."""

    _domains: Dict[int, Domain]
    host: HostInfo
    _next_mfn: int

    # Provided by the Hypervisor.
    get: Callable[[int], Domain]
    free_memory_kb: Callable[[], int]
    _guest: Callable[[int, str], Domain]
    _allocate_domid: Callable[[Optional[int]], int]
    _insert: Callable[[Domain], None]
    _replace: Callable[..., Domain]
    _emit: Callable[[Domain, DomainChange], None]

    def createdomain(
        self,
        domid: int,
        flags: int,
        handle: bytes,
        max_vcpus: int,
        emulation_flags: int = 0,
        ssidref: int = 0,
        cpupool: int = 0,
    ) -> Domain:
        """
        ``XEN_DOMCTL_createdomain``: a new, paused domain with no memory
        and C{max_vcpus} vCPUs, all up.  C{domid} between 1 and
        ``DOMID_FIRST_RESERVED - 1`` is taken as asked (``EEXIST`` if in
        use); any other value lets Xen pick the next free one.  The type
        comes from the flags and the emulation flags: no ``CDF_hvm`` is PV
        (nothing emulated, or only the PIT), ``CDF_hvm`` with only the
        local APIC is PVH, with everything but vPCI HVM; any other mix is
        ``EOPNOTSUPP`` as on Xen.  The domain has no name: names live in
        xenstore.
        """
        if flags & ~CDF_KNOWN:
            raise InvalidDomainConfig("unknown createdomain flags %#x" % flags)
        if not 1 <= max_vcpus <= MAX_VCPUS:
            raise InvalidDomainConfig("max_vcpus must be between 1 and %d" % MAX_VCPUS)
        if len(handle) != 16:
            raise InvalidDomainConfig("the handle is 16 bytes")
        if not flags & CDF_HVM:
            if emulation_flags not in (0, EMU_PIT):
                raise InvalidOperation("a PV domain emulates nothing", _errno.EOPNOTSUPP)
            dtype = "pv"
        elif emulation_flags == EMU_LAPIC:
            dtype = "pvh"
        elif emulation_flags == EMU_HVM:
            dtype = "hvm"
        else:
            raise InvalidOperation("emulation flags %#x" % emulation_flags, _errno.EOPNOTSUPP)
        wanted = domid if 0 < domid < DOMID_FIRST_RESERVED else None
        if wanted is not None and wanted in self._domains:
            raise DomainExists(wanted)
        new = Domain(
            domid=self._allocate_domid(wanted),
            uuid=_uuid.UUID(bytes=bytes(handle)),
            name="",
            type=dtype,
            memory_kb=0,
            max_memory_kb=0,
            vcpus=max_vcpus,
            pause_count=1,
            ssidref=ssidref,
            cpupool=cpupool,
        )
        self._insert(new)
        self._emit(new, DomainChange.CREATED)
        return new

    def max_vcpus(self, domid: int, count: int) -> Domain:
        """``XEN_DOMCTL_max_vcpus``: no more than createdomain allowed."""
        domain = self._guest(domid, "set the vCPUs of")
        if not 1 <= count <= domain.vcpus:
            raise InvalidOperation("domain %d has %d vCPUs at most" % (domid, domain.vcpus))
        return domain

    def set_max_memory(self, domid: int, max_kb: int) -> Domain:
        """``XEN_DOMCTL_max_mem``: the new limit, even below what the
        domain has (it then can only shrink)."""
        domain = self.get(domid)
        if max_kb < 0:
            raise InvalidOperation("negative memory")
        return self._update(domain, max_memory_kb=int(max_kb) // _KB_PER_PAGE * _KB_PER_PAGE)

    def populate(self, domid: int, pages: int) -> int:
        """
        ``XENMEM_populate_physmap`` of C{pages} pages at once (the domain
        builder's): the domain's memory grows by that much, within its
        limit and the host's free memory.  Returns the first machine frame
        of the domain's memory.
        """
        domain = self.get(domid)
        if pages < 0:
            raise InvalidOperation("negative page count")
        kb = pages * _KB_PER_PAGE
        if domain.memory_kb + kb > domain.max_memory_kb:
            raise OutOfMemory("domain %d: %d KiB over its limit of %d" % (domid, domain.memory_kb + kb, domain.max_memory_kb))
        if kb > self.free_memory_kb():
            raise OutOfMemory("%d KiB requested, %d free" % (kb, self.free_memory_kb()))
        base = domain.mfn_base
        if not base:
            # Room for the domain's memory at its largest.
            base = self._next_mfn
            self._next_mfn += max(domain.max_memory_kb // _KB_PER_PAGE, pages) + 1
        self._update(domain, memory_kb=domain.memory_kb + kb, mfn_base=base)
        return base

    def set_memory(self, domid: int, kb: int) -> Domain:
        """The guest balloons to C{kb} (at most its limit)."""
        domain = self.get(domid)
        kb = max(0, min(int(kb), domain.max_memory_kb))
        grow = kb - domain.memory_kb
        if grow > 0:
            kb = domain.memory_kb + min(grow, self.free_memory_kb())
        if kb == domain.memory_kb:
            return domain
        return self._update(domain, memory_kb=kb)

    def evtchn_alloc_unbound(self, domid: int, remote: int) -> int:
        """``EVTCHNOP_alloc_unbound``: the lowest free port of C{domid}
        (from 1), waiting for C{remote} to bind it."""
        domain = self.get(domid)
        if remote == _DOMID_SELF:
            remote = domid
        else:
            self.get(remote)
        used = {port for port, _ in domain.event_channels}
        port = next(p for p in range(1, len(used) + 2) if p not in used)
        channels = tuple(sorted(domain.event_channels + ((port, remote),)))
        self._update(domain, event_channels=channels)
        return port

    def seed_grant_table(self, domid: int, console_gfn: int, xenstore_gfn: int) -> Domain:
        """``xc_dom_gnttab_seed``: the grant entries through which the
        console and xenstore backends map the guest's rings."""
        domain = self.get(domid)
        return self._update(domain, console_gfn=console_gfn, xenstore_gfn=xenstore_gfn)

    def set_vcpu_online(self, domid: int, vcpu: int, online: bool) -> Domain:
        """The guest brings vCPU C{vcpu} up or takes it down
        (``VCPUOP_up``/``VCPUOP_down``); vCPU 0 stays up."""
        domain = self.get(domid)
        if not 0 <= vcpu < domain.vcpus:
            raise InvalidOperation("domain %d has no vCPU %d" % (domid, vcpu))
        offline = set(domain.offline_vcpus)
        if online or vcpu == 0:
            offline.discard(vcpu)
        else:
            offline.add(vcpu)
        if frozenset(offline) == domain.offline_vcpus:
            return domain
        return self._update(domain, offline_vcpus=frozenset(offline))

    def xenstore_ring(self, domid: int, port: int) -> None:
        """
        What C xenstored checks when it is asked to ``INTRODUCE`` C{domid}
        with event channel C{port}: the domain exists (``ENOENT``), its
        xenstore ring is granted (``EINVAL`` if the builder never seeded
        it) and C{port} is an unbound channel of the domain waiting for
        dom0 (``EINVAL`` otherwise: the bind would fail).
        """
        try:
            domain = self.get(domid)
        except NoSuchDomain:
            raise InvalidOperation("no domain %d" % domid, _errno.ENOENT) from None
        if domid == 0 or domain.xenstore_gfn is None:
            raise InvalidOperation("domain %d has no xenstore ring" % domid)
        if (port, 0) not in domain.event_channels:
            raise InvalidOperation("port %d of domain %d is not unbound for dom0" % (port, domid))

    def _update(self, domain: Domain, **changes: Any) -> Domain:
        new = self._replace(domain, **changes)
        self._emit(new, DomainChange.UPDATED)
        return new

