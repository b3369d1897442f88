"""
The simulated host's actors besides the toolstack: guests, backends, QEMU.

* :class:`GuestAgent` plays the guest kernel's xenbus "manage" driver for
  one domain.  When the guest first runs it advertises
  ``control/feature-{poweroff,reboot,suspend}`` (and, for an HVM guest,
  sets ``HVM_PARAM_CALLBACK_IRQ`` as its PV drivers do), all in the guest's
  own name.  It watches ``control/shutdown``; on a request Linux knows
  (``poweroff``, ``halt``, ``reboot``, ``suspend``) it acknowledges by
  writing ``""`` and shuts its domain down in the hypervisor with the
  matching reason.  Unknown requests are left unacknowledged, as Linux
  does.  A paused guest does nothing until it is unpaused; a shut-down
  guest never answers again, unless it is resumed (after a suspend).  It can be told to ignore requests, or to
  wait before it acknowledges and shuts down.
* :class:`BackendAgent` plays dom0's blkback and netback on teardown: when
  a backend's ``online`` is ``0`` and its ``state`` is Closing (5), it
  writes Closed (6), after an optional delay (the ``slow_backend`` fault).
  That is what ``libxl_domain_destroy`` waits for (10 s at most).
* :class:`DeviceModel` plays the guest ejecting a CD: QEMU writes
  ``eject`` into the disk frontend's ``eject`` node.  For the domains the
  simulator made it writes it itself (the host also plays their device
  models); for those a toolstack built (the CD-ROM found through libxl's
  ``/libxl`` copy of the device) it asks their device model, the stand-in
  libxl spawned, which writes it
  (:data:`~txlibxl.sim.host_root.GUEST_EJECT`), or writes it itself when
  none runs (a PV guest's CD-ROM).
* :class:`Agents` starts and stops all of these per domain, following the
  hypervisor: a domain's agents go when it is destroyed.  For a domain a
  toolstack builds through the hypercall interface it also starts the
  backends, console and guest drivers of
  :class:`~txlibxl.sim.built_domains.BuiltDomain`.

Every reaction to a watch happens on a later reactor turn (a
``callLater``), never inside the store's write that fired the watch.
``Agents.stop_all`` cancels whatever is still scheduled.
"""
from typing import Any, Dict, List, Optional

from twisted.logger import Logger

from .built_domains import BuiltDomain
from .errors import BadRequest, NoSuchDomain
from .host_root import GUEST_EJECT
from .hypervisor import DomainChange, ShutdownReason
from .toolstack import Device, GuestRecord, XENBUS_CLOSED, XENBUS_CLOSING, vdev_to_devid

__all__ = ["SHUTDOWN_REQUESTS", "GuestAgent", "BackendAgent", "DeviceModel", "Agents"]

log = Logger()

#: The ``control/shutdown`` values Linux's ``drivers/xen/manage.c`` acts
#: on, and the shutdown reason each ends in.
SHUTDOWN_REQUESTS = {
    "poweroff": ShutdownReason.POWEROFF,
    "halt": ShutdownReason.POWEROFF,
    "reboot": ShutdownReason.REBOOT,
    "suspend": ShutdownReason.SUSPEND,
}

#: ``HVM_PARAM_CALLBACK_IRQ`` and the value a Linux HVM guest's PV drivers
#: set (a vector callback, ``HVM_PARAM_CALLBACK_TYPE_VECTOR << 56 | 0xf3``).
HVM_PARAM_CALLBACK_IRQ = 0
CALLBACK_VIA_VECTOR = (2 << 56) | 0xF3

#: The guest's behaviours.
NORMAL, IGNORE, DELAY = "normal", "ignore", "delay"


def _read(store, path: str, domid: int = 0) -> Optional[str]:
    """Read C{path}, or C{None} if it does not exist (or is not readable)."""
    try:
        return store.read(path, domid=domid).decode()
    except Exception:
        return None


class GuestAgent:
    """
    The guest's side of ``control/shutdown`` for one domain.

    @param store: the Store; the agent reads and writes as the guest.
    @param hypervisor: the Hypervisor, for the guest's own shutdown.
    @param reactor: an IReactorTime.
    """

    def __init__(self, store, hypervisor, reactor, domid: int, hvm: bool, booted: bool = False):
        self._store = store
        self._hv = hypervisor
        self._reactor = reactor
        self.domid = domid
        self._hvm = hvm
        self._path = "/local/domain/%d/control/shutdown" % domid
        self._watch = None
        #: A guest resumed after a suspend has booted already.
        self._booted = booted
        self._stopped = False
        self._calls: List[Any] = []
        self.behaviour = NORMAL
        self.delay = 0.0

    def start(self) -> None:
        """Watch ``control/shutdown``; boot now unless the domain is paused."""
        self._watch = self._store.watch(self._path, self._fired)
        if not self._booted and not self._hv.get(self.domid).paused:
            self._boot()

    def stop(self) -> None:
        """The guest no longer runs: unwatch, drop anything scheduled."""
        if self._stopped:
            return
        self._stopped = True
        if self._watch is not None:
            try:
                self._store.unwatch(self._watch)
            except Exception:
                pass
            self._watch = None
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls = []

    def set_behaviour(self, behaviour: str, delay: float = 0.0) -> None:
        """``normal``, ``ignore`` (never answer) or ``delay`` (wait
        C{delay} seconds, then acknowledge and shut down)."""
        self.behaviour = behaviour
        self.delay = delay

    def unpaused(self) -> None:
        """The domain runs again: boot if it never ran, look at requests."""
        if self._stopped:
            return
        if not self._booted:
            self._boot()
        self._schedule(0, self._check)

    # internals

    def _boot(self) -> None:
        self._booted = True
        base = "/local/domain/%d/control/" % self.domid
        for feature in ("feature-poweroff", "feature-reboot", "feature-suspend"):
            self._store.write(base + feature, b"1", domid=self.domid)
        if self._hvm:
            self._hv.set_hvm_param(self.domid, HVM_PARAM_CALLBACK_IRQ, CALLBACK_VIA_VECTOR)

    def _schedule(self, delay: float, f, *args) -> None:
        self._calls = [c for c in self._calls if c.active()]
        self._calls.append(self._reactor.callLater(delay, f, *args))

    def _fired(self, *event: Any) -> None:
        if not self._stopped:
            self._schedule(0, self._check)

    def _check(self) -> None:
        if self._stopped:
            return
        try:
            domain = self._hv.get(self.domid)
        except LookupError:
            return
        if domain.paused or domain.shutdown or domain.dying:
            return
        request = _read(self._store, self._path, self.domid)
        reason = SHUTDOWN_REQUESTS.get(request or "")
        if reason is None or self.behaviour == IGNORE:
            return
        if self.behaviour == DELAY and self.delay > 0:
            self._schedule(self.delay, self._act, request)
        else:
            self._act(request)

    def _act(self, request: str) -> None:
        if self._stopped or _read(self._store, self._path, self.domid) != request:
            return
        try:
            domain = self._hv.get(self.domid)
        except LookupError:
            return
        if domain.shutdown or domain.dying:
            return
        self._store.write(self._path, b"", domid=self.domid)
        log.debug("guest {domid} acknowledged {request}", domid=self.domid, request=request)
        self._hv.shutdown(self.domid, SHUTDOWN_REQUESTS[request])


class BackendAgent:
    """
    dom0's vbd and vif backends: Closing (with ``online`` 0) becomes Closed.

    One instance serves every device; its cost per event is one device's.
    """

    def __init__(self, store, reactor):
        self._store = store
        self._reactor = reactor
        #: Seconds a backend takes to reach Closed (the slow_backend fault).
        self.close_delay = 0.0
        self._watches: Dict[int, List[Any]] = {}
        self._calls: Dict[str, Any] = {}

    def attach(self, domid: int, devices) -> None:
        """Watch the ``state`` of each vbd/vif backend of C{domid}."""
        handles = self._watches.setdefault(domid, [])
        for device in devices:
            if device.kind in ("vbd", "vif"):
                path = device.backend + "/state"
                handles.append(self._store.watch(path, lambda *e, _d=device: self._fired(_d)))

    def detach(self, domid: int) -> None:
        """Forget C{domid}'s backends; pending closes are dropped."""
        for handle in self._watches.pop(domid, ()):
            try:
                self._store.unwatch(handle)
            except Exception:
                pass
        prefix = "/local/domain/0/backend/"
        for path in [p for p in self._calls if p.startswith(prefix) and p.split("/")[6] == str(domid)]:
            call = self._calls.pop(path)
            if call.active():
                call.cancel()

    def stop(self) -> None:
        for domid in list(self._watches):
            self.detach(domid)
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()

    def _fired(self, device: Device) -> None:
        if device.backend in self._calls:
            return
        self._calls[device.backend] = self._reactor.callLater(0, self._check, device)

    def _check(self, device: Device) -> None:
        self._calls.pop(device.backend, None)
        state = _read(self._store, device.backend + "/state")
        online = _read(self._store, device.backend + "/online")
        if state != str(XENBUS_CLOSING) or online != "0":
            return
        if self.close_delay > 0:
            self._calls[device.backend] = self._reactor.callLater(self.close_delay, self._close, device)
        else:
            self._close(device)

    def _close(self, device: Device) -> None:
        self._calls.pop(device.backend, None)
        state_path = device.backend + "/state"
        if _read(self._store, state_path) == str(XENBUS_CLOSING):
            self._store.write(state_path, b"%d" % XENBUS_CLOSED)
            log.debug("backend {path} closed", path=device.backend)


class DeviceModel:
    """QEMU's part: ejecting a CD-ROM's medium."""

    def __init__(self, store):
        self._store = store

    def eject(self, record: GuestRecord, vdev: str) -> Device:
        """
        Write ``eject`` into the frontend's ``eject`` node of the CD-ROM
        C{vdev} (as dom0's QEMU does when the guest ejects the medium).

        @raise BadRequest: no such disk, or it is not a CD-ROM.
        @raise NoSuchDomain: the frontend is gone (the domain is being
            destroyed).
        """
        device = record.disk(vdev)
        if not device.cdrom:
            raise BadRequest("%s of domain %d is not a CD-ROM" % (vdev, record.domid))
        if not self._store.exists(device.frontend):
            raise NoSuchDomain("domain %d has no frontend for %s any more" % (record.domid, vdev))
        self._store.write(device.frontend + "/eject", b"eject")
        return device

    def eject_built(self, domid: int, vdev: str) -> None:
        """
        The same for a domain a toolstack built: its CD-ROM C{vdev} is the
        one libxl recorded under ``/libxl/<domid>/device/vbd``.

        @raise BadRequest: no such disk, or it is not a CD-ROM.
        @raise NoSuchDomain: no such domain, or its frontend is gone.
        """
        devid = vdev_to_devid(vdev)
        recorded = "/libxl/%d/device/vbd/%d" % (domid, devid)
        frontend = _read(self._store, recorded + "/frontend")
        backend = _read(self._store, recorded + "/backend")
        if frontend is None or backend is None:
            if not self._store.exists("/libxl/%d" % domid):
                raise NoSuchDomain("no domain %d" % domid)
            raise BadRequest("domain %d has no disk %s" % (domid, vdev))
        if _read(self._store, backend + "/device-type") != "cdrom":
            raise BadRequest("%s of domain %d is not a CD-ROM" % (vdev, domid))
        if not self._store.exists(frontend):
            raise NoSuchDomain("domain %d has no frontend for %s any more" % (domid, vdev))
        if _read(self._store, "/local/domain/0/device-model/%d/state" % domid) == "running":
            self._store.write(GUEST_EJECT % (domid, devid), b"eject")
        else:
            self._store.write(frontend + "/eject", b"eject")


class Agents:
    """
    All agents of a host.  ``start(record)`` when the toolstack has created
    a domain; the agents of a destroyed domain stop by themselves (they
    follow the hypervisor), and a shut-down guest stops answering.
    """

    def __init__(self, store, hypervisor, reactor):
        self._store = store
        self._hv = hypervisor
        self._reactor = reactor
        self.backends = BackendAgent(store, reactor)
        self.device_model = DeviceModel(store)
        self._guests: Dict[int, GuestAgent] = {}
        self._built: Dict[int, BuiltDomain] = {}
        # Faults that apply to guests not created yet are kept per domid.
        self._subscription = hypervisor.subscribe(self._changed)

    def guest(self, domid: int) -> GuestAgent:
        """
        @raise NoSuchDomain: no guest agent runs for C{domid}.
        """
        try:
            return self._guests[domid]
        except KeyError:
            raise NoSuchDomain("no running guest %r" % (domid,)) from None

    def start(self, record: GuestRecord) -> None:
        agent = GuestAgent(self._store, self._hv, self._reactor, record.domid, record.type != "pv")
        self._guests[record.domid] = agent
        agent.start()
        self.backends.attach(record.domid, record.devices)

    def start_built(self, domain) -> None:
        """A toolstack created C{domain} through the hypercall interface:
        play its guest, backends and console as it builds it."""
        self.stop(domain.domid)
        agent = GuestAgent(self._store, self._hv, self._reactor, domain.domid, domain.type != "pv")
        self._guests[domain.domid] = agent
        agent.start()
        built = self._built[domain.domid] = BuiltDomain(self._store, self._hv, domain.domid)
        built.start()

    def built(self, domid: int) -> BuiltDomain:
        """
        @raise NoSuchDomain: C{domid} is not a domain a toolstack built.
        """
        try:
            return self._built[domid]
        except KeyError:
            raise NoSuchDomain("no built domain %r" % (domid,)) from None

    def stop(self, domid: int) -> None:
        agent = self._guests.pop(domid, None)
        if agent is not None:
            agent.stop()
        built = self._built.pop(domid, None)
        if built is not None:
            built.stop()
        self.backends.detach(domid)

    def stop_all(self) -> None:
        self._hv.unsubscribe(self._subscription)
        for domid in list(self._guests):
            self.stop(domid)
        self.backends.stop()

    def clear_faults(self) -> None:
        self.backends.close_delay = 0.0
        for agent in self._guests.values():
            agent.set_behaviour(NORMAL)

    def _changed(self, domain, what: DomainChange) -> None:
        agent = self._guests.get(domain.domid)
        if what is DomainChange.DESTROYED or what is DomainChange.DYING:
            self.stop(domain.domid)
            return
        built = self._built.get(domain.domid)
        if built is not None and what in _RUN_CHANGES:
            built.guest_changed()
        if agent is None:
            return
        elif what is DomainChange.SHUTDOWN:
            agent.stop()
        elif what is DomainChange.UNPAUSED and not domain.paused:
            agent.unpaused()
        elif what is DomainChange.RESUMED:
            self._resumed(agent)

    def _resumed(self, old: GuestAgent) -> None:
        """The guest runs again after a suspend (a checkpoint, a failed
        save): its driver answers again, as it did."""
        agent = GuestAgent(self._store, self._hv, self._reactor, old.domid, old._hvm, booted=True)
        agent.set_behaviour(old.behaviour, old.delay)
        old.stop()
        self._guests[old.domid] = agent
        agent.start()


#: The changes after which a guest may have started or stopped running.
_RUN_CHANGES = (DomainChange.UNPAUSED, DomainChange.PAUSED, DomainChange.SHUTDOWN,
                DomainChange.RESUMED)
