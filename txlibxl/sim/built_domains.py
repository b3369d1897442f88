"""
The agents of a domain that a toolstack builds on the simulated host
through the hypercall interface (libxl's ``libxl_domain_create_new``, ``xl
create``), as opposed to the domains the simulator writes itself.

libxl writes such a domain's whole xenstore tree; the simulator plays
the rest of the host for it, one :class:`BuiltDomain` per domain:

* dom0's backend drivers and the guest's frontends
  (:class:`~txlibxl.sim.xenbus.BackendDriver`);
* xenconsoled (:class:`ConsoleStandIn`): once the console's ``ring-ref``
  appears it writes ``console/tty``, which ``libxl_domain_create_new``
  waits for;
* the guest kernel: the ``control/shutdown`` driver
  (:class:`~txlibxl.sim.agents.GuestAgent`), and :class:`GuestResources`,
  the balloon driver (``memory/target`` becomes the domain's memory in the
  hypervisor) and vCPU hotplug (``cpu/<n>/availability`` takes vCPUs up
  and down), both only while the guest runs.
"""
from __future__ import annotations

from typing import Any, List, Optional

from twisted.logger import Logger

from .hypervisor import NoSuchDomain as HvNoSuchDomain
from .store import XenstoreError
from .xenbus import BackendDriver

__all__ = ["BuiltDomain", "ConsoleStandIn", "GuestResources"]

log = Logger()


def _read(store: Any, path: str, domid: int = 0) -> Optional[str]:
    try:
        return store.read(path, domid=domid).decode()
    except XenstoreError:
        return None


def _unwatch(store: Any, handles: List[Any]) -> None:
    for handle in handles:
        try:
            store.unwatch(handle)
        except XenstoreError:
            pass
    handles.clear()


class ConsoleStandIn:
    """xenconsoled for one domain: a pty for its console once the ring is
    there (``console/tty``, written once, as dom0)."""

    def __init__(self, store: Any, domid: int) -> None:
        self._store = store
        self.domid = domid
        self._base = "/local/domain/%d/console" % domid
        self._watches: List[Any] = []

    def start(self) -> None:
        self._watches.append(self._store.watch(self._base + "/ring-ref", self._fired))

    def stop(self) -> None:
        _unwatch(self._store, self._watches)

    @property
    def tty(self) -> str:
        return "/dev/pts/sim%d" % self.domid

    def _fired(self, _path: str) -> None:
        if not self._watches or not _read(self._store, self._base + "/ring-ref"):
            return
        if not _read(self._store, self._base + "/tty"):
            self._store.write(self._base + "/tty", self.tty.encode())
            log.debug("console of {domid} on {tty}", domid=self.domid, tty=self.tty)


class GuestResources:
    """The guest's balloon driver and vCPU hotplug for one domain."""

    def __init__(self, store: Any, hypervisor: Any, domid: int) -> None:
        self._store = store
        self._hv = hypervisor
        self.domid = domid
        self._base = "/local/domain/%d/" % domid
        self._watches: List[Any] = []

    def start(self) -> None:
        self._watches.append(self._store.watch(self._base + "memory/target", lambda _p: self.apply()))
        self._watches.append(self._store.watch(self._base + "cpu", lambda _p: self.apply()))

    def stop(self) -> None:
        _unwatch(self._store, self._watches)

    def apply(self) -> None:
        """Balloon to the target and take vCPUs up or down as asked, if the
        guest runs."""
        if not self._watches:
            return
        try:
            domain = self._hv.get(self.domid)
        except HvNoSuchDomain:
            return
        if domain.paused or domain.shutdown or domain.dying:
            return
        target = _read(self._store, self._base + "memory/target", self.domid)
        if target is not None and target.isdigit() and int(target) != domain.memory_kb:
            self._hv.set_memory(self.domid, int(target))
        for vcpu in range(domain.vcpus):
            wanted = _read(self._store, "%scpu/%d/availability" % (self._base, vcpu), self.domid)
            if wanted in ("online", "offline"):
                self._hv.set_vcpu_online(self.domid, vcpu, wanted == "online")


class BuiltDomain:
    """Everything the host plays for one built domain, started and stopped
    together (the guest agent is passed in: :class:`~txlibxl.sim.agents.Agents`
    keeps it with the others)."""

    def __init__(self, store: Any, hypervisor: Any, domid: int) -> None:
        self.domid = domid
        self._hv = hypervisor
        self.backends = BackendDriver(store, domid, self.guest_runs)
        self.console = ConsoleStandIn(store, domid)
        self.resources = GuestResources(store, hypervisor, domid)

    def guest_runs(self) -> bool:
        try:
            domain = self._hv.get(self.domid)
        except HvNoSuchDomain:
            return False
        return not (domain.paused or domain.shutdown or domain.dying)

    def start(self) -> None:
        self.backends.start()
        self.console.start()
        self.resources.start()

    def stop(self) -> None:
        self.backends.stop()
        self.console.stop()
        self.resources.stop()

    def guest_changed(self) -> None:
        """The guest was unpaused, paused or shut down."""
        self.backends.guest_changed()
        self.resources.apply()
