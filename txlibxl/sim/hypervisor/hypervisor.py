"""
The :class:`Hypervisor`: the domain table and the hypercalls that change it.

The rules are in the :mod:`txlibxl.sim.hypervisor` docstring; the
``@releaseDomain`` half is :mod:`.check_domains`.
"""
from __future__ import annotations

import bisect
import errno as _errno
import time
import uuid as _uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

import attr
from twisted.logger import Logger

from .check_domains import _CheckDomainsMixin
from .domctl import _FIRST_MFN, _DomctlMixin
from .domain import DOMID_FIRST_RESERVED, Domain, DomainChange, HostInfo, ShutdownReason
from .errors import (
    DomainExists,
    InvalidDomainConfig,
    InvalidOperation,
    NoFreeDomid,
    NoSuchDomain,
    OutOfMemory,
)
from .saverestore import _SaveRestoreMixin

__all__ = ["Hypervisor", "Subscriber"]

_log = Logger()

#: The largest controller pause count Xen accepts (``-EOVERFLOW`` beyond).
_MAX_PAUSE_COUNT = 255

_DOMAIN_TYPES = ("pv", "pvh", "hvm")


Subscriber = Callable[[Domain, DomainChange], Any]


class Hypervisor(_CheckDomainsMixin, _DomctlMixin, _SaveRestoreMixin):
    """
    The simulated Xen: a domain table plus xenstored's ``@releaseDomain``
    rules (see :mod:`txlibxl.sim.hypervisor`).

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
        self._next_mfn = _FIRST_MFN
        # xenstored's side: domains whose shutdown it has already announced,
        # and domains to look at on the next VIRQ_DOM_EXC.
        self._shutdown_noticed: Set[int] = set()
        self._shutdown_unnoticed: Set[int] = set()
        self._pending_check: List[int] = []
        self._pending_removals: Dict[int, Any] = {}
        # What a save carries, per live domain (.saverestore).
        self._guest_memory: Dict[int, Any] = {}
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
            self._guest_memory.pop(domid, None)
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
