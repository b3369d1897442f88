"""
Watches on a :class:`~txlibxl.context.Context` (``WatchingMixin``):
libxl's event generators enabled, re-armed and disabled for them, and
libxl's events dispatched to them.

Each generator gets a fresh user value, by which its events find their
watch (never by domid: Xen reuses domids):

* a :class:`~txlibxl.watches.DomainWatch` has one domain-death generator
  at a time.  libxl reports one shutdown per generator, so after a
  ``SUSPEND`` or ``SOFT_RESET`` shutdown the watch re-arms: a new
  generator is enabled before the old one is disabled, as ``xl`` does,
  so that libxl's ``@releaseDomain`` watch stays registered.  The new
  generator's first look reports the shutdown the domain is in at that
  moment, which is either the one already reported (the domain has not
  run since) or a new one (it was resumed and shut down again, perhaps
  before libxl looked).  Xen counts a domain's CPU time only while it
  runs, so the watch notes the domain's CPU time when it re-arms and
  reads it again when such a report comes: the same time is the repeat,
  which is dropped (and the watch re-arms again, since the repeat used
  up the new generator's one report); a later time is a new shutdown,
  which is delivered.
* a :class:`~txlibxl.watches.DiskEjectWatch` has its disk's eject
  generator, and ends when its domain dies: the disk-eject watches of one
  domain share one domain-death generator, enabled with the first of them
  and disabled with the last (a fleet arms thousands; each costs a set
  entry, not a generator).
"""
from __future__ import annotations

from itertools import repeat
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from . import errors
from ._libxl import binding
from .domids import check_domid
from .events import DomainDeath, DomainShutdown, ShutdownReason, event_from_raw
from .batches import EventBatches
from .watches import DiskEjectWatch, DomainWatch, _Watch

__all__ = ["WatchingMixin"]

# libxl_shutdown_reason values after which libxl's generator must be
# re-armed to see the domain's next shutdown.
_REARM_REASONS = frozenset({ShutdownReason.SUSPEND, ShutdownReason.SOFT_RESET})
_DOMAIN_SHUTDOWN = binding.EVENT_DOMAIN_SHUTDOWN
_DOMAIN_DEATH = binding.EVENT_DOMAIN_DEATH
_OP_DONE = binding.REPORT_OP_DONE
_SPENT = binding.DEATH_SPENT

_WORDS = binding.RECORD_WORDS

# A DomainDeath made on the storm's path without attrs' frozen __init__
# (which sets each field through object.__setattr__): the same value.
_new = object.__new__
_set_domid = DomainDeath.domid.__set__  # type: ignore[attr-defined]
_set_uuid = DomainDeath.uuid.__set__  # type: ignore[attr-defined]


def _all_spent_deaths(batch: List[Any]) -> bool:
    """Whether every record of C{batch} is a death whose generator C disabled, with no kept event."""
    n = len(batch) // _WORDS
    return (
        batch[0::_WORDS].count(_DOMAIN_DEATH) == n
        and batch[3::_WORDS].count(_SPENT) == n
        and batch[4::_WORDS].count(0) == n
    )


# _Subscription.kind
_DEATH = "death"  # a DomainWatch's generator
_EJECT = "eject"  # a DiskEjectWatch's generator
_END = "end"  # the death generator shared by a domain's DiskEjectWatches
_RETIRED = "retired"  # a DomainWatch's generator disabled by a re-arm


class _Subscription:
    """
    One libxl event generator and what it feeds: a watch, or (``_END``)
    the :class:`_DomainEnd` of a domain's disk-eject watches.
    """

    __slots__ = ("user", "watch", "handle", "kind")

    def __init__(self, user: int, watch: Any, handle: Any, kind: str) -> None:
        self.user = user
        self.watch = watch
        self.handle = handle
        self.kind = kind


class _DomainEnd:
    """
    The disk-eject watches of one domain (by domid and UUID), which end
    when its shared death generator reports the domain's death.
    """

    __slots__ = ("key", "watches", "_sub")

    def __init__(self, key: Tuple[int, Optional[str]]) -> None:
        self.key = key
        self.watches: Set[DiskEjectWatch] = set()
        self._sub: Optional[_Subscription] = None


class WatchingMixin:
    """
    The watches of a :class:`~txlibxl.context.Context` (which provides the
    state used here: the binding ``_ctx``, ``_tx``, ``_users``,
    ``_subscriptions``, ``_domain_ends``, ``_retired``, ``_progress``,
    ``_failure``, ``_closed``).  A watch's current subscription is its
    ``_sub``.
    """

    _ctx: Any
    _tx: Any
    _users: Any
    log: Any
    _subscriptions: Dict[int, _Subscription]
    _batch_subscribers: List[EventBatches]
    _turn_events: Optional[List[Any]]
    _dispatch_completion: Callable[[int, int], None]
    _domain_ends: Dict[Tuple[int, Optional[str]], _Subscription]
    _retired: List[_Subscription]
    _progress: Dict[int, Any]
    _failure: Optional[BaseException]
    _closed: bool
    # The Context's and the operations' (txlibxl.operations).
    _check_usable: Callable[[], None]
    _dispatch_progress: Callable[[Any], None]

    # Enabling.

    def subscribe(
        self,
        callback: Callable[[List[Any]], Any],
        on_failure: Optional[Callable[[BaseException], Any]] = None,
    ) -> EventBatches:
        """
        Every event this context's watches deliver, as one list per turn:
        C{callback(events)}, in libxl's order, each event once, with no
        future per event (:mod:`txlibxl.batches`).  C{on_failure(error)}
        is called once if the context is closed
        (:class:`~txlibxl.errors.ContextClosed`) or fails (its disaster).

        :raises TypeError: C{callback} (or C{on_failure}) is not callable.
        """
        self._check_usable()
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        if on_failure is not None and not callable(on_failure):
            raise TypeError(f"on_failure must be callable, not {type(on_failure).__name__}")
        subscription = EventBatches(callback, on_failure, self._unsubscribe)
        self._batch_subscribers = self._batch_subscribers + [subscription]
        return subscription

    def _unsubscribe(self, subscription: EventBatches) -> None:
        self._batch_subscribers = [s for s in self._batch_subscribers if s is not subscription]

    def _hand_batch(self, events: List[Any]) -> None:
        for subscription in self._batch_subscribers:
            try:
                subscription._hand(events)
            except Exception:
                self.log.failure("a batch subscriber failed")

    def watch_domain(self, domid: int, buffered: bool = True) -> DomainWatch:
        """
        Watch domain C{domid} for its shutdowns and its death.

        The watch reports the domain's shutdown, and after a ``SUSPEND``
        or ``SOFT_RESET`` shutdown its next shutdown too (libxl reports
        one per generator; the watch re-arms, see :mod:`txlibxl.watching`),
        then its :class:`~txlibxl.events.DomainDeath`, and ends.

        C{buffered=False}: events no ``next_event()`` waiter is waiting
        for are not kept for a later one (a batch subscription,
        :meth:`subscribe`, has them); ``when_shutdown()`` and
        ``when_dead()`` work as ever.

        :raises TypeError, ValueError: C{domid} is not a domid
            (:mod:`txlibxl.domids`).
        :raises txlibxl.errors.DomainNotFound: there is no domain C{domid}
            (libxl itself would not check, and would report a death).
        :raises txlibxl.errors.LibxlError: libxl refused.
        """
        self._check_usable()
        check_domid(domid)
        uuid = self._domain_uuid(domid)
        watch = DomainWatch(self._tx, domid, self._cancel_watch, uuid, buffered)
        self._subscribe(watch, _DEATH, lambda user: self._ctx.evenable_domain_death(domid, user, uuid))
        return watch

    def watch_disk_eject(self, domid: int, vdev: str, buffered: bool = True) -> DiskEjectWatch:
        """
        Watch the virtual disk C{vdev} (e.g. ``"xvdc"``, ``"hdc"``) of
        domain C{domid} for media ejects, until the domain dies (then the
        watch ends, as a :class:`~txlibxl.watches.DomainWatch` does).
        C{buffered} as for :meth:`watch_domain`.

        :raises TypeError, ValueError: C{domid} is not a domid.
        :raises txlibxl.errors.DomainNotFound: there is no domain C{domid}.
        :raises txlibxl.errors.LibxlError: bad C{vdev}, or the domain has
            no such disk (libxl's generator would not check, and would wait
            forever).
        """
        self._check_usable()
        check_domid(domid)
        uuid = self._domain_uuid(domid)
        self._ctx.vdev_to_device_disk(domid, vdev)
        watch = DiskEjectWatch(self._tx, domid, vdev, self._cancel_watch, uuid, buffered)
        end = self._domain_end(domid, uuid)
        try:
            self._subscribe(
                watch, _EJECT, lambda user: self._ctx.evenable_disk_eject(domid, vdev, user, uuid)
            )
        except BaseException:
            self._leave_domain_end(end, watch)
            raise
        end.watch.watches.add(watch)
        return watch

    def _domain_uuid(self, domid: int) -> str:
        try:
            return self._ctx.domain_info(domid, name=False).uuid
        except errors.DomainNotFound as e:
            raise errors.DomainNotFound(call=e.call, message=f"there is no domain {domid}") from None

    def _subscribe(self, watch: Any, kind: str, enable: Callable[[int], Any]) -> _Subscription:
        user = next(self._users)
        # Registered before the C call: libxl may report inside evenable.
        sub = _Subscription(user, watch, None, kind)
        self._subscriptions[user] = sub
        try:
            sub.handle = enable(user)
        except BaseException:
            del self._subscriptions[user]
            raise
        watch._sub = sub
        return sub

    def _domain_end(self, domid: int, uuid: Optional[str]) -> _Subscription:
        key = (domid, uuid)
        sub = self._domain_ends.get(key)
        if sub is None:
            sub = self._subscribe(
                _DomainEnd(key), _END, lambda user: self._ctx.evenable_domain_death(domid, user, uuid)
            )
            self._domain_ends[key] = sub
        return sub

    def _leave_domain_end(self, sub: _Subscription, watch: DiskEjectWatch) -> None:
        end = sub.watch
        end.watches.discard(watch)
        if not end.watches and self._domain_ends.get(end.key) is sub:
            del self._domain_ends[end.key]
            self._disable(sub)

    # Re-arming after SUSPEND and SOFT_RESET.

    def _rearm(self, old: _Subscription, shutdown: DomainShutdown) -> None:
        watch = old.watch
        try:
            self._subscribe(
                watch, _DEATH,
                lambda user: self._ctx.evenable_domain_death(watch.domid, user, watch.uuid),
            )
        except errors.LibxlError as e:
            self.log.error(
                "could not re-arm the watch on {subject}: {error}", subject=watch.subject, error=e
            )
            return
        watch._rearmed_at(self._cpu_time_in(watch, shutdown))
        self._disable(old)
        # libxl may have reported the domain's death through the old
        # generator already (it is queued behind this report); the new one
        # would not see it again.  So the old one's user value stays known
        # until the queue is drained, for that death.
        old.kind = _RETIRED
        self._subscriptions[old.user] = old
        self._retired.append(old)

    def _forget_retired(self) -> None:
        """
        The queue is drained: no late report of a generator disabled by a
        re-arm can come any more.
        """
        retired, self._retired = self._retired, []
        for sub in retired:
            if self._subscriptions.get(sub.user) is sub:
                del self._subscriptions[sub.user]

    def _cpu_time_in(self, watch: DomainWatch, shutdown: DomainShutdown) -> Optional[int]:
        """
        The CPU time (ns) of C{watch}'s domain if it is in C{shutdown}
        now, else ``None`` (it left it, or it is gone).
        """
        try:
            info = self._ctx.domain_info(watch.domid, name=False)
        except errors.TxlibxlError:
            return None
        if (
            info.uuid != watch.uuid
            or not info.shutdown
            or ShutdownReason.from_code(info.shutdown_reason) != shutdown.reason
        ):
            return None
        return info.cpu_time

    def _is_repeat(self, watch: DomainWatch, shutdown: DomainShutdown, cpu_then: int) -> bool:
        """
        Whether the re-armed generator's report of C{shutdown} is the
        shutdown already delivered: the domain is still in it and has not
        run since the re-arm (its CPU time is still C{cpu_then}), or it is
        gone (its death follows).  A domain already running again cannot
        tell: the report is taken as news.
        """
        try:
            info = self._ctx.domain_info(watch.domid, name=False)
        except errors.DomainNotFound:
            return True
        except errors.TxlibxlError:
            return False
        if info.uuid != watch.uuid:
            return True  # the domid is another domain's now
        return (
            info.shutdown
            and ShutdownReason.from_code(info.shutdown_reason) == shutdown.reason
            and info.cpu_time == cpu_then
        )

    # Disabling.

    def _disable(self, sub: _Subscription) -> None:
        self._subscriptions.pop(sub.user, None)
        if sub.watch._sub is sub:
            sub.watch._sub = None
        if self._failure is not None or self._closed:
            return  # libxl_ctx_free disables what is left
        disable = (
            self._ctx.evdisable_disk_eject if sub.kind == _EJECT else self._ctx.evdisable_domain_death
        )
        try:
            disable(sub.handle)
        except errors.LibxlError as e:  # pragma: no cover - evdisable returns void in 4.17
            self.log.error("disabling a libxl generator failed: {error}", error=e)

    def _retire(self, watch: _Watch) -> None:
        # A watch has one subscription outside _rearm (which enables the new
        # generator before it disables the old one): its _sub.
        sub = watch._sub
        if sub is not None:
            self._disable(sub)

    def _cancel_watch(self, watch: _Watch) -> None:
        self._retire(watch)
        if isinstance(watch, DiskEjectWatch):
            end = self._domain_ends.get((watch.domid, watch.uuid))
            if end is not None:
                self._leave_domain_end(end, watch)

    # Dispatch (in the turn the batch was taken in, or the next; in
    # libxl's order).

    def _dispatch_reports(self, batch: List[Any]) -> None:
        """
        One batch from the binding (:mod:`txlibxl._libxl.ctx_reports`):
        five ints per report.  A watch's death, the storm case, is
        handled here; the rest by :meth:`_dispatch_report`.
        """
        if _all_spent_deaths(batch):
            self._dispatch_spent_deaths(batch)
            return
        subs = self._subscriptions
        spent = self._ctx.death_generator_spent
        turn = self._turn_events
        it = iter(batch)
        for kind, domid, user, detail, extra in zip(it, it, it, it, it):
            try:
                if kind == _DOMAIN_DEATH and detail == _SPENT:
                    sub = subs.get(user)
                    if sub is not None and sub.kind == _DEATH:
                        # The C side disabled the generator on this death:
                        # forget it, with no call into libxl.
                        del subs[user]
                        watch = sub.watch
                        if watch._sub is sub:
                            watch._sub = None
                        spent(sub.handle)
                        if watch._outcome is None:
                            death = DomainDeath(domid, extra.uuid if extra else watch.uuid)
                            watch._died(death)
                            if turn is not None:
                                turn.append(death)
                        continue
                elif kind == _OP_DONE:
                    self._dispatch_completion(user, detail)
                    continue
                else:
                    sub = subs.get(user)
                self._dispatch_report(sub, kind, domid, user, detail, extra)
            except Exception:
                self.log.failure("delivering a libxl event")

    def _dispatch_spent_deaths(self, batch: List[Any]) -> None:
        """
        A batch of deaths only, each of a generator the C side disabled
        (the storm): the generators and subscriptions are forgotten in
        bulk, then each death is delivered in libxl's order.
        """
        users = batch[2::_WORDS]
        popped = list(map(self._subscriptions.pop, users, repeat(None)))
        self._ctx.death_generators_spent(users)
        turn = self._turn_events
        for sub, domid in zip(popped, batch[1::_WORDS]):
            try:
                if sub is None:
                    continue  # disabled by its owner since: a late report
                if sub.kind != _DEATH:
                    self._dispatch_report(sub, _DOMAIN_DEATH, domid, sub.user, _SPENT, 0)
                    continue
                watch = sub.watch
                if watch._sub is sub:
                    watch._sub = None
                if watch._outcome is None:
                    death = _new(DomainDeath)
                    _set_domid(death, domid)
                    _set_uuid(death, watch.uuid)
                    watch._died(death)
                    if turn is not None:
                        turn.append(death)
            except Exception:
                self.log.failure("delivering a libxl event")

    def _dispatch_event(self, raw: Any) -> None:
        """
        One binding record (:class:`~txlibxl._libxl.binding.RawEvent`).
        """
        sub = self._subscriptions.get(raw.for_user)
        detail = raw.shutdown_reason if raw.type == _DOMAIN_SHUTDOWN else (raw.rc or 0)
        self._dispatch_report(sub, raw.type, raw.domid, raw.for_user, detail, raw)

    def _dispatch_report(
        self, sub: Optional[_Subscription], kind: int, domid: int, user: int, detail: int, extra: Any
    ) -> None:
        if sub is None:
            if user in self._progress:
                self._dispatch_progress(extra or binding.RawEvent(kind, domid, binding.NIL_UUID, user))
                return
            self.log.debug(
                "dropping a late libxl event (type {type}) for a generator already disabled",
                type=kind,
            )
            return
        if sub.kind == _END:
            if kind == _DOMAIN_DEATH:
                self._domain_died(sub, DomainDeath(domid, extra.uuid if extra else sub.watch.key[1]))
            return
        if sub.kind == _RETIRED and kind != _DOMAIN_DEATH:
            return  # its shutdown reports are the re-armed watch's past
        watch = sub.watch
        if not watch.active:
            return
        uuid = extra.uuid if extra else watch.uuid
        if kind == _DOMAIN_SHUTDOWN:
            event: Any = DomainShutdown(domid, uuid, ShutdownReason.from_code(detail))
        elif kind == _DOMAIN_DEATH:
            event = DomainDeath(domid, uuid)
        elif extra:
            event = event_from_raw(extra)
        else:
            event = None
        if event is None:
            return
        if kind == _DOMAIN_SHUTDOWN and sub.kind == _DEATH:
            cpu_then = watch._repeat_check(event)
            if cpu_then is not None and self._is_repeat(watch, event, cpu_then):
                # Not news; but the report used up the re-armed
                # generator: re-arm again.
                self._rearm(sub, event)
                return
        if not watch._accept(event):
            return
        # libxl bookkeeping first, so that waiters resumed by the delivery
        # see the context as it now is.
        if kind == _DOMAIN_DEATH:
            self._retire(watch)  # the generator is spent
        elif kind == _DOMAIN_SHUTDOWN and sub.kind == _DEATH and event.reason in _REARM_REASONS:
            self._rearm(sub, event)
        watch._deliver(event)
        if self._turn_events is not None:
            self._turn_events.append(event)

    def _domain_died(self, sub: _Subscription, death: DomainDeath) -> None:
        end = sub.watch
        if self._domain_ends.get(end.key) is sub:
            del self._domain_ends[end.key]
        self._disable(sub)
        watches, end.watches = end.watches, set()
        for watch in watches:
            self._retire(watch)
            watch._end(death)

    def _fail_watches(self, error: Optional[BaseException]) -> None:
        """
        End every watch: with C{error} (the context's failure), or, for
        ``None``, with :class:`~txlibxl.errors.ContextClosed`.
        """
        for sub in list(self._subscriptions.values()):
            if sub.kind == _END or sub.kind == _RETIRED:
                continue  # its watches have subscriptions of their own
            watch = sub.watch
            if error is None:
                watch._fail(errors.ContextClosed(f"the libxl context was closed: {watch.subject} is no longer watched"))
            else:
                watch._fail(error)
        subscribers, self._batch_subscribers = self._batch_subscribers, []
        for subscription in subscribers:
            try:
                subscription._fail(error if error is not None else errors.ContextClosed("the libxl context was closed"))
            except Exception:
                self.log.failure("a batch subscriber's on_failure failed")

