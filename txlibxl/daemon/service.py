"""
The service behind ``twistd libxl-events``: :class:`LibxlEventsService`.

It follows every domain of the host (or those ``--domains`` names) and
publishes what happens to them, as :class:`~txlibxl.daemon.records.EventRecord`
values, to its :class:`~txlibxl.daemon.sinks.IEventSink` sinks.  It is an
ordinary ``twisted.application.service.Service``: ``twistd`` runs it
through :mod:`txlibxl.daemon.tap`, and a management stack can add it to its own
application with its own sinks.

How it works
------------
* A *session* is one :class:`~txlibxl.context.Context` plus one
  libxenstore connection of its own (:class:`~txlibxl.loop.reactor_xenstore.XenstoreWatcher`)
  watching ``@introduceDomain``.  Each firing, and a periodic rescan (the
  safety net), compares ``list_domains`` with the tracked domains
  (:func:`~txlibxl.daemon.discovery.compare`): a new domain gets a ``new`` record
  and a domain watch (and, with ``disk_eject``, a watch on each CD-ROM).
* A libxl disaster (a watch fails with
  :class:`~txlibxl.errors.LibxlDisaster`, or the context reports one) or a
  lost xenstore connection ends the session: the context is closed, and a
  new session is opened after a :class:`~txlibxl.daemon.recovery.Backoff` delay,
  again and again until it works.  The new session re-arms every watch
  and *reconciles*: a tracked domain that is gone gets its ``death``
  marked ``reconciled``; a domain that appeared meanwhile gets a
  reconciled ``new``; a shutdown that happened meanwhile is reported by
  the new watch, marked reconciled; a shutdown already published is not
  published again (libxl's new watch repeats it, and it is dropped).
* Records are numbered (``seq``) by a sequence: in memory from 1 by
  default; the daemon's :class:`~txlibxl.daemon.sequence.SequenceStore`
  keeps the numbers in a state directory so that none is ever reused,
  across restarts and crashes.
* :meth:`LibxlEventsService.request_snapshot` publishes a ``snapshot``
  record listing the host's domains, at once if a session is open, else
  right after the next session's first scan (a sink that needs one when
  it starts asks before the service starts).

What can be lost: what libxl cannot tell afterwards.  A domain that shut
down *and* died while the service was recovering gets only its
(reconciled) death; a domain created and destroyed meanwhile is never
seen.
"""
from __future__ import annotations

import enum
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from txlibxl import errors
from txlibxl.events import DomainInfo
from txlibxl.loop.reactor_xenstore import XenstoreError, XenstoreWatcher

from .following import DomainFollowing, reason_name
from .publishing import RecordPublishing
from .discovery import DomainFilter, DomainKey, TrackedDomain
from .metrics import Metrics
from .records import EVENT_TYPES, EventRecord, SnapshotDomain
from .sequence import MemorySequence
from .recovery import Backoff
from .sinks import IEventSink, IHostStatus
from .startup import StartupError

__all__ = ["LibxlEventsService", "State"]


class State(enum.Enum):
    """Where the service is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RECOVERING = "recovering"
    STOPPING = "stopping"


def _state_of(info: DomainInfo) -> str:
    if info.dying:
        return "dying"
    if info.shutdown:
        return "shutdown"
    if info.paused:
        return "paused"
    if info.blocked:
        return "blocked"
    return "running"


def _vbd_watch_domid(token: str) -> Optional[int]:
    """The domid of a disk-list watch's token (``/libxl/<domid>/device/vbd``), else ``None``."""
    parts = token.split("/")
    if len(parts) == 5 and parts[1] == "libxl" and parts[3:] == ["device", "vbd"] and parts[2].isdigit():
        return int(parts[2])
    return None


def _default_context(reactor: Any, log_level: str) -> Any:
    from txlibxl.context import Context

    return Context(reactor, log_level)


def _default_xenstore() -> Any:
    from txlibxl._libxl.xenstore import XenstoreConnection

    return XenstoreConnection.open()


@implementer(IHostStatus)
class LibxlEventsService(DomainFollowing, RecordPublishing, Service):
    """
    Follows the host's domains and publishes their events to C{sinks}.

    :param reactor: the reactor (the global one by default).
    :param sinks: :class:`~txlibxl.daemon.sinks.IEventSink` providers; more can
        be added with :meth:`add_sink` before the service starts.
    :param domains: a :class:`~txlibxl.daemon.discovery.DomainFilter` (every
        domain by default).
    :param disk_eject: also watch every CD-ROM's ejects.
    :param rescan_interval: seconds between safety-net rescans.
    :param backoff: the delays between attempts to reopen libxl.
    :param host: an object with ``start()`` and ``stop()`` returning
        Deferreds, started before the first context is opened and stopped
        after the last is closed (``--simulate``'s simulated host).
    :param log_level: the least severe libxl log level passed on.
    :param open_context: ``open_context(reactor)`` returns a new
        :class:`~txlibxl.context.Context` (a seam for tests).
    :param open_xenstore: returns a new
        :class:`~txlibxl._libxl.xenstore.XenstoreConnection`.
    :param liveness_interval: seconds between checks of the xenstore
        connection (a lost connection gives no other sign).
    :param host_name: the ``host`` of every record (this machine's host
        name by default).
    :param on_failure: called with one line when the service cannot start
        (the simulated host did not start, an unexpected error); by
        default the line is logged and the reactor stopped.  The daemon
        passes :meth:`txlibxl.daemon.startup.ProcessExit.fail`, which also
        makes the process exit non-zero.
    :param sequence: where ``seq`` numbers come from (``next()``, ``last``,
        ``close()``): a :class:`~txlibxl.daemon.sequence.SequenceStore`, or
        by default numbers from 1 kept in memory.  It is closed when the
        service stops.
    """

    name = "libxl-events"
    _log = Logger(namespace="txlibxl.daemon.service")

    def __init__(
        self,
        reactor: Any = None,
        sinks: Sequence[Any] = (),
        *,
        domains: Optional[DomainFilter] = None,
        disk_eject: bool = False,
        rescan_interval: float = 5.0,
        backoff: Optional[Backoff] = None,
        host: Any = None,
        log_level: str = "warn",
        open_context: Optional[Callable[[Any], Any]] = None,
        open_xenstore: Optional[Callable[[], Any]] = None,
        liveness_interval: float = 1.0,
        host_name: Optional[str] = None,
        on_failure: Optional[Callable[[str], None]] = None,
        sequence: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        if not rescan_interval > 0:
            raise ValueError(f"rescan_interval must be positive, not {rescan_interval!r}")
        self.reactor = reactor
        if host_name is None:
            import socket

            host_name = socket.gethostname()
        if not host_name:
            raise ValueError("host_name must not be empty")
        self.host_name = host_name
        self._snapshot_wanted = False
        self._scan_queued = False
        self._scan_again = False
        self.sinks: List[Any] = []
        for sink in sinks:
            self.add_sink(sink)
        self.filter = domains if domains is not None else DomainFilter()
        self.disk_eject = disk_eject
        self.rescan_interval = rescan_interval
        self.backoff = backoff if backoff is not None else Backoff()
        self.host = host
        self._open_context = open_context or (lambda r: _default_context(r, log_level))
        self._open_xenstore = open_xenstore or _default_xenstore
        self._liveness_interval = liveness_interval
        self._on_failure = on_failure or self._log_and_stop
        self.metrics = Metrics()
        self.state = State.STOPPED
        self._sequence = sequence if sequence is not None else MemorySequence()
        self._published = 0
        self.recoveries = 0
        self.tracked: Dict[DomainKey, TrackedDomain] = {}
        self._ctx: Any = None
        self._watcher: Optional[XenstoreWatcher] = None
        self._rescan: Optional[LoopingCall] = None
        self._retry: Any = None
        self._starting: Optional[defer.Deferred] = None
        self._session_ready: List[defer.Deferred] = []
        self._last_snapshot: List[DomainInfo] = []
        self._name_watches: Set[int] = set()
        self.metrics.gauge("txlibxl_watched_domains", "Domains followed by a live watch.", self._watched_count)
        self.metrics.gauge("txlibxl_watched_cdroms", "CD-ROM drives watched for ejects.", self._cdrom_count)
        self.metrics.gauge("txlibxl_last_sequence", "The seq of the last record published.", lambda: self.seq)
        self.metrics.gauge("txlibxl_up", "1 when a libxl context is open and healthy.", lambda: int(self.state is State.RUNNING))
        self.metrics.gauge("txlibxl_osevent_fds", "File descriptors libxl has registered in the reactor.", lambda: self._osevent_stat("fds"))
        self.metrics.gauge("txlibxl_osevent_timers", "Timers libxl has registered in the reactor.", lambda: self._osevent_stat("timers"))
        self.metrics.gauge(
            "txlibxl_osevent_fd_registrations",
            "fd registrations libxl holds in the reactor (several may share an fd).",
            lambda: self._osevent_stat("fd_registrations"),
        )
        self.metrics.gauge("txlibxl_libxl_children", "libxl's child processes not reaped yet.", self._children_count)
        self.metrics.labelled_gauge(
            "txlibxl_sink_queue_depth",
            "Records a sink has taken but not yet handed to the OS, by sink.",
            "sink",
            self._queue_depths,
        )
        self.metrics.start_labels("txlibxl_events_total", EVENT_TYPES)

    # -- configuration -------------------------------------------------------

    def add_sink(self, sink: Any) -> None:
        """Publish to C{sink} too (an :class:`~txlibxl.daemon.sinks.IEventSink`)."""
        if not IEventSink.providedBy(sink):
            raise TypeError(f"{sink!r} does not provide IEventSink")
        self.sinks.append(sink)

    # -- status (for the HTTP sink and for embedding applications) -----------

    @property
    def context(self) -> Any:
        """The current libxl context, or ``None`` between sessions."""
        return self._ctx

    def when_running(self) -> defer.Deferred:
        """A Deferred that fires (with ``None``) once a session is open."""
        if self.state is State.RUNNING:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._session_ready.append(d)
        return d

    def health(self) -> Dict[str, Any]:
        """``{"status": <state>, "healthy": bool, ...}``: healthy while a session is open."""
        return {
            "status": self.state.value,
            "healthy": self.state is State.RUNNING,
            "watched_domains": self._watched_count(),
            "last_seq": self.seq,
            "recoveries": self.recoveries,
        }

    def domains(self) -> Dict[str, Any]:
        """
        A snapshot of the host: every domain ``list_domains`` reports now
        (the last scan's, marked ``stale``, while no context is open), and
        whether the service watches it.
        """
        stale = True
        if self.state is State.RUNNING and self._ctx is not None:
            try:
                self._last_snapshot = self._call("libxl_list_domain", self._ctx.list_domains)
                stale = False
            except errors.TxlibxlError:
                pass
        rows = []
        for info in self._last_snapshot:
            dom = self.tracked.get((info.domid, info.uuid))
            rows.append(
                {
                    "domid": info.domid,
                    "uuid": info.uuid,
                    "name": info.name if info.name is not None else (dom.name if dom else None),
                    "type": info.type,
                    "state": _state_of(info),
                    "shutdown_reason": reason_name(info.shutdown_reason) if info.shutdown else None,
                    "memory_kb": info.current_memkb,
                    "vcpus": info.vcpus_online,
                    "watched": bool(dom is not None and dom.watched),
                    "cdroms": sorted(dom.ejects) if dom is not None else [],
                }
            )
        return {"stale": stale, "status": self.state.value, "last_seq": self.seq, "domains": rows}

    def metrics_text(self) -> str:
        """The metrics, as Prometheus text."""
        return self.metrics.render()

    @property
    def seq(self) -> int:
        """The ``seq`` of the last record published (0 before the first ever)."""
        return self._sequence.last

    @property
    def registry(self) -> Any:
        """The ``prometheus_client`` registry of the service's metrics."""
        return self.metrics.registry

    def _children_count(self) -> int:
        return self._ctx.children_running if self._ctx is not None else 0

    def _queue_depths(self) -> Dict[str, float]:
        depths: Dict[str, float] = {}
        for sink in self.sinks:
            name = getattr(sink, "name", type(sink).__name__)
            depth = getattr(sink, "queue_depth", None)
            depths[name] = depths.get(name, 0) + (depth() if callable(depth) else 0)
        return depths

    def _watched_count(self) -> int:
        return sum(1 for dom in self.tracked.values() if dom.watched)

    def _cdrom_count(self) -> int:
        return sum(len(dom.ejects) for dom in self.tracked.values())

    def _osevent_stat(self, name: str) -> int:
        if self._ctx is None:
            return 0
        try:
            return int(getattr(self._ctx.osevents.stats(), name))
        except Exception:
            return 0

    # -- life ----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.state = State.STARTING
        self._starting = defer.ensureDeferred(self._start())
        self._starting.addErrback(self._start_failed)

    async def _start(self) -> None:
        if self.host is not None:
            await self.host.start()
        if self.state is not State.STARTING:
            return
        self._attempt()

    def _start_failed(self, failure: Failure) -> None:
        if failure.check(defer.CancelledError) and self.state is State.STOPPING:
            return
        self.state = State.STOPPED
        error = failure.value
        if isinstance(error, StartupError):
            reason = str(error)
        else:
            # A bug rather than the operator's problem: the traceback at
            # debug level, for developers; one line for the operator.
            self._log.failure("libxl-events could not start", failure, level=LogLevel.debug)
            reason = f"{type(error).__name__}: {error}"
        self._on_failure(f"cannot start: {reason}")

    def _log_and_stop(self, reason: str) -> None:
        self._log.critical("libxl-events {reason}", reason=reason)
        if self.reactor.running:
            self.reactor.stop()
        else:
            self.reactor.callWhenRunning(self.reactor.stop)

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        previous, self.state = self.state, State.STOPPING
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        await self._end_session()
        for sink in self.sinks:
            try:
                await defer.maybeDeferred(sink.close)
            except Exception:
                self._log.failure("closing the {sink} sink", sink=getattr(sink, "name", sink))
        if self.host is not None and previous is not State.STOPPED:
            try:
                await self.host.stop()
            except Exception:
                self._log.failure("stopping the simulated host")
        try:
            self._sequence.close()
        except OSError as e:
            self._log.error("cannot record the last seq ({error}): the next start skips a block", error=e)
        self.state = State.STOPPED
        self._log.info("libxl-events stopped after {n} events (last seq {seq})", n=self._published, seq=self.seq)

    # -- sessions ------------------------------------------------------------

    def _attempt(self) -> None:
        """Open a session now; on failure, try again after the backoff delay."""
        self._retry = None
        if self.state not in (State.STARTING, State.RECOVERING):
            return
        recovering = self.state is State.RECOVERING
        try:
            self._open_session()
        except Exception as e:
            delay = self.backoff.next_delay()
            self._log.warn(
                "cannot open libxl (attempt {n}): {error}; next attempt in {delay:.2f} s",
                n=self.backoff.attempts,
                error=e,
                delay=delay,
            )
            self._retry = self.reactor.callLater(delay, self._attempt)
            return
        self.backoff.reset()
        self.state = State.RUNNING
        if recovering:
            self.metrics.count("txlibxl_reconnects_total")
            self._log.info("libxl context reopened; watching {n} domains", n=self._watched_count())
        else:
            self._log.info("libxl-events running; watching {n} domains", n=self._watched_count())
        if self._snapshot_wanted:
            self._publish_snapshot()
        ready, self._session_ready = self._session_ready, []
        for d in ready:
            d.callback(None)

    def _open_session(self) -> None:
        recovering = self.state is State.RECOVERING
        ctx = self._call("libxl_ctx_alloc", self._open_context, self.reactor)
        try:
            connection = self._call("xs_open", self._open_xenstore)
        except Exception:
            ctx.close()
            raise
        watcher = XenstoreWatcher(
            self.reactor, connection, self._xenstore_fired, self._xenstore_lost, self._liveness_interval
        )
        try:
            self._call("xs_watch", watcher.start, ["@introduceDomain"])
        except Exception:
            ctx.close()
            raise
        self._ctx, self._watcher = ctx, watcher
        try:
            self._scan(reconciling=recovering)
        except Exception:
            self._ctx, self._watcher = None, None
            watcher.stop()
            ctx.close()
            raise
        self._rescan = LoopingCall(self._periodic_scan)
        self._rescan.clock = self.reactor
        self._rescan.start(self.rescan_interval, now=False)

    async def _end_session(self) -> None:
        if self._rescan is not None and self._rescan.running:
            self._rescan.stop()
        self._rescan = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        self._name_watches = set()
        ctx, self._ctx = self._ctx, None
        for dom in self.tracked.values():
            dom.watch = None
            dom.ejects = {}
        if ctx is not None:
            try:
                await ctx.close()
            except Exception:
                self._log.failure("closing the libxl context")

    def _session_failed(self, why: Any) -> None:
        """The session is broken: close it and start recovering."""
        if self.state is not State.RUNNING:
            return
        self.state = State.RECOVERING
        self.recoveries += 1
        self.metrics.count("txlibxl_disasters_total")
        self._log.error("libxl session lost ({why}); recovering", why=why)
        d = defer.ensureDeferred(self._end_session())

        def reopen(_: Any) -> None:
            if self.state is State.RECOVERING:
                self._retry = self.reactor.callLater(self.backoff.next_delay(), self._attempt)

        d.addCallback(reopen)
        d.addErrback(lambda f: self._log.failure("recovering", f))

    def _xenstore_fired(self, path: str, token: str) -> None:
        if self.state is not State.RUNNING:
            return
        domid = _vbd_watch_domid(token)
        if domid is None and path != "@introduceDomain":
            self._guarded_scan()
            return
        if domid is None:
            # A storm of N new domains fires @introduceDomain N times in
            # one read; a scan per firing made it N scans of N domains
            # without a reactor turn.  The first firing of a turn scans at
            # once (a new domain is published on its firing); the others
            # of the same turn give one more scan, at the turn's end.
            if self._scan_queued:
                self._scan_again = True
                return
            self._scan_queued = True
            self.reactor.callLater(0, self._turn_over)
            self._guarded_scan()
            return
        # A domain's disks changed (a CD-ROM hot-plugged or removed).
        for dom in list(self.tracked.values()):
            if dom.domid == domid and not dom.dead and dom.watched:
                self._arm_ejects(dom)

    def _turn_over(self) -> None:
        self._scan_queued = False
        again, self._scan_again = self._scan_again, False
        if again and self.state is State.RUNNING:
            self._guarded_scan()

    def _xenstore_lost(self, error: XenstoreError) -> None:
        self._watcher = None  # it stopped itself
        self._session_failed(f"lost the xenstore connection: {error}")

    def _periodic_scan(self) -> None:
        if self._ctx is not None and self._ctx.failed is not None:
            self._session_failed(self._ctx.failed)
            return
        if self._watcher is not None:
            self._watcher.check()
        if self.state is State.RUNNING:
            self._guarded_scan()

    def _guarded_scan(self) -> None:
        try:
            self._scan(reconciling=False)
        except (errors.LibxlDisaster, errors.ContextFailed) as e:
            self._session_failed(e)
        except Exception:
            self._log.failure("scanning the host's domains")

    # -- publishing ----------------------------------------------------------

    def request_snapshot(self) -> None:
        """
        Publish a ``snapshot`` record (the domains the service follows, as
        ``list_domains`` has them; every sink gets it): now if a session is open, else once the next one has scanned
        the host.  Requests made meanwhile give one snapshot.  Safe to
        call from a sink's ``publish`` (the snapshot follows in a later
        turn).
        """
        if self._snapshot_wanted:
            return
        self._snapshot_wanted = True
        if self.state is State.RUNNING:
            self.reactor.callLater(0, self._publish_snapshot)

    def _publish_snapshot(self) -> None:
        if not self._snapshot_wanted or self.state is not State.RUNNING:
            return
        self._snapshot_wanted = False
        rows = self.domains()["domains"]
        domains = tuple(
            SnapshotDomain(row["domid"], row["uuid"], row["name"], row["state"], row["shutdown_reason"])
            for row in rows
            if (row["domid"], row["uuid"]) in self.tracked
        )
        try:
            seq = self._sequence.next()
        except OSError as e:
            self._on_failure(f"cannot number a snapshot record: {e}")
            raise
        self._published += 1
        self._emit(
            EventRecord(seq=seq, time=self.reactor.seconds(), type="snapshot", domid=None, uuid=None,
                        host=self.host_name, domains=domains)
        )

    def _call(self, name: str, function: Callable[..., Any], *args: Any) -> Any:
        """Call C{function}, counting it (and its failure) as C{name}."""
        self.metrics.count("txlibxl_libxl_calls_total", name)
        try:
            return function(*args)
        except Exception:
            self.metrics.count("txlibxl_libxl_errors_total", name)
            raise
