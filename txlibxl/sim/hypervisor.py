"""The simulated hypervisor: the domain table that Xen would hold.

:class:`Hypervisor` keeps one :class:`Domain` per live domain and changes it
the way Xen 4.17 does on the corresponding hypercall (``createdomain``,
``pausedomain``, ``unpausedomain``, ``SCHEDOP_remote_shutdown``,
``destroydomain``).  It also plays the part of C xenstored's reaction to the
``VIRQ_DOM_EXC`` interrupt that Xen raises, because that is where the
special watch ``@releaseDomain`` comes from:

* Xen raises ``VIRQ_DOM_EXC`` when a domain has finished shutting down, when
  a destroyed domain has become *dying* (``DOMDYING_dead``) and once more
  when it is finally gone.  Pausing and unpausing raise nothing.
* xenstored (``check_domains`` in ``xenstored_domain.c``, RELEASE-4.17.0)
  then looks at every domain it knows as *introduced*: a domain seen shut
  down (or crashed) for the first time makes it fire ``@releaseDomain``
  once, for all such domains together; a domain found dying or gone is
  released (its connection and watches freed) and that release fires
  ``@releaseDomain`` itself.  Domains that were never introduced are
  ignored.

Here that release is :meth:`Store.domain_gone
<txlibxl.sim.store.Store.domain_gone>`, which fires ``@releaseDomain`` for
an introduced domain and silently drops the nodes of one that never was.

Domains are immutable snapshots (:class:`Domain` is frozen): every change
replaces the domain's entry with a new value, so a snapshot handed to a
caller or a subscriber never changes under it.

Bad requests raise a :class:`HypervisorError` subclass carrying the errno
that Xen would return (``ESRCH`` for a missing domain, ``EINVAL`` for an
operation Xen refuses...), so the hypercall server can answer the shim
exactly as the real hypercall would fail.
"""
from __future__ import annotations

import bisect
import enum
import errno as _errno
import time
import uuid as _uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

import attr
from twisted.logger import Logger

__all__ = [
    "DOMID_FIRST_RESERVED",
    "Domain",
    "DomainChange",
    "DomainExists",
    "HostInfo",
    "Hypervisor",
    "HypervisorError",
    "InvalidDomainConfig",
    "InvalidOperation",
    "NoFreeDomid",
    "NoSuchDomain",
    "OutOfMemory",
    "ShutdownReason",
]

_log = Logger()

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

#: The largest controller pause count Xen accepts (``-EOVERFLOW`` beyond).
_MAX_PAUSE_COUNT = 255

_DOMAIN_TYPES = ("pv", "pvh", "hvm")


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


class HypervisorError(Exception):
    """A hypercall that Xen would refuse; ``errno`` is what Xen returns."""

    errno = _errno.EINVAL


class NoSuchDomain(HypervisorError, LookupError):
    """No domain has this domid."""

    errno = _errno.ESRCH


class DomainExists(HypervisorError):
    """The requested domid is already in use."""

    errno = _errno.EEXIST


class NoFreeDomid(HypervisorError):
    """Every domid below ``DOMID_FIRST_RESERVED`` is in use."""

    errno = _errno.ENOMEM


class OutOfMemory(HypervisorError):
    """The host has not enough free memory for the domain."""

    errno = _errno.ENOMEM


class InvalidOperation(HypervisorError):
    """Xen refuses this operation on this domain (e.g. destroying dom0)."""

    def __init__(self, message: str, errno: int = _errno.EINVAL) -> None:
        super().__init__(message)
        self.errno = errno


class InvalidDomainConfig(HypervisorError, ValueError):
    """A domain description that Xen would not create."""


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


Subscriber = Callable[[Domain, DomainChange], Any]


class Hypervisor:
    """
    The simulated Xen: a domain table plus xenstored's ``@releaseDomain``
    rules (see the module docstring).

    @param store: the simulated xenstored (``txlibxl.sim.store.Store``); the
        hypervisor uses ``is_introduced``, ``fire_special`` and
        ``domain_gone``.
    @param clock: wall clock in seconds, for CPU time accounting.
    @param call_later: ``IReactorTime.callLater``-like; needed only when
        C{dying_delay} is positive.
    @param dying_delay: seconds a destroyed domain stays *dying* before it
        is gone (Xen keeps it until its last pages are freed).  With 0 it
        is gone before :meth:`destroy` returns.
    """

    def __init__(
        self,
        store: Any,
        clock: Callable[[], float] = time.time,
        *,
        host: HostInfo = HostInfo(),
        dom0_memory_kb: int = 4 * 1024 * 1024,
        call_later: Optional[Callable[..., Any]] = None,
        dying_delay: float = 0.0,
    ) -> None:
        if dying_delay < 0:
            raise ValueError("dying_delay must not be negative")
        if dying_delay and call_later is None:
            raise ValueError("a positive dying_delay needs call_later")
        self._store = store
        self._clock = clock
        self.host = host
        self._call_later = call_later
        self._dying_delay = dying_delay
        self._domains: Dict[int, Domain] = {}
        #: Live domids in ascending order (Xen's domain list order).
        self._domids: List[int] = []
        self._rover = 0
        self._running_since: Dict[int, float] = {}
        self._subscribers: Dict[int, Subscriber] = {}
        self._next_handle = 0
        # xenstored's side: domains whose shutdown it has already announced,
        # and domains to look at on the next VIRQ_DOM_EXC.
        self._shutdown_noticed: Set[int] = set()
        self._shutdown_unnoticed: Set[int] = set()
        self._pending_check: List[int] = []
        self._pending_removals: Dict[int, Any] = {}
        dom0 = Domain(
            domid=0,
            uuid=_uuid.UUID(int=0),
            name="Domain-0",
            type="pv",
            memory_kb=dom0_memory_kb,
            max_memory_kb=dom0_memory_kb,
            vcpus=host.nr_cpus,
        )
        self._insert(dom0)

    # -- queries ----------------------------------------------------------

    def get(self, domid: int) -> Domain:
        """The domain C{domid}; L{NoSuchDomain} if there is none."""
        try:
            return self._domains[domid]
        except (KeyError, TypeError):
            raise NoSuchDomain(domid) from None

    def domains(self) -> List[Domain]:
        """All live (and dying) domains, by ascending domid."""
        return [self._domains[d] for d in self._domids]

    def domids_from(self, first: int, max_domains: int) -> List[int]:
        """The domids :meth:`getinfolist` would report, cheaply."""
        if first < 0 or max_domains < 0:
            raise InvalidOperation("first and max must not be negative")
        start = bisect.bisect_left(self._domids, first)
        return self._domids[start : start + max_domains]

    def getinfolist(self, first: int, max_domains: int) -> List[Domain]:
        """
        Xen's ``getdomaininfolist`` sysctl: the domains with domid >=
        C{first}, ascending, at most C{max_domains} of them.
        """
        return [self._domains[d] for d in self.domids_from(first, max_domains)]

    def free_memory_kb(self) -> int:
        used = sum(d.memory_kb for d in self._domains.values())
        return max(0, self.host.total_memory_kb - used)

    # -- subscriptions ----------------------------------------------------

    def subscribe(self, callback: Subscriber) -> int:
        """
        Call C{callback(domain, what)} after every change, with the new
        snapshot and a L{DomainChange}.  Exceptions it raises are logged.

        @return: a handle for :meth:`unsubscribe`.
        """
        self._next_handle += 1
        self._subscribers[self._next_handle] = callback
        return self._next_handle

    def unsubscribe(self, handle: int) -> None:
        self._subscribers.pop(handle, None)

    # -- hypercalls -------------------------------------------------------

    def create_domain(
        self,
        name: str,
        type: str = "pv",
        memory_kb: int = 262144,
        vcpus: int = 1,
        uuid: Optional[_uuid.UUID] = None,
        paused: bool = True,
        domid: Optional[int] = None,
        max_memory_kb: Optional[int] = None,
    ) -> Domain:
        """
        Create a domain, paused by default like ``XEN_DOMCTL_createdomain``
        leaves it for the toolstack.  Without C{domid}, the next free domid
        after the last one handed out, wrapping to 1 below
        ``DOMID_FIRST_RESERVED`` (Xen's ``rover``).
        """
        if not isinstance(name, str) or not name:
            raise InvalidDomainConfig("name must be a non-empty string")
        if type not in _DOMAIN_TYPES:
            raise InvalidDomainConfig(f"type must be one of {_DOMAIN_TYPES}, not {type!r}")
        if not isinstance(memory_kb, int) or memory_kb <= 0:
            raise InvalidDomainConfig("memory_kb must be a positive integer")
        if max_memory_kb is None:
            max_memory_kb = memory_kb
        if not isinstance(max_memory_kb, int) or max_memory_kb < memory_kb:
            raise InvalidDomainConfig("max_memory_kb must be at least memory_kb")
        if not isinstance(vcpus, int) or not 1 <= vcpus <= 128:
            raise InvalidDomainConfig("vcpus must be between 1 and 128")
        if uuid is None:
            uuid = _uuid.uuid4()
        elif not isinstance(uuid, _uuid.UUID):
            raise InvalidDomainConfig("uuid must be a uuid.UUID")
        if memory_kb > self.free_memory_kb():
            raise OutOfMemory(f"{memory_kb} KiB requested, {self.free_memory_kb()} free")
        domid = self._allocate_domid(domid)
        domain = Domain(
            domid=domid,
            uuid=uuid,
            name=name,
            type=type,
            memory_kb=memory_kb,
            max_memory_kb=max_memory_kb,
            vcpus=vcpus,
            pause_count=1 if paused else 0,
        )
        self._insert(domain)
        self._emit(domain, DomainChange.CREATED)
        return domain

    def pause(self, domid: int) -> Domain:
        """``XEN_DOMCTL_pausedomain``: one more controller pause."""
        domain = self._guest(domid, "pause")
        if domain.pause_count >= _MAX_PAUSE_COUNT:
            raise InvalidOperation("pause count overflow", _errno.EOVERFLOW)
        domain = self._replace(domain, pause_count=domain.pause_count + 1)
        self._emit(domain, DomainChange.PAUSED)
        return domain

    def unpause(self, domid: int) -> Domain:
        """``XEN_DOMCTL_unpausedomain``: undo one pause; EINVAL if none."""
        domain = self._guest(domid, "unpause")
        if domain.pause_count == 0:
            raise InvalidOperation(f"domain {domid} is not paused")
        domain = self._replace(domain, pause_count=domain.pause_count - 1)
        self._emit(domain, DomainChange.UNPAUSED)
        return domain

    def set_blocked(self, domid: int, blocked: bool) -> Domain:
        """The guest idles (all vCPUs blocked) or wakes up."""
        domain = self.get(domid)
        if domain.blocked != bool(blocked):
            domain = self._replace(domain, blocked=bool(blocked))
            self._emit(domain, DomainChange.UPDATED)
        return domain

    def set_hvm_param(self, domid: int, index: int, value: int) -> Domain:
        """What an HVM guest sets, e.g. ``HVM_PARAM_CALLBACK_IRQ`` (0) when
        its PV drivers load."""
        domain = self.get(domid)
        if not domain.hvm:
            raise InvalidOperation(f"domain {domid} is not an HVM container")
        params = dict(domain.hvm_params)
        params[int(index)] = int(value) & 0xFFFFFFFFFFFFFFFF
        domain = self._replace(domain, hvm_params=params)
        self._emit(domain, DomainChange.UPDATED)
        return domain

    def hvm_param_get(self, domid: int, index: int) -> int:
        """``HVMOP_get_param``: EINVAL on a PV domain, 0 if never set."""
        domain = self.get(domid)
        if not domain.hvm:
            raise InvalidOperation(f"domain {domid} is not an HVM container")
        return domain.hvm_params.get(index, 0)

    def shutdown(self, domid: int, reason: ShutdownReason) -> Domain:
        """
        ``SCHEDOP_remote_shutdown`` (or the guest's own shutdown): the first
        reason sticks; the first completed shutdown raises ``VIRQ_DOM_EXC``.
        """
        try:
            reason = ShutdownReason(reason)
        except ValueError:
            raise InvalidOperation(f"unknown shutdown reason {reason!r}") from None
        domain = self._guest(domid, "shut down")
        if domain.dying:
            raise InvalidOperation(f"domain {domid} is dying")
        if domain.shutdown:
            return domain
        domain = self._replace(domain, shutdown=True, shutdown_reason=reason)
        self._emit(domain, DomainChange.SHUTDOWN)
        self._virq_dom_exc([domid])
        return domain

    def crash(self, domid: int) -> Domain:
        """The guest crashed: a shutdown with reason ``CRASH``."""
        return self.shutdown(domid, ShutdownReason.CRASH)

    def destroy(self, domid: int) -> None:
        """``XEN_DOMCTL_destroydomain``: see :meth:`destroy_many`."""
        self.destroy_many([domid])

    def destroy_many(self, domids: Iterable[int]) -> None:
        """
        Destroy several domains in one burst: all become dying, then Xen
        raises a single ``VIRQ_DOM_EXC``, so xenstored's one scan releases
        them all and a watcher's first ``getinfolist`` sees every one dead.
        Nothing changes unless every domid is valid.  Destroying a domain
        that is already dying succeeds and does nothing (as in Xen).
        """
        targets: List[Domain] = []
        seen: Set[int] = set()
        for domid in domids:
            domain = self._guest(domid, "destroy")
            if domid not in seen and not domain.dying:
                seen.add(domid)
                targets.append(domain)
        if not targets:
            return
        dying = []
        for domain in targets:
            domain = self._replace(domain, dying=True)
            self._emit(domain, DomainChange.DYING)
            dying.append(domain.domid)
        self._virq_dom_exc(dying)
        if self._dying_delay:
            assert self._call_later is not None
            call = self._call_later(self._dying_delay, self._finish_destroy, dying)
            for domid in dying:
                self._pending_removals[domid] = call
        else:
            self._finish_destroy(dying)

    def _finish_destroy(self, domids: List[int]) -> None:
        gone = []
        for domid in domids:
            self._pending_removals.pop(domid, None)
            domain = self._domains.pop(domid, None)
            if domain is None:
                continue
            del self._domids[bisect.bisect_left(self._domids, domid)]
            self._running_since.pop(domid, None)
            gone.append(domid)
            self._emit(domain, DomainChange.DESTROYED)
        if gone:
            self._virq_dom_exc(gone)

    def cancel_pending(self) -> None:
        """Finish every delayed removal now and cancel its timer (for a
        clean shutdown of the simulator)."""
        calls = {id(c): c for c in self._pending_removals.values()}
        pending = list(self._pending_removals)
        for call in calls.values():
            if call.active():
                call.cancel()
        self._finish_destroy(pending)

    # -- internals --------------------------------------------------------

    def _guest(self, domid: int, what: str) -> Domain:
        domain = self.get(domid)
        if domid == 0:
            raise InvalidOperation(f"cannot {what} the control domain")
        return domain

    def _allocate_domid(self, domid: Optional[int]) -> int:
        if domid is not None:
            if not isinstance(domid, int) or not 0 < domid < DOMID_FIRST_RESERVED:
                raise InvalidDomainConfig(
                    f"domid must be between 1 and {DOMID_FIRST_RESERVED - 1}"
                )
            if domid in self._domains:
                raise DomainExists(domid)
            return domid
        # Xen's rover: the next free domid after the last one handed out,
        # wrapping from DOMID_FIRST_RESERVED to 1.
        dom = self._rover
        for _ in range(DOMID_FIRST_RESERVED - 1):
            dom = dom + 1 if dom + 1 < DOMID_FIRST_RESERVED else 1
            if dom not in self._domains:
                self._rover = dom
                return dom
        raise NoFreeDomid()

    def _insert(self, domain: Domain) -> None:
        self._domains[domain.domid] = domain
        bisect.insort(self._domids, domain.domid)
        if domain.running:
            self._running_since[domain.domid] = self._clock()

    def _replace(self, domain: Domain, **changes: Any) -> Domain:
        """Install a changed snapshot, keeping CPU time accounting right."""
        domid = domain.domid
        current = self._domains[domid]
        since = self._running_since.pop(domid, None)
        now = self._clock()
        if since is not None:
            spent = max(0, int((now - since) * 1e9)) * current.vcpus
            changes.setdefault("cpu_time_ns", current.cpu_time_ns + spent)
        new = attr.evolve(current, **changes)
        self._domains[domid] = new
        if new.running:
            self._running_since[domid] = now
        return new

    def _emit(self, domain: Domain, what: DomainChange) -> None:
        for callback in list(self._subscribers.values()):
            try:
                callback(domain, what)
            except Exception:
                _log.failure("hypervisor subscriber {callback!r} failed", callback=callback)

    def _virq_dom_exc(self, domids: Iterable[int]) -> None:
        """
        Xen raised ``VIRQ_DOM_EXC``: run xenstored's ``check_domains`` over
        the domains that changed (the others would give it nothing new)
        and over shut-down domains it could not announce yet because they
        were not introduced.
        """
        store = self._store
        candidates = list(domids)
        if self._shutdown_unnoticed:
            candidates.extend(self._shutdown_unnoticed.difference(candidates))
        notify = False
        for domid in candidates:
            domain = self._domains.get(domid)
            if not store.is_introduced(domid):
                if domain is None:
                    # Gone and never introduced: xenstored frees what it
                    # knew of it (nodes it owned) without any event.
                    self._shutdown_unnoticed.discard(domid)
                    store.domain_gone(domid)
                elif domain.shutdown and not domain.dying:
                    self._shutdown_unnoticed.add(domid)
                else:
                    self._shutdown_unnoticed.discard(domid)
                continue
            self._shutdown_unnoticed.discard(domid)
            if domain is not None:
                if domain.shutdown and domid not in self._shutdown_noticed:
                    self._shutdown_noticed.add(domid)
                    notify = True
                if not domain.dying:
                    continue
            # Dying or gone: xenstored drops the domain's connection, which
            # fires @releaseDomain itself (destroy_domain()).
            self._shutdown_noticed.discard(domid)
            store.domain_gone(domid)
            notify = False
        if notify:
            store.fire_special("@releaseDomain")
