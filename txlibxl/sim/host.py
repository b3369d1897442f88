"""
The simulated host: everything composed into one process.

:class:`SimHost` is the model and its control ops, with no sockets: a
``Store``, a ``Hypervisor`` (with Domain-0), the :class:`Toolstack`, the
:class:`Agents`, and one method per control op.  ``SimHost.handlers()`` is
the op table a :class:`~txlibxl.sim.control.ControlServer` serves.  The
host process that puts it on sockets is :mod:`txlibxl.sim.host_process`.
"""
import errno
import os
import time
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer, task
from twisted.logger import Logger

from . import xenstored
from .agents import DELAY, IGNORE, Agents
from .control import Handler, UnknownOp, check_arguments
from .errors import BadRequest, Conflict, NoSuchDomain
from .host_device_models import HostDeviceModels
from .host_guest import GuestMemoryOps
from .hypervisor import (
    DomainChange,
    HostInfo,
    Hypervisor,
    HypervisorError,
    InvalidDomainConfig,
    InvalidOperation,
    NoFreeDomid,
    OutOfMemory,
    ShutdownReason,
)
from .hypervisor import NoSuchDomain as HvNoSuchDomain
from .store import Store, XenstoreError
from .toolstack import DomainSpec, Toolstack

__all__ = ["SimHost"]

log = Logger()

#: Memory of the simulated machine: enough for tens of thousands of the
#: default 256 MiB guests (the model has no real memory to back).
HOST_MEMORY_KB = 16 * 1024 ** 3

#: The largest ``create_domains`` count (domids end at 0x7FEF).
MAX_BULK = 32000

DESTROY_MODES = ("burst", "lockstep", "rate")


def _domid(value: Any, name: str = "domid") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("%s must be an integer, got %r" % (name, value))
    return value


def _seconds(value: Any, name: str = "seconds") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 86400:
        raise BadRequest("%s must be a number of seconds in [0, 86400], got %r" % (name, value))
    return float(value)


class SimHost(GuestMemoryOps):
    """
    The simulated host's state and control ops.

    @param reactor: an IReactorTime (and, for the host process, IReactorUNIX).
    """

    def __init__(self, reactor, memory_kb: int = HOST_MEMORY_KB, root: Optional[str] = None):
        self.reactor = reactor
        self.store = Store(
            schedule=lambda f: reactor.callLater(0, f),
            domain_exists=self._domain_exists,
            ring_check=self._ring_check,
            on_resume=lambda domid: self.hypervisor.xenstored_resume(domid),
        )
        self.hypervisor = Hypervisor(self.store, host=HostInfo(total_memory_kb=memory_kb))
        userdata = os.path.join(root, "var", "lib", "xen") if root else None
        self.toolstack = Toolstack(self.store, self.hypervisor, userdata_dir=userdata)
        # Saved configurations of destroyed domains, removed on a later turn
        # (a burst of deaths must not wait for the filesystem).
        self._stale_files: List[str] = []
        self.agents = Agents(self.store, self.hypervisor, reactor)
        #: The device models of the HVM domains this host makes.
        self.device_models = HostDeviceModels(self.store, reactor, root)
        self.hypervisor.subscribe(self._changed)
        self.toolstack.setup_dom0()
        #: The xenstored's listening port while it runs (set by the host process).
        self.xenstored_port = None
        self.xenstored_path: Optional[str] = None
        self._waiting: List[defer.Deferred] = []
        # create_domains: the last suffix used per prefix, so that naming
        # does not rescan the names taken before.
        self._suffix: Dict[str, int] = {}
        #: Fires (with None) when the stop op asks the host to exit.
        self.stop_requested = defer.Deferred()

    def _domain_exists(self, domid: int) -> bool:
        try:
            self.hypervisor.get(domid)
        except HvNoSuchDomain:
            return False
        return True

    def _ring_check(self, domid: int, port: int) -> None:
        """xenstored's INTRODUCE: can it map the ring and bind the port?"""
        try:
            self.hypervisor.xenstore_ring(domid, port)
        except HypervisorError as e:
            raise XenstoreError(errno.errorcode.get(e.errno, "EINVAL"), str(e)) from None

    def domain_built(self, domain) -> None:
        """A toolstack created C{domain} through the hypercall interface."""
        self.agents.start_built(domain)

    def _changed(self, domain, what: DomainChange) -> None:
        if what is DomainChange.DESTROYED:
            record = self.toolstack.forget(domain.domid)
            path = self.toolstack.saved_config_path(record) if record is not None else None
            if path is not None:
                if not self._stale_files:
                    self.reactor.callLater(0, self._remove_stale_files)
                self._stale_files.append(path)
            if domain.domid in self.device_models:
                self.device_models.forget(domain.domid)

    def _remove_stale_files(self) -> None:
        paths, self._stale_files = self._stale_files, []
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Stop the agents and every waiting op (for a clean exit)."""
        for d in list(self._waiting):
            d.cancel()
        self.agents.stop_all()
        self.device_models.stop_all()
        self.hypervisor.cancel_pending()
        self._remove_stale_files()

    # -- the op table --------------------------------------------------------

    def handlers(self) -> Dict[str, Handler]:
        """Op name to handler, for the control server."""
        return {
            "ping": self.ping,
            "create_domain": self.create_domain,
            "create_domains": self.create_domains,
            "shutdown": self.shutdown,
            "crash": self.crash,
            "resume": self.resume,
            "pause": self.pause,
            "unpause": self.unpause,
            "destroy": self.destroy,
            "eject": self.eject,
            "list": self.list,
            "info": self.info,
            "guest_marker": self.guest_marker,
            "guest_image": self.guest_image,
            "fault": self.fault,
            "check_store": self.check_store,
            "watch_count": self.watch_count,
            "stop": self.stop,
        }

    def call(self, op: str, args: Dict[str, Any]) -> defer.Deferred:
        """Run one op as the control server would (for scenarios)."""
        handler = self.handlers().get(op)
        if handler is None:
            return defer.fail(UnknownOp("no op %r" % (op,)))
        try:
            check_arguments(op, handler, args)
        except BadRequest:
            return defer.fail()
        return defer.maybeDeferred(handler, **args)

    # -- ops -------------------------------------------------------------------

    def ping(self) -> str:
        return "pong"

    def create_domain(self, **args: Any) -> Dict[str, Any]:
        """Create, start the agents, unpause unless asked not to."""
        return self._create(DomainSpec.from_args(args))

    def create_domains(self, count: Any = None, prefix: Any = "guest", **args: Any) -> List[Dict[str, Any]]:
        """
        C{count} domains named C{prefix}1, C{prefix}2... (skipping names in
        use, and continuing after the last suffix an earlier call used),
        all alike.  Stops at the first failure (the domains created
        before it stay).
        """
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BULK:
            raise BadRequest("count must be an integer in [1, %d], got %r" % (MAX_BULK, count))
        if not isinstance(prefix, str) or not prefix or "/" in prefix:
            raise BadRequest("prefix must be a non-empty name, got %r" % (prefix,))
        template = DomainSpec.from_args(args, name=prefix)
        created = []
        n = self._suffix.get(prefix, 0)
        for _ in range(count):
            while True:
                n += 1
                name = "%s%d" % (prefix, n)
                if not self._name_taken(name):
                    break
            created.append(self._create(DomainSpec(name, *_spec_tail(template))))
            self._suffix[prefix] = n
        return created

    def _name_taken(self, name: str) -> bool:
        try:
            self.toolstack.by_name(name)
        except NoSuchDomain:
            return False
        return True

    def _create(self, spec: DomainSpec) -> Dict[str, Any]:
        try:
            record = self.toolstack.create(spec)
        except (OutOfMemory, NoFreeDomid) as e:
            raise Conflict("cannot create %s: %s" % (spec.name, e)) from None
        except InvalidDomainConfig as e:
            raise BadRequest(str(e)) from None
        self.agents.start(record)
        if spec.type == "hvm":
            self.device_models.start(record, spec)
        if not spec.paused:
            self.hypervisor.unpause(record.domid)
        return {"domid": record.domid, "uuid": record.uuid, "name": record.name}

    def shutdown(self, domid: Any = None, reason: Any = "poweroff") -> Dict[str, Any]:
        """The guest shuts itself down with C{reason}."""
        domid = _domid(domid)
        if not isinstance(reason, str) or reason.upper() not in ShutdownReason.__members__:
            names = ", ".join(r.name.lower() for r in ShutdownReason)
            raise BadRequest("reason must be one of %s, got %r" % (names, reason))
        reply = self._hv(self.hypervisor.shutdown, domid, ShutdownReason[reason.upper()])
        # The wall-clock time the hypervisor applied the change, for
        # benchmarks that time a client's view of it (same machine clock).
        reply["changed_at"] = time.time()
        return reply

    def crash(self, domid: Any = None) -> Dict[str, Any]:
        return self._hv(self.hypervisor.crash, _domid(domid))

    def resume(self, domid: Any = None) -> Dict[str, Any]:
        """A toolstack resumes a suspended (shut down) domain, as
        ``libxl_domain_resume`` does (``XEN_DOMCTL_resumedomain``, then
        ``XS_RESUME``): it runs again, its guest agent answers again, and
        its next shutdown fires @releaseDomain."""
        domid = _domid(domid)
        reply = self._hv(self.hypervisor.resume, domid)
        self.hypervisor.xenstored_resume(domid)
        return reply

    def pause(self, domid: Any = None) -> Dict[str, Any]:
        return self._hv(self.hypervisor.pause, _domid(domid))

    def unpause(self, domid: Any = None) -> Dict[str, Any]:
        return self._hv(self.hypervisor.unpause, _domid(domid))

    def _hv(self, operation, domid: int, *args: Any) -> Dict[str, Any]:
        try:
            return _describe(operation(domid, *args))
        except HvNoSuchDomain:
            raise NoSuchDomain("no domain %d" % domid) from None
        except InvalidOperation as e:
            raise Conflict(str(e)) from None

    def destroy(self, domids: Any = None, mode: Any = "burst", rate: Any = None, with_time: Any = False) -> Any:
        """
        Destroy C{domids} as another toolstack would: stop their agents,
        remove their xenstore trees, destroy them in the hypervisor.
        ``burst``: all in one hypervisor state change; ``lockstep``: one at
        a time, each after the previous one's ``@releaseDomain`` was sent;
        ``rate``: C{rate} domains per second.  Fires with the domids
        destroyed (a domain that died meanwhile is skipped); with
        C{with_time}, with ``{"domids": [...], "changed_at": T, "last_at":
        T}``: the wall-clock times of the first and the last hypervisor
        change (for benchmarks).
        """
        if not isinstance(with_time, bool):
            raise BadRequest("with_time must be a boolean, got %r" % (with_time,))
        if not isinstance(domids, list) or not domids:
            raise BadRequest("domids must be a non-empty list of domids")
        targets = []
        for domid in domids:
            domid = _domid(domid, "each domid")
            if domid == 0:
                raise Conflict("cannot destroy the control domain")
            try:
                self.hypervisor.get(domid)
            except HvNoSuchDomain:
                raise NoSuchDomain("no domain %d" % domid) from None
            if domid not in targets:
                targets.append(domid)
        if mode not in DESTROY_MODES:
            raise BadRequest("mode must be one of %s, got %r" % (", ".join(DESTROY_MODES), mode))
        if mode == "rate":
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1e6:
                raise BadRequest("mode rate needs rate, domains per second (> 0), got %r" % (rate,))
        elif rate is not None:
            raise BadRequest("rate is only for mode rate")
        times: List[float] = []
        if mode == "burst":
            for domid in targets:
                self._tear_down(domid)
            self.hypervisor.destroy_many(targets)
            times.append(time.time())
            return _with_times(targets, times) if with_time else targets
        interval = 0.0 if mode == "lockstep" else 1.0 / rate
        d = self._track(defer.ensureDeferred(self._destroy_one_by_one(targets, interval, times)))
        if with_time:
            d.addCallback(_with_times, times)
        return d

    async def _destroy_one_by_one(self, targets: Sequence[int], interval: float,
                                  times: List[float]) -> List[int]:
        done = []
        for i, domid in enumerate(targets):
            if i and interval:
                await self._sleep(interval)
            try:
                domain = self.hypervisor.get(domid)
            except HvNoSuchDomain:
                continue
            if domain.dying:
                continue
            self._tear_down(domid)
            self.hypervisor.destroy(domid)
            times.append(time.time())
            done.append(domid)
            if not interval:
                # The @releaseDomain event is written to the clients'
                # transports now; two reactor turns later it has been sent.
                await self._sleep(0)
                await self._sleep(0)
        return done

    def _tear_down(self, domid: int) -> None:
        self.agents.stop(domid)
        try:
            record = self.toolstack.get(domid)
        except NoSuchDomain:
            return
        self.toolstack.teardown(record)

    def _sleep(self, seconds: float) -> defer.Deferred:
        return self._track(task.deferLater(self.reactor, seconds, lambda: None))

    def _track(self, d: defer.Deferred) -> defer.Deferred:
        self._waiting.append(d)

        def untrack(result: Any) -> Any:
            if d in self._waiting:
                self._waiting.remove(d)
            return result

        d.addBoth(untrack)
        return d

    def eject(self, domid: Any = None, vdev: Any = None) -> None:
        """QEMU writes the eject node of the CD-ROM C{vdev} (of a domain
        the simulator made, or one a toolstack built)."""
        domid = _domid(domid)
        try:
            record = self.toolstack.get(domid)
        except NoSuchDomain:
            record = None
        if not isinstance(vdev, str):
            raise BadRequest("vdev must be a string, got %r" % (vdev,))
        if record is not None:
            device = self.agents.device_model.eject(record, vdev)
            if domid in self.device_models:
                self.device_models.guest_ejected(domid, device.devid)
        else:
            self.agents.device_model.eject_built(domid, vdev)
        return None

    def list(self) -> List[Dict[str, Any]]:
        return [self._describe(d) for d in self.hypervisor.domains()]

    def info(self, domid: Any = None) -> Dict[str, Any]:
        domid = _domid(domid)
        try:
            domain = self.hypervisor.get(domid)
            return dict(self._describe(domain), **self.memory_info(domain))
        except HvNoSuchDomain:
            raise NoSuchDomain("no domain %d" % domid) from None

    def watch_count(self, path: Any = None) -> int:
        """How many watches are set exactly on C{path} (absolute or
        special): lets a test wait until a client has set its watch."""
        if not isinstance(path, str) or not path.startswith(("/", "@")):
            raise BadRequest("path must be an absolute path or a special watch, got %r" % (path,))
        return self.store.watch_count(path)

    def check_store(self) -> List[str]:
        """What is inconsistent in the xenstore tree (``Store.check``):
        empty when all is well.  Walks the whole tree: for tests."""
        return self.store.check()

    def _describe(self, domain) -> Dict[str, Any]:
        """L{_describe}, with the name from xenstore for a domain a
        toolstack built (the hypervisor knows no names)."""
        name = None
        if not domain.name:
            try:
                name = self.store.read("/local/domain/%d/name" % domain.domid).decode()
            except XenstoreError:
                name = None
        return _describe(domain, name)

    def fault(self, kind: Any = None, **args: Any) -> None:
        """Inject a fault; see the protocol for the kinds."""
        handler = {
            "xenstored_stall": self._fault_stall,
            "xenstored_die": self._fault_die,
            "xenstored_restart": self._fault_restart,
            "slow_backend": self._fault_slow_backend,
            "guest_ignore_shutdown": self._fault_ignore,
            "guest_delay": self._fault_delay,
            "device_model_hang": lambda: self.device_models.set_fault("device_model_hang"),
            "device_model_mute": lambda: self.device_models.set_fault("device_model_mute"),
            "clear": self._fault_clear,
        }.get(kind)
        if handler is None:
            raise BadRequest("unknown fault kind %r" % (kind,))
        check_arguments("fault %s" % kind, handler, args)
        handler(**args)
        log.info("fault {kind} {args}", kind=kind, args=args)
        return None

    def _xenstored(self):
        if self.xenstored_port is None:
            raise Conflict("xenstored is not running")
        return self.xenstored_port

    def _fault_stall(self, seconds: Any = None) -> None:
        self._xenstored().factory.stall(_seconds(seconds))

    def _fault_die(self) -> None:
        port = self._xenstored()
        self.xenstored_port = None
        port.factory.resume()
        port.stopListening()
        for proto in list(port.factory.protocols):
            proto.transport.abortConnection()

    def _fault_restart(self) -> None:
        if self.xenstored_path is None:
            raise Conflict("this host has no xenstored socket")
        if self.xenstored_port is not None:
            self._fault_die()
        self.start_xenstored(self.xenstored_path)

    def start_xenstored(self, path: str) -> None:
        self.xenstored_path = path
        if os.path.exists(path):
            os.unlink(path)
        self.xenstored_port = xenstored.listen(self.reactor, self.store, path)

    def _fault_slow_backend(self, seconds: Any = None) -> None:
        self.agents.backends.close_delay = _seconds(seconds)

    def _fault_ignore(self, domid: Any = None) -> None:
        self.agents.guest(_domid(domid)).set_behaviour(IGNORE)

    def _fault_delay(self, domid: Any = None, seconds: Any = None) -> None:
        self.agents.guest(_domid(domid)).set_behaviour(DELAY, _seconds(seconds))

    def _fault_clear(self) -> None:
        """Every fault off: backends and guests normal, xenstored answering
        (restarted if it died), device models answering."""
        self.agents.clear_faults()
        self.device_models.set_fault(None)
        if self.xenstored_port is not None:
            self.xenstored_port.factory.resume()
        elif self.xenstored_path is not None:
            self.start_xenstored(self.xenstored_path)

    def stop(self) -> str:
        """Reply, then ask the process to exit."""
        if not self.stop_requested.called:
            self.reactor.callLater(0, self.stop_requested.callback, None)
        return "stopping"


def _with_times(domids: List[int], times: List[float]) -> Dict[str, Any]:
    return {
        "domids": domids,
        "changed_at": times[0] if times else None,
        "last_at": times[-1] if times else None,
    }


def _spec_tail(spec: DomainSpec):
    return (spec.type, spec.memory_kb, spec.vcpus, spec.disks, spec.vifs, spec.paused)


def _describe(domain, name_in_store: Optional[str] = None) -> Dict[str, Any]:
    if domain.dying:
        state = "dying"
    elif domain.shutdown:
        state = "shutdown"
    elif domain.paused:
        state = "paused"
    elif domain.blocked:
        state = "blocked"
    else:
        state = "running"
    reason = domain.shutdown_reason
    return {
        "domid": domain.domid,
        "name": domain.name or name_in_store,
        "uuid": str(domain.uuid),
        "type": domain.type,
        "state": state,
        "shutdown_reason": reason.name.lower() if reason is not None else None,
    }
