"""
A libxl context on the Twisted reactor or an asyncio loop: watches,
operations, disaster.

This is txlibxl's public API.  A :class:`Context` owns one ``libxl_ctx``
and everything libxl keeps pointers to.  libxl's osevent hooks live on the
loop (:mod:`txlibxl.loop.reactor_osevents`, or
:mod:`txlibxl.loop.asyncio_osevents`), its children are reaped by the loop
(:mod:`txlibxl.loop.reactor_children`, or pidfds:
:mod:`txlibxl.loop.asyncio_children`), and what libxl reports reaches the
application as futures (Deferreds on Twisted, ``asyncio.Future`` objects
on asyncio; :mod:`txlibxl.frameworks`):

* Events and operation completions are reported by libxl from *inside*
  some libxl call.  They are copied, queued in the order libxl reported
  them, and handed out on a later reactor turn; user code never runs
  inside libxl.
* Waiters are keyed by the user value given to libxl (unique per
  generator and per operation, never reused), not by domid: Xen reuses
  domids.
* An operation's Deferred exists before the C call, because libxl may
  complete the operation inside it.  Cancelling it calls
  ``libxl_ao_abort``.
* libxl's disaster callback does not call libxl: on the next turn every
  waiter and operation fails with :class:`~txlibxl.errors.LibxlDisaster`,
  and later calls raise :class:`~txlibxl.errors.ContextFailed`.  Close the
  context and open a new one to go on.

The event and operation layer makes its futures and logger through txaio
(plain Deferreds and ``twisted.logger`` under Twisted, ``asyncio.Future``
objects and ``logging`` under asyncio).  ``Context(reactor)`` opens a
context on Twisted, ``await Context.open_asyncio()`` one on asyncio; the
framework is txaio's, chosen once per process (:mod:`txlibxl.frameworks`).
"""
from __future__ import annotations

import asyncio
import itertools
import os
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import txaio

from . import errors
from .building import BuildingMixin
from .moving import MovingMixin
from .devices import DevicesMixin
from .domids import check_domid
from .events import DomainInfo, domain_info_from_raw
from .frameworks import AsyncioLoop, Future, TwistedLoop
from .loop.osevents_core import OSEventsCore
from .operations import OperationCancelled, _Operation
from .power import PowerMixin
from .watching import WatchingMixin, _Subscription
from ._libxl import binding
from ._libxl.xenstore import XenstoreConnection, XenstoreError

__all__ = ["Context", "OperationCancelled"]

_RawEvent = binding.RawEvent

# A xenstore path nobody writes: its watch fires once, when it is set, and
# keeps libxenstore's reader thread (which notices a lost xenstored) alive.
_LIVENESS_PATH = "/tool/txlibxl/liveness"

# xentoollog levels (xentoollog.h) to txaio/twisted log levels.
_XTL_LEVELS = {
    1: "debug",  # XTL_DEBUG
    2: "debug",  # XTL_VERBOSE
    3: "debug",  # XTL_DETAIL
    4: "info",  # XTL_PROGRESS
    5: "info",  # XTL_INFO
    6: "info",  # XTL_NOTICE
    7: "warn",  # XTL_WARN
    8: "error",  # XTL_ERROR
    9: "critical",  # XTL_CRITICAL
}


def _alloc(log: Callable[[int, str], None], min_level: int) -> Any:
    """
    ``binding.Ctx.alloc``, with libxl's failure to find Xen said as such.
    """
    try:
        return binding.Ctx.alloc(log, min_level)
    except errors.GeneralFailure as e:
        said = e.message
        if "cannot open libxc handle" in said:
            raise errors.XenUnavailable("privcmd", said) from None
        if "cannot connect to xenstore" in said:
            where = os.environ.get("XENSTORED_PATH") or "/var/run/xenstored/socket or /dev/xen/xenbus"
            raise errors.XenUnavailable("xenstored", said, where) from None
        raise


class Context(WatchingMixin, MovingMixin, BuildingMixin, DevicesMixin, PowerMixin):
    """
    One libxl context, driven by C{reactor}; on asyncio, open one with
    :meth:`open_asyncio` instead.

    Its watches and operations come from one module per concern: watches
    (:mod:`txlibxl.watching`), the power operations
    (:mod:`txlibxl.power`), building and changing domains
    (:mod:`txlibxl.building`), their devices (:mod:`txlibxl.devices`),
    saving and restoring them (:mod:`txlibxl.moving`), all
    through the machinery of :mod:`txlibxl.operations`.  This module keeps
    the context itself: libxl's reports queued and dispatched, queries,
    disaster and teardown.

    :param reactor: provides ``IReactorFDSet``, ``IReactorTime`` and
        ``IReactorThreads``; defaults to the global reactor.
    :param log_level: the least severe xentoollog level passed on from
        libxl to the logger (``"debug"``, ``"info"``, ``"warn"``, ``"error"``).
    :param xenstore_liveness: how often (seconds) to check that xenstored
        is still there, or ``None`` not to.  libxl cannot tell when
        xenstored goes away (libxenstore closes its socket and says
        nothing), so its waiters would wait until their own timeouts, or
        forever.  The context keeps a xenstore connection of its own with
        one quiet watch and checks it locally (no round trip); when it
        breaks, the context fails as on a libxl disaster.

    :raises txlibxl.errors.XenUnavailable: there is no Xen here (libxl
        could not open privcmd, or could not connect to xenstored; the
        message says which, and points at the simulated host).
    :raises txlibxl.errors.LibxlError: libxl could not allocate the
        context for another reason.

    :raises txlibxl.frameworks.FrameworkConflict: this process uses
        asyncio through txaio already.

    ``async with Context(...) as ctx:`` closes the context when the block
    ends, also when it ends with an exception (which then propagates).
    """

    _min_levels = {"debug": 1, "info": 4, "warn": 7, "error": 8}

    def __init__(
        self, reactor: Any = None, log_level: str = "warn", xenstore_liveness: Optional[float] = 1.0
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._open(TwistedLoop, reactor, log_level, xenstore_liveness)

    @classmethod
    async def open_asyncio(
        cls, loop: Optional[asyncio.AbstractEventLoop] = None, log_level: str = "warn",
        xenstore_liveness: Optional[float] = 1.0,
    ) -> "Context":
        """
        A context on the asyncio loop C{loop} (by default the running
        one): its operations, watches and :meth:`close` give
        ``asyncio.Future`` objects, libxl's children are reaped through
        pidfds, and asyncio's own subprocesses keep working beside them.
        No Twisted reactor is involved.  The other parameters and errors
        are those of :class:`Context`; also::

            async with await Context.open_asyncio() as ctx:
                ...

        :raises txlibxl.frameworks.FrameworkConflict: this process uses
            Twisted through txaio already.
        :raises TypeError: C{loop} is not an asyncio selector event loop.
        :raises txlibxl.loop.asyncio_children.PidfdUnavailable: the kernel
            or Python has no pidfds.
        """
        if loop is None:
            loop = asyncio.get_running_loop()
        self = cls.__new__(cls)
        self._open(AsyncioLoop, loop, log_level, xenstore_liveness)
        return self

    def _open(
        self, framework: Callable[[Any], Any], loop: Any, log_level: str, xenstore_liveness: Optional[float]
    ) -> None:
        if log_level not in self._min_levels:
            raise ValueError(f"log_level must be one of {sorted(self._min_levels)}")
        self._loop = framework(loop)
        self._reactor = loop
        self._tx = self._loop.tx
        self.log = self._loop.logger(txaio.make_logger())
        # libxl's reports in order: a batch taken from the binding's C
        # queue (a flat list, see txlibxl._libxl.ctx_reports), or a
        # (handler, args) pair of this context's own.
        self._queue: Deque[Any] = deque()
        self._drain_call: Any = None
        self._draining = False
        # The batch subscriptions (txlibxl.batches), and the events the
        # current drain delivered, for them.
        self._batch_subscribers: List[Any] = []
        self._turn_events: Optional[List[Any]] = None
        self._users = itertools.count(1)
        self._subscriptions: Dict[int, _Subscription] = {}
        self._domain_ends: Dict[Tuple[int, Optional[str]], _Subscription] = {}
        self._retired: List[_Subscription] = []
        self._operations: Dict[int, _Operation] = {}
        # A create's progress reports (console available), by user value.
        self._progress: Dict[int, _Operation] = {}
        self._failure: Optional[BaseException] = None
        self._closing: Optional[Any] = None
        self._closed = False

        self._ctx = _alloc(self._libxl_log, self._min_levels[log_level])
        try:
            self._osevents = self._loop.osevents(self._ctx)
            self._ctx.register_osevent_hooks(self._osevents)
            self._children = self._loop.children(self._ctx)
            self._ctx.set_childproc_mainloop(self._children)
            self._ctx.register_event_callbacks(self._libxl_event, self._libxl_disaster)
            self._ctx.set_ao_completion(self._libxl_op_complete)
            batches = getattr(self._ctx, "set_report_batches", None)
            if batches is not None:  # a stand-in binding may report one by one
                batches(self._libxl_reports)
        except BaseException:
            self._ctx.free()
            raise
        self._liveness = self._watch_xenstored(xenstore_liveness)

    async def __aenter__(self) -> "Context":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def _watch_xenstored(self, interval: Optional[float]) -> Any:
        if interval is None:
            return None
        try:
            watcher = self._loop.xenstore_watcher(
                XenstoreConnection.open(), lambda path, token: None, self._xenstore_lost, interval
            )
            watcher.start([_LIVENESS_PATH])
        except (XenstoreError, errors.TxlibxlError) as e:
            self.log.warn("cannot watch xenstored's liveness: {error}", error=e)
            return None
        return watcher

    def _xenstore_lost(self, error: BaseException) -> None:
        errnoval = getattr(error, "errno", None) or 0
        self._enqueue(
            self._dispatch_disaster,
            (errors.LibxlDisaster(0, f"lost the connection to xenstored ({error})", errnoval),),
        )

    # Callbacks from inside libxl: copy, queue, return.

    def _libxl_log(self, level: int, message: str) -> None:
        # libxl's text already starts with its xentoollog context
        # ("libxl: libxl_domain.c:...", "xencall: ..."): no prefix of ours.
        # Not under the key "message": Twisted's legacy log bridge sets
        # that key of every event it sees to ().
        getattr(self.log, _XTL_LEVELS.get(level, "info"))("{text}", text=message)

    def _libxl_event(self, raw: Any) -> None:
        # Only without report batches (set_report_batches): never, here.
        self._enqueue(self._dispatch_event, (raw,))

    def _libxl_reports(self, batch: List[int], delivering: bool) -> None:
        # After a call into libxl returned (so outside libxl), with what
        # it reported inside, in its order.  After one of the loop's
        # deliveries the batch is dispatched now, in this turn; after any
        # other call (made by the application, or by a waiter's callback
        # during a drain) on a later turn, or by the drain under way, so
        # that no callback runs inside the caller's call.
        self._queue.append(batch)
        if not self._loop.on_loop_thread():
            # One hop per libxl call made on that thread, whatever it
            # reported; the loop's drain takes the batch in order.
            self._loop.call_from_thread(self._drain_soon)
            return
        if self._draining:
            return
        if delivering:
            call = self._drain_call
            if call is not None and call is not True:
                self._loop.cancel_call(call)
                self._drain_call = None
            self._drain()
        elif self._drain_call is None:
            self._schedule_next_turn()

    def _libxl_op_complete(self, op_id: int, rc: int) -> None:
        self._enqueue(self._dispatch_completion, (op_id, rc))

    def _libxl_disaster(self, event_type: int, message: str, errnoval: int) -> None:
        # libxl may not be called from here.
        self._enqueue(self._dispatch_disaster, (errors.LibxlDisaster(event_type, message, errnoval),))

    def _enqueue(self, handler: Callable[..., None], args: tuple) -> None:
        self._queue.append((handler, args))
        if self._drain_call is None:
            self._schedule_next_turn()

    def _schedule_next_turn(self) -> None:
        if self._loop.on_loop_thread():
            self._drain_call = self._loop.call_soon(self._drain)
        else:
            self._drain_call = True
            self._loop.call_from_thread(self._schedule_drain)

    def _drain_soon(self) -> None:
        if self._drain_call is None and not self._closed:
            self._drain_call = self._loop.call_soon(self._drain)

    def _schedule_drain(self) -> None:
        self._drain_call = self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        if self._drain_call is not True:
            self._drain_call = None
        if self._draining:
            return  # the drain under way takes it
        queue = self._queue
        self._draining = True
        if self._batch_subscribers:
            self._turn_events = []
        try:
            while queue:
                item = queue.popleft()
                try:
                    if type(item) is list:
                        self._dispatch_reports(item)
                    else:
                        item[0](*item[1])
                except Exception:
                    self.log.failure("delivering a libxl report")
            if self._retired:
                self._forget_retired()
        finally:
            self._draining = False
            events, self._turn_events = self._turn_events, None
        if events:
            self._hand_batch(events)

    # Reactor-turn delivery.

    def _dispatch_disaster(self, disaster: BaseException) -> None:
        if self._failure is None:
            self._failure = disaster
            self.log.critical("libxl disaster: {disaster}", disaster=disaster)
        self._fail_watches(disaster)
        for op in self._operations.values():
            if not self._tx.is_called(op.deferred):
                self._tx.reject(op.deferred, self._tx.create_failure(disaster))

    def _check_usable(self) -> None:
        if self._closed or self._closing is not None:
            raise errors.ContextClosed("the libxl context is closed")
        if self._failure is not None:
            raise errors.ContextFailed(f"the libxl context failed: {self._failure}") from self._failure

    # Queries (synchronous in libxl, quick: one hypercall or xenstore read).

    def list_domains(self) -> List[DomainInfo]:
        """
        Every domain on the host, Domain-0 included, by domid.
        """
        self._check_usable()
        return [domain_info_from_raw(raw) for raw in self._ctx.list_domains()]

    def domain_info(self, domid: int) -> DomainInfo:
        """
        Domain C{domid}; raises a :class:`~txlibxl.errors.LibxlError`
        subclass (``ERROR_DOMAIN_NOTFOUND``) if there is none.
        """
        self._check_usable()
        check_domid(domid)
        return domain_info_from_raw(self._ctx.domain_info(domid))

    def domid_to_name(self, domid: int) -> str:
        """
        The name of domain C{domid}.
        """
        self._check_usable()
        check_domid(domid)
        return self._ctx.domid_to_name(domid)

    def name_to_domid(self, name: str) -> int:
        """
        The domid of the domain called C{name}.
        """
        self._check_usable()
        return self._ctx.name_to_domid(name)

    # Introspection.

    @property
    def failed(self) -> Optional[BaseException]:
        """
        The disaster that broke this context, or ``None``.
        """
        return self._failure

    @property
    def watches(self) -> int:
        """
        The number of libxl generators enabled (a domain watch has one, a
        disk-eject watch one, and the disk-eject watches of one domain
        share one more).
        """
        return len(self._subscriptions) - len(self._retired)

    @property
    def operations_in_flight(self) -> int:
        """
        The number of asynchronous operations libxl has not completed.
        """
        return len(self._operations)

    @property
    def osevents(self) -> OSEventsCore:
        """
        The hook registrations on the loop (fds and timers in use).
        """
        return self._osevents

    @property
    def running_children(self) -> List[int]:
        """
        The pids of libxl's children (hotplug scripts, helpers) that have
        not been reaped yet.
        """
        return self._children.running_children

    @property
    def children_running(self) -> int:
        """
        How many of libxl's children (hotplug scripts, helpers) have not
        been reaped yet: :attr:`running_children`, counted (for metrics).
        0 once the context is closed.
        """
        return len(self._children.running_children)

    # Teardown.

    @property
    def framework(self) -> str:
        """
        ``"twisted"`` or ``"asyncio"``: what this context's futures are.
        """
        return str(self._loop.name)

    def close(self) -> "Future[None]":
        """
        Tear the context down.

        Operations still in flight are aborted and awaited (libxl must not
        free a context with operations outstanding); their Deferreds fail
        with :class:`~txlibxl.operations.OperationCancelled` unless they finish first, and
        what their follow-ups do (destroying the half-built domain of an
        aborted create) is done and awaited too.  Then
        every watch ends (its waiters fail with
        :class:`~txlibxl.errors.ContextClosed`, which ``async for`` over
        the watch raises: a closed context is not the domain's death), the
        context is freed while the hooks are still alive (which disables
        libxl's generators), and nothing is left in the reactor.

        :returns: a future (a Deferred on Twisted) that fires with
            ``None`` when all is done.  Calling ``close`` again returns a
            future for the same end.
        """
        if self._closed:
            return self._tx.create_future_success(None)
        if self._closing is not None:
            done = self._tx.create_future()
            self._tx.add_callbacks(
                self._closing, lambda _: self._tx.resolve(done, None), lambda f: self._tx.reject(done, f)
            )
            return done
        self._closing = self._tx.create_future()
        waits = []
        for op in list(self._operations.values()):
            waits.append(self._when_settled(op))
            if op.internal:
                continue  # txlibxl's own clean-up: let it finish
            if not self._tx.is_called(op.deferred):
                self._tx.cancel(op.deferred)
            elif self._failure is not None:
                self._ctx_abort_quietly(op.op_id)
        all_done = self._tx.gather(waits, consume_exceptions=True)
        self._tx.add_callbacks(all_done, self._free, None)
        return self._closing

    def _ctx_abort_quietly(self, op_id: int) -> None:
        try:
            self._ctx.ao_abort(op_id)
        except errors.LibxlError:
            pass

    def _free(self, _: Any) -> None:
        closing = self._closing
        self._fail_watches(self._failure)
        for sub in self._subscriptions.values():
            sub.watch._sub = None
        self._subscriptions.clear()
        self._domain_ends.clear()
        self._retired.clear()
        self._progress.clear()
        try:
            self._ctx.free()  # disables the generators; calls fd_deregister
        except Exception:
            self.log.failure("freeing the libxl context")
        self._closed = True
        if self._liveness is not None:
            self._liveness.stop()
        self._osevents.close()
        self._children.close()
        # Reports queued by libxl during teardown are of no use to anyone.
        self._queue.clear()
        if self._drain_call is not None and self._drain_call is not True:
            self._loop.cancel_call(self._drain_call)
        self._drain_call = None
        self._tx.resolve(closing, None)
