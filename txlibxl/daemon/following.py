"""
Following the host's domains, the part of
:class:`~txlibxl.daemon.service.LibxlEventsService` that turns what it
sees into records: :class:`DomainFollowing`.

A scan compares ``list_domains`` with the tracked domains and acts on every
difference (a ``new`` record and a domain watch for a new domain, a
reconciled ``death`` for one that went unwatched); each armed domain gets
a domain watch and, with ``disk_eject``, a watch on each of its CD-ROMs and
on its disk list (so that a CD-ROM hot-plugged later is armed too), and a
domain being built has its name node watched until libxl writes it.  The
watches keep no events: the events of all of them come as one batch per
turn (:meth:`txlibxl.context.Context.subscribe`), with no Deferred per
event, and each becomes at most one record: a shutdown that was already
published (libxl's new watch repeats it after a recovery) is dropped, a
death ends the domain's other watches.

A death carries ``after``, the reason of the shutdown published for the
domain's standing shut-down state (``suspend`` when the domain was saved
or migrated away, then destroyed by the toolstack), or ``None`` when the
domain died without one (a destroy).  A domain seen running again by a
scan (resumed after a suspend, e.g. a checkpoint or a failed migration)
no longer has a standing shutdown.
"""
from __future__ import annotations

import errno
from time import perf_counter
from typing import Any, Callable, Dict, Sequence, Set

from twisted.logger import Logger
from twisted.python.failure import Failure

from txlibxl import errors
from txlibxl.events import DiskEject, DomainDeath, DomainInfo, DomainShutdown
from txlibxl.loop.reactor_xenstore import XenstoreError
from txlibxl.watches import WatchCancelled, WatchEnded

from .discovery import DomainFilter, DomainKey, TrackedDomain, cdrom_vdevs, compare, name_path, vbd_path

__all__ = ["DomainFollowing", "reason_name"]


def reason_name(reason: Any) -> str:
    """A shutdown reason as records spell it (``poweroff``...; ``unknown`` for none)."""
    return reason.name.lower() if reason is not None else "unknown"


class DomainFollowing:
    """
    Scanning, arming and handling the watches' events, mixed into the
    service.  It uses the service's session (``_ctx``, ``_watcher``), its
    tracked domains (``tracked``, ``filter``, ``disk_eject``,
    ``_name_watches``, ``_last_snapshot``), and calls back its
    ``_publish``, ``_call`` (a libxl or xenstore call, timed) and
    ``_session_failed``.
    """

    _log: Logger
    _ctx: Any
    _watcher: Any
    tracked: Dict[DomainKey, TrackedDomain]
    filter: DomainFilter
    disk_eject: bool
    _name_watches: Set[int]
    _last_snapshot: Sequence[DomainInfo]
    _publish: Callable[..., Any]
    _call: Callable[..., Any]
    _session_failed: Callable[[Any], None]

    def _scan(self, reconciling: bool) -> None:
        """
        Compare the host with the tracked domains and act on every
        difference.  C{reconciling}: this is the first scan of a new
        session after a recovery.
        """
        ctx = self._ctx
        started = perf_counter()
        snapshot = self._call("libxl_list_domain", ctx.list_domains)
        self._last_snapshot = snapshot
        changes = compare(self.tracked, snapshot, self.filter)
        for dom in changes.gone:
            if dom.watched:
                continue  # its watch reports the death
            del self.tracked[dom.key]
            if not dom.dead:
                dom.dead = True
                self._publish("death", dom, after=dom.shutdown_reported, reconciled=True, received=started)
        for dom, info in changes.present:
            if dom.name is None and info.name is not None:
                dom.name = info.name
            if not info.shutdown:
                dom.shutdown_reported = None
            if not dom.watched:
                self._arm(dom, info, reconciling)
        for info in changes.new:
            dom = TrackedDomain(info.domid, info.uuid, info.name)
            self.tracked[dom.key] = dom
            self._publish("new", dom, reconciled=reconciling, received=started)
            self._arm(dom, info, reconciling)
        self._follow_names(snapshot)

    def _follow_names(self, snapshot: Sequence[DomainInfo]) -> None:
        """
        Watch the name node of every domain whose name is not known yet (a
        domain being built): a followed one gets its name for its next
        records, and one the filter could not decide on is decided, as
        soon as the name is written rather than at the next rescan.
        """
        if self._watcher is None:
            return
        nameless = {dom.domid for dom in self.tracked.values() if dom.name is None and not dom.dead}
        nameless.update(
            info.domid for info in snapshot if (info.domid, info.uuid) not in self.tracked and self.filter.undecided(info)
        )
        for domid in sorted(nameless - self._name_watches):
            try:
                self._call("xs_watch", self._watcher.watch, name_path(domid))
            except XenstoreError as e:
                self._log.warn("cannot watch domain {domid}'s name: {error}", domid=domid, error=e)
                continue
            self._name_watches.add(domid)
        for domid in sorted(self._name_watches - nameless):
            self._watcher.unwatch(name_path(domid))
            self._name_watches.discard(domid)

    def _arm(self, dom: TrackedDomain, info: DomainInfo, reconciling: bool) -> None:
        ctx = self._ctx
        dom.skip_repeat = None
        dom.reconcile_next_shutdown = False
        if info.shutdown:
            reason = reason_name(info.shutdown_reason)
            if dom.shutdown_reported == reason:
                dom.skip_repeat = reason
            else:
                dom.reconcile_next_shutdown = reconciling
        self._subscribe(ctx)
        try:
            dom.watch = self._call("libxl_evenable_domain_death", ctx.watch_domain, dom.domid, False)
        except errors.DomainNotFound:
            # Gone since the scan: its death, as its watch would have said.
            dom.watch = None
            self._handle(dom, None, DomainDeath(dom.domid, dom.uuid), perf_counter())
            return
        except errors.LibxlError as e:
            self._log.warn("cannot watch domain {domid}: {error}", domid=dom.domid, error=e)
            dom.watch = None
            return
        if self.disk_eject and self._watcher is not None:
            self._watch_disks(dom)
            self._arm_ejects(dom)

    def _watch_disks(self, dom: TrackedDomain) -> None:
        """Watch the domain's disk list, to arm CD-ROMs hot-plugged later."""
        if self._watcher is None:
            return
        try:
            self._call("xs_watch", self._watcher.watch, vbd_path(dom.domid))
        except XenstoreError as e:
            self._log.warn("cannot watch domain {domid}'s disks: {error}", domid=dom.domid, error=e)

    def _unwatch_disks(self, dom: TrackedDomain) -> None:
        if self._watcher is not None and not any(
            d.domid == dom.domid and d is not dom and not d.dead for d in self.tracked.values()
        ):
            self._watcher.unwatch(vbd_path(dom.domid))

    def _arm_ejects(self, dom: TrackedDomain) -> None:
        """Watch each CD-ROM of C{dom} not watched yet; forget those that are gone."""
        if self._watcher is None or self._ctx is None:
            return
        try:
            vdevs = self._call("xs_read", cdrom_vdevs, self._watcher.connection, dom.domid)
        except XenstoreError as e:
            if getattr(e, "errno", None) == errno.ENOENT:
                vdevs = []  # no disk (yet, or any more)
            else:
                self._log.warn("cannot list domain {domid}'s CD-ROMs: {error}", domid=dom.domid, error=e)
                return
        for vdev in [v for v in dom.ejects if v not in vdevs]:
            dom.ejects.pop(vdev).cancel()
        for vdev in vdevs:
            if vdev in dom.ejects:
                continue
            try:
                watch = self._call(
                    "libxl_evenable_disk_eject", self._ctx.watch_disk_eject, dom.domid, vdev, False
                )
            except errors.LibxlError as e:
                self._log.warn("cannot watch {vdev} of domain {domid}: {error}", vdev=vdev, domid=dom.domid, error=e)
                continue
            dom.ejects[vdev] = watch

    def _subscribe(self, ctx: Any) -> None:
        """
        Receive the events of every watch of C{ctx} as one batch per turn
        (:meth:`txlibxl.context.Context.subscribe`): the watches are
        unbuffered and no Deferred is made per event.
        """
        if getattr(self, "_subscribed", None) is ctx:
            return
        self._subscribed = ctx

        def failed(error: BaseException) -> None:
            if isinstance(error, (WatchEnded, WatchCancelled, errors.ContextClosed)):
                return  # the service let go of the session
            if isinstance(error, (errors.LibxlDisaster, errors.ContextFailed)):
                if ctx is self._ctx:  # not a late word from a closed session
                    self._session_failed(error)
                return
            self._log.failure("following domains", Failure(error))

        ctx.subscribe(self._events, failed)

    def _events(self, events: Sequence[Any]) -> None:
        """One turn's events of every watch, in libxl's order."""
        received = perf_counter()
        tracked = self.tracked
        for event in events:
            dom = tracked.get((event.domid, event.uuid))
            if dom is not None:
                self._handle(dom, None, event, received)

    def _handle(self, dom: TrackedDomain, watch: Any, event: Any, received: float) -> None:
        current = self.tracked.get(dom.key) is dom
        if isinstance(event, DomainShutdown):
            if not current or dom.dead:
                return
            reason = reason_name(event.reason)
            if dom.skip_repeat == reason:
                dom.skip_repeat = None
                return
            dom.skip_repeat = None
            reconciled, dom.reconcile_next_shutdown = dom.reconcile_next_shutdown, False
            dom.shutdown_reported = reason
            self._publish("shutdown", dom, reason=reason, reconciled=reconciled, received=received)
        elif isinstance(event, DomainDeath):
            if dom.dead:
                return
            dom.dead = True
            if current:
                del self.tracked[dom.key]
            for eject in dom.ejects.values():
                eject.cancel()
            dom.ejects = {}
            if self.disk_eject:
                self._unwatch_disks(dom)
            self._publish("death", dom, after=dom.shutdown_reported, received=received)
        elif isinstance(event, DiskEject):
            if current and not dom.dead:
                self._publish("disk_eject", dom, vdev=event.vdev or getattr(watch, "vdev", None), received=received)
