"""
Watches: the application's side of libxl's event generators.

A watch holds the waiters of one domain (or one disk) and hands each event
to them in the order libxl reported it, exactly once per waiter.  It knows
nothing of libxl: the :class:`~txlibxl.context.Context` enables and
disables the generators and feeds the watch through ``_accept``,
``_deliver``, ``_end`` and ``_fail``.

How a watch ends, and what its waiters then get:

* its domain died: :class:`~txlibxl.events.DomainDeath` is the last event
  of a :class:`DomainWatch`; every watch's later waiters fail with
  :class:`WatchEnded` carrying the death, and ``async for`` ends;
* :meth:`~DomainWatch.cancel`: waiters fail with :class:`WatchCancelled`,
  and ``async for`` ends;
* its context was closed: waiters fail with
  :class:`~txlibxl.errors.ContextClosed`, which ``async for`` raises (a
  closed context is not the end of the domain's story);
* its context failed: waiters fail with the context's
  :class:`~txlibxl.errors.LibxlDisaster`, which ``async for`` raises too.

Every Deferred a watch hands out is fresh (one per call), so two consumers
never share a callback chain.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, List, Optional

import txaio

from .errors import ContextClosed
from .events import DiskEject, DomainDeath, DomainShutdown, Event

if TYPE_CHECKING:  # pragma: no cover
    from .frameworks import Future

__all__ = ["WatchEnded", "WatchCancelled", "DomainWatch", "DiskEjectWatch"]


class WatchEnded(Exception):
    """
    The watch will report nothing more: its domain died (the
    :class:`~txlibxl.events.DomainDeath` is in ``args[0]``).
    """


class WatchCancelled(Exception):
    """
    The watch was cancelled before the awaited event arrived.

    :ivar watch: the watch (also ``args[0]``); the message names its
        domain.
    """

    def __init__(self, watch: "_Watch") -> None:
        super().__init__(watch)
        self.watch = watch

    def __str__(self) -> str:
        return f"the watch on {self.watch.subject} was cancelled"


# Waiters: futures waiting for one kind of outcome, fired in the order they
# were asked for.  A holder keeps them in ``_pending`` (None, one future, or
# a list of them) beside its ``_tx``: a watch holds its ``next_event()``
# waiters itself, a _Waiters its ``when_shutdown()`` or ``when_dead()`` ones.
#
# Memory per watch counts (a host may have thousands, each with a waiter):
# nothing is made before the first add, one waiter is kept without a list,
# and a waiter has no canceller of its own: a cancelled one (already
# called) is skipped when its turn comes.


def _add_waiter(holder: Any) -> "Future[Any]":
    """A new waiter, last in line."""
    d = holder._tx.create_future()
    pending = holder._pending
    if pending is None:
        holder._pending = d
    elif type(pending) is list:
        pending.append(d)
    else:
        holder._pending = [pending, d]
    return d


def _live_waiters(holder: Any) -> List["Future[Any]"]:
    pending = holder._pending
    if pending is None:
        return []
    is_called = holder._tx.is_called
    if type(pending) is not list:
        return [] if is_called(pending) else [pending]
    return [d for d in pending if not is_called(d)]


def _pop_waiter(holder: Any) -> Optional["Future[Any]"]:
    """The first waiter not cancelled meanwhile, removed; or None."""
    pending = holder._pending
    if pending is None:
        return None
    is_called = holder._tx.is_called
    if type(pending) is not list:
        holder._pending = None
        return None if is_called(pending) else pending
    while pending:
        d = pending.pop(0)
        if not is_called(d):
            if not pending:
                holder._pending = None
            return d
    holder._pending = None
    return None


def _take_waiters(holder: Any) -> List["Future[Any]"]:
    """
    Detach and return the pending waiters, to fire them once every piece
    of state they may look at is settled.
    """
    live = _live_waiters(holder)
    holder._pending = None
    return live


def _reject_waiters(holder: Any, error: BaseException) -> None:
    tx = holder._tx
    for d in _take_waiters(holder):
        tx.reject(d, tx.create_failure(error))


class _Waiters:
    """
    The waiters of a watch for one of its outcomes (made on first use).
    """

    __slots__ = ("_tx", "_pending")

    def __init__(self, tx: Any) -> None:
        self._tx = tx
        self._pending: Any = None

    add = _add_waiter
    take = _take_waiters
    reject_all = _reject_waiters

    def resolve_all(self, value: Any) -> None:
        for d in _take_waiters(self):
            self._tx.resolve(d, value)

    def __len__(self) -> int:
        return len(_live_waiters(self))


class _Watch:
    """
    What domain and disk watches share: an ordered stream of events, each
    consumed by exactly one ``next_event`` waiter, and an end.
    """

    # Slots and a buffer made on first use keep a watch small: a host may
    # have thousands.
    __slots__ = (
        "domid", "uuid", "_tx", "_cancel", "_buffer", "_pending", "_outcome", "_buffered", "_sub", "__weakref__"
    )

    def __init__(
        self,
        tx: Any,
        domid: int,
        cancel: Callable[["_Watch"], None],
        uuid: Optional[str] = None,
        buffered: bool = True,
    ) -> None:
        self.domid = domid
        #: The domain's UUID, when the context knew it (it does for every
        #: watch it makes); it tells this domain from a later one on the
        #: same domid.
        self.uuid = uuid
        self._tx = tx
        self._cancel = cancel
        self._buffer: Optional[Deque[Event]] = None
        # The next_event() waiters (held as a _Waiters holds its own).
        self._pending: Any = None
        # None while active; then why it ended: an exception, or (a
        # death, the storm's case) the DomainDeath itself, whose
        # WatchEnded is made when first asked for (_ending).
        self._outcome: Any = None
        # False: an event no waiter takes is not kept (a batch
        # subscription has it; txlibxl.batches).
        self._buffered = buffered
        # The context's: its libxl generator's subscription (or None).
        self._sub: Any = None

    @property
    def active(self) -> bool:
        """
        Whether the watch may still report events.
        """
        return self._outcome is None

    @property
    def subject(self) -> str:
        """
        What the watch watches, for people: ``"domain 7 (60f7…-…)"``.
        """
        return f"domain {self.domid}" + (f" ({self.uuid})" if self.uuid else "")

    def __repr__(self) -> str:
        if self._outcome is None:
            state = "active"
        elif isinstance(self._outcome, (WatchEnded, DomainDeath)):
            state = "ended"
        elif isinstance(self._outcome, WatchCancelled):
            state = "cancelled"
        elif isinstance(self._outcome, ContextClosed):
            state = "context closed"
        else:
            state = f"failed: {type(self._outcome).__name__}"
        return f"<{type(self).__name__} on {self.subject}, {state}>"

    def next_event(self) -> "Future[Event]":
        """
        The next event this watch reports that no earlier ``next_event``
        waiter has taken.  Once the watch has ended and its buffered
        events are consumed, fails with :class:`WatchEnded` (the domain
        died), :class:`WatchCancelled`,
        :class:`~txlibxl.errors.ContextClosed` or the context's failure.
        """
        if self._buffer:
            return self._tx.create_future_success(self._buffer.popleft())
        if self._outcome is not None:
            last = self._unread_last()
            if last is not None:
                return self._tx.create_future_success(last)
            return self._tx.create_future_error(self._tx.create_failure(self._ending()))
        return _add_waiter(self)

    def _ending(self) -> BaseException:
        """Why the watch ended, as the exception its waiters fail with."""
        outcome = self._outcome
        if type(outcome) is DomainDeath:
            outcome = self._outcome = WatchEnded(outcome)
        return outcome

    def _unread_last(self) -> Optional[Event]:
        """
        The watch's last event, if it ended with one that no
        ``next_event`` waiter has taken yet (then it is taken now).
        """
        return None

    def __aiter__(self) -> "_Watch":
        return self

    async def __anext__(self) -> Event:
        # The domain's death and the application's own cancel end the
        # iteration; a closed or failed context raises.
        try:
            return await self.next_event()
        except (WatchEnded, WatchCancelled):
            raise StopAsyncIteration

    def cancel(self) -> None:
        """
        Stop watching: libxl's generator is disabled and every pending
        waiter fails with :class:`WatchCancelled`.  Idempotent.
        """
        if self._outcome is None:
            self._cancel(self)
            self._finish(WatchCancelled(self))

    # The context's side.

    def _deliver(self, event: Event) -> None:
        d = _pop_waiter(self)
        if d is not None:
            self._tx.resolve(d, event)
        elif self._buffered:
            if self._buffer is None:
                self._buffer = deque()
            self._buffer.append(event)

    def _finish(self, outcome: BaseException) -> None:
        if self._outcome is None:
            self._outcome = outcome
            _reject_waiters(self, outcome)

    def _fail(self, error: BaseException) -> None:
        """
        The context failed (disaster) or was closed: every waiter gets
        C{error}.
        """
        self._finish(error)


class DomainWatch(_Watch):
    """
    The lifecycle of one domain: its shutdown(s) and its death.

    Obtain one from :meth:`txlibxl.context.Context.watch_domain`.  The
    watch ends by itself after :class:`~txlibxl.events.DomainDeath`.
    """

    __slots__ = (
        "_shutdown_waiters",
        "_death_waiters",
        "_first_shutdown",
        "_last_shutdown",
        "_death",
        "_rearmed",
        "_death_unread",
    )

    def __init__(
        self,
        tx: Any,
        domid: int,
        cancel: Callable[[_Watch], None],
        uuid: Optional[str] = None,
        buffered: bool = True,
    ) -> None:
        super().__init__(tx, domid, cancel, uuid, buffered)
        # Made on first use: most watches never have both kinds.
        self._shutdown_waiters: Optional[_Waiters] = None
        self._death_waiters: Optional[_Waiters] = None
        self._first_shutdown: Optional[DomainShutdown] = None
        self._last_shutdown: Optional[DomainShutdown] = None
        self._death: Optional[DomainDeath] = None
        # Since the last shutdown: None, not re-armed (a further shutdown
        # report is a late duplicate); _LEFT, re-armed when the domain had
        # left that shutdown already (the next report is news); or the
        # domain's CPU time (ns) when the watch re-armed while the domain
        # was still in that shutdown.
        self._rearmed: Optional[int] = None
        # The death, delivered when no next_event() waiter took it: the
        # next next_event() gets it (no buffer is made for it).
        self._death_unread = False

    def _unread_last(self) -> Optional[Event]:
        if self._death_unread:
            self._death_unread = False
            return self._death
        return None

    def when_shutdown(self) -> "Future[DomainShutdown]":
        """
        Fires with the domain's first :class:`~txlibxl.events.DomainShutdown`
        seen by this watch.  If the domain dies without shutting down, fails
        with :class:`WatchEnded` carrying the death.
        """
        if self._first_shutdown is not None:
            return self._tx.create_future_success(self._first_shutdown)
        if self._outcome is not None:
            return self._tx.create_future_error(self._tx.create_failure(self._ending()))
        if self._shutdown_waiters is None:
            self._shutdown_waiters = _Waiters(self._tx)
        return self._shutdown_waiters.add()

    def when_dead(self) -> "Future[DomainDeath]":
        """
        Fires with the domain's :class:`~txlibxl.events.DomainDeath`.
        """
        if self._death is not None:
            return self._tx.create_future_success(self._death)
        if self._outcome is not None:
            return self._tx.create_future_error(self._tx.create_failure(self._ending()))
        if self._death_waiters is None:
            self._death_waiters = _Waiters(self._tx)
        return self._death_waiters.add()

    def _rearmed_at(self, cpu_time_ns: Optional[int]) -> None:
        """
        The context re-armed libxl's generator after a ``SUSPEND`` or
        ``SOFT_RESET`` shutdown (the last one delivered, or one it found
        to be a repeat of it).  C{cpu_time_ns} is the domain's CPU time
        then if the domain was still in that shutdown, ``None`` if it had
        left it.
        """
        self._rearmed = _LEFT if cpu_time_ns is None else cpu_time_ns

    def _repeat_check(self, event: Event) -> Optional[int]:
        """
        If C{event} may be the re-armed generator's repeat of the last
        shutdown (the same reason, and the domain was still in that
        shutdown when the watch re-armed), the domain's CPU time then:
        the event is a repeat if the domain has not run since.  Otherwise
        ``None``: the event is news or a duplicate, as :meth:`_accept`
        decides.
        """
        last = self._last_shutdown
        if (
            isinstance(event, DomainShutdown)
            and last is not None
            and event.reason == last.reason
            and self._rearmed is not None
            and self._rearmed >= 0
        ):
            return self._rearmed
        return None

    def _accept(self, event: Event) -> bool:
        """
        Whether C{event} is news for this watch, libxl's repeats excepted
        (:meth:`_repeat_check`): a shutdown reported again by the same
        generator, or by one that overlapped it, is not.  A shutdown that
        is news uses up the re-arm before it.
        """
        if self._death is not None:
            return False
        if isinstance(event, DomainShutdown):
            if self._last_shutdown is not None and self._rearmed is None:
                # One generator reports one shutdown; a second one with no
                # re-arm in between is a late duplicate.
                return False
            self._rearmed = None
        return True

    def _deliver(self, event: Event) -> None:
        # The watch's state is settled before any waiter runs: a waiter's
        # callback may look at the watch (or its context) at once.
        if isinstance(event, DomainShutdown):
            self._last_shutdown = event
            first = self._first_shutdown is None
            if first:
                self._first_shutdown = event
            super()._deliver(event)
            if first and self._shutdown_waiters is not None:
                self._shutdown_waiters.resolve_all(event)
        elif isinstance(event, DomainDeath):
            self._died(event)
        else:  # pragma: no cover - libxl sends only these two to a death evgen
            super()._deliver(event)

    def _died(self, event: DomainDeath) -> None:
        """
        Deliver the domain's death (accepted: the watch is active and has
        no death yet).  The storm's path: nothing is made here but the
        ending.
        """
        self._death = event
        self._outcome = event
        taker = _pop_waiter(self) if self._pending is not None else None
        if taker is None and self._buffered:
            self._death_unread = True  # for the next next_event()
        if taker is None and self._shutdown_waiters is None and self._death_waiters is None:
            # No one waits (a batch subscription's watch, or one whose
            # owner reads it later): the state is all there is to settle.
            return
        later = _take_waiters(self) if self._pending is not None else ()
        waiting = self._shutdown_waiters
        shutdown = waiting.take() if waiting is not None and waiting._pending else ()
        waiting = self._death_waiters
        death = waiting.take() if waiting is not None else ()
        tx = self._tx
        # Fired in the order of what happened: the shutdown that never
        # came, then the death, then what waits for more.
        for d in shutdown:
            tx.reject(d, tx.create_failure(self._ending()))
        if taker is not None:
            tx.resolve(taker, event)
        for d in death:
            tx.resolve(d, event)
        for d in later:
            tx.reject(d, tx.create_failure(self._ending()))

    def _finish(self, outcome: BaseException) -> None:
        if self._outcome is None:
            super()._finish(outcome)
            for waiting in (self._shutdown_waiters, self._death_waiters):
                if waiting is not None:
                    waiting.reject_all(outcome)


class DiskEjectWatch(_Watch):
    """
    The ejects of one virtual disk of one domain: its only events are
    :class:`~txlibxl.events.DiskEject` values.

    Obtain one from :meth:`txlibxl.context.Context.watch_disk_eject`.  It
    runs until its domain dies, as a :class:`DomainWatch` does: then,
    once the ejects reported before are consumed, ``next_event()`` fails
    with :class:`WatchEnded` carrying the
    :class:`~txlibxl.events.DomainDeath`, and ``async for`` ends.  It also
    ends when it is cancelled or its context is closed or fails (see the
    module's docstring).
    """

    __slots__ = ("vdev",)

    def __init__(
        self,
        tx: Any,
        domid: int,
        vdev: str,
        cancel: Callable[[_Watch], None],
        uuid: Optional[str] = None,
        buffered: bool = True,
    ) -> None:
        super().__init__(tx, domid, cancel, uuid, buffered)
        self.vdev = vdev

    @property
    def subject(self) -> str:
        """
        What the watch watches: ``"disk hdc of domain 7 (60f7…-…)"``.
        """
        return f"disk {self.vdev} of {super().subject}"

    def _accept(self, event: Event) -> bool:
        return isinstance(event, DiskEject)

    def _end(self, death: DomainDeath) -> None:
        """
        The domain died: the watch ends (its generator is the context's
        to disable).
        """
        self._finish(WatchEnded(death))


# DomainWatch._rearmed: re-armed after the domain had left its shutdown
# (a CPU time is never negative).
_LEFT = -1
