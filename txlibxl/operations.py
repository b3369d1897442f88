"""
libxl's asynchronous operations as futures: the machinery every
operation of a :class:`~txlibxl.context.Context` goes through
(:class:`OperationsMixin`), and :class:`OperationCancelled`.

One operation's way:

1. Its future exists before libxl is called, because libxl may complete
   the operation inside the call.  The binding starts it under a fresh
   ``op_id`` (never reused) and keeps the C arguments libxl points to.
2. libxl's completion (and a create's progress report) is queued like an
   event and dispatched on a later turn, in libxl's order.  Dispatching it
   reads the result out of the kept arguments and disposes them
   (``Ctx.finish_operation``), then runs the operation's own follow-up if
   it has one (a create's clean-up), then fires the future.
3. Cancelling the future calls ``libxl_ao_abort``.  If libxl accepts, the
   future fails at once with :class:`OperationCancelled`, whose
   ``settled`` fires once libxl has finished with the operation and its
   follow-up is done, saying whether libxl completed the operation in
   spite of the abort; a later completion no longer reaches the caller.
   If libxl had finished already, the caller gets the real result.

What a cancel leaves done, operation by operation (libxl 4.17's abort
stops the waits of an operation, a timeout or a watch, and each operation
decides what to do then; libxl undoes nothing):

* :meth:`~txlibxl.context.Context.pause`,
  :meth:`~txlibxl.context.Context.unpause`,
  :meth:`~txlibxl.context.Context.set_vcpus` (of PV and PVH
  domains) and :meth:`~txlibxl.context.Context.domain_config`
  (when no other toolstack holds the domain's lock): libxl completes
  them inside the call that starts them, so a cancel never reaches
  libxl and the future has the real result.
* :meth:`~txlibxl.context.Context.shutdown`,
  :meth:`~txlibxl.context.Context.reboot`: the request is written to
  the guest's ``control/shutdown`` node before libxl waits for the guest
  to acknowledge it; the abort ends the wait (``settled``: ``False``),
  not the request, which stays there: a guest that reads it later still
  shuts down or reboots.
* :meth:`~txlibxl.context.Context.destroy`: the abort cuts short the
  waits for the devices' backends, and libxl goes on destroying the
  domain without them (``settled``: ``True`` once the domain is gone).
  A cancelled destroy destroys.
* :meth:`~txlibxl.context.Context.create`: libxl stops, keeping
  what it built; txlibxl destroys that domain, and also one libxl
  finished in spite of the abort, before ``settled`` fires: whatever its
  value, no domain of the cancelled create is left.
* The device operations (:mod:`txlibxl.devices`): libxl stops where it
  is.  An aborted add leaves the device written and half attached
  (remove it); an aborted remove leaves it where the backend had got to
  (remove it again).  An aborted CD-ROM insert (HVM) stops between its
  device-model commands: the drive may be empty; insert again.
* HVM domains only, through the device model: an aborted unpause leaves
  the domain paused; an aborted ``set_vcpus`` leaves the vCPUs the
  device model added before the abort, and the guest is not told;
  an aborted ``domain_config`` leaves nothing.

Every failure, the caller's mistakes included, arrives through the
future; only a closed or failed context raises at once.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, List, Optional

# The Deferred module only (no reactor): OperationCancelled is Twisted's
# CancelledError too, as Twisted callers expect of a cancelled Deferred.
from twisted.internet.defer import CancelledError

from . import errors
from .domids import check_domid
from .events import ConsoleAvailable
from .frameworks import Future

__all__ = ["OperationCancelled", "OperationsMixin"]

# libxl_event_type DOMAIN_CREATE_CONSOLE_AVAILABLE (libxl_types.idl)
_CONSOLE_AVAILABLE = 5
_OP_DONE = 0  # txlibxl._libxl.ctx_reports.REPORT_OP_DONE

#: The C{domid} of an operation that makes a new domain (a create).
NEW_DOMAIN: Any = object()


class OperationCancelled(errors.OperationAborted, CancelledError, asyncio.CancelledError):
    """
    The operation's future was cancelled and libxl accepted the abort.
    libxl may still finish the operation; the future does not wait.

    It is Twisted's ``CancelledError`` (what a cancelled Deferred fails
    with) and asyncio's (so a task awaiting the operation ends cancelled
    when nothing catches it).

    :ivar settled: a future that fires once libxl has completed the
        aborted operation and txlibxl's follow-up is done (for a create:
        the half-built domain is destroyed), and never fails.  It fires
        with ``True`` if libxl completed the operation in spite of the
        abort (a destroy does: the domain is gone), ``False`` if it
        stopped short or failed.  What the abort leaves done is in each
        operation's docstring and in :mod:`txlibxl.operations`.
    """

    settled: Any = None


class _Operation:
    """
    One asynchronous libxl operation in flight.

    :ivar result: turns what the binding read from the kept arguments into
        the value the future fires with.
    :ivar after: ``after(rc, result, answered)``, run when the completion
        is dispatched; a Deferred it returns is waited for before the
        future fires (a create's clean-up).
    :ivar internal: started by txlibxl itself (a clean-up): ``close``
        waits for it and does not abort it.
    """

    __slots__ = (
        "op_id", "call", "domid", "deferred", "result", "after", "internal",
        "settled", "progress_user", "on_console", "uuid",
    )

    def __init__(self, op_id: int, call: str, domid: Optional[int], deferred: Any) -> None:
        self.op_id = op_id
        self.call = call
        self.domid = domid
        self.deferred = deferred
        self.result: Callable[[Any], Any] = _no_result
        self.after: Optional[Callable[[int, Any, bool], Any]] = None
        self.internal = False
        self.settled: Optional[List[Any]] = None
        self.progress_user: Optional[int] = None
        self.on_console: Optional[Callable[[ConsoleAvailable], None]] = None
        self.uuid: Optional[str] = None


def _no_result(value: Any) -> None:
    return None


class OperationsMixin:
    """
    The operation machinery of a :class:`~txlibxl.context.Context` (which
    provides the state it uses: the binding ``_ctx``, ``_tx``, the report
    queue, ``_users``, ``_operations``, ``_progress``).
    """

    _ctx: Any
    _tx: Any
    _queue: Any
    _users: Any
    log: Any
    _operations: Dict[int, _Operation]
    _progress: Dict[int, _Operation]

    def _check_usable(self) -> None:  # pragma: no cover - the Context's
        raise NotImplementedError

    # Starting.

    def _operation(
        self,
        call: str,
        domid: Any,
        start: Callable[[_Operation], None],
        result: Callable[[Any], Any] = _no_result,
        internal: bool = False,
    ) -> Future[Any]:
        """
        The future of a new operation on domain C{domid} (L{NEW_DOMAIN}
        for a create): C{start(op)} sets C{op} up (its progress, its follow-up)
        and starts it in the binding under ``op.op_id``; its result, read
        from the kept arguments, goes through C{result}.  A C{domid} that
        is not one (:func:`~txlibxl.domids.check_domid`) and whatever
        C{start} raises fail the future.
        """
        if not internal:
            self._check_usable()
        op_id = next(self._users)
        d = self._tx.create_future(canceller=lambda d: self._abort(op_id))
        op = _Operation(op_id, call, None if domid is NEW_DOMAIN else domid, d)
        op.result = result
        op.internal = internal
        self._operations[op_id] = op
        try:
            if domid is not NEW_DOMAIN:
                check_domid(domid)
            start(op)
        except BaseException as e:
            self._operations.pop(op_id, None)
            if op.progress_user is not None:
                self._progress.pop(op.progress_user, None)
            if not self._tx.is_called(d):
                self._tx.reject(d, self._tx.create_failure(e))
        return d

    # Cancelling.

    def _abort(self, op_id: int) -> None:
        op = self._operations.get(op_id)
        if op is None:
            return
        queued = self._queued_completion(op_id)
        if queued is not None:
            # libxl already finished it: the caller gets the real result.
            self._operations.pop(op_id, None)
            self._settle(op, queued)
            return
        rc = self._ctx.ao_abort(op_id)
        if rc == 0 or rc == errors.ERROR_ABORTED:
            cancelled = OperationCancelled(errors.ERROR_ABORTED, op.call)
            cancelled.settled = self._when_settled(op)
            self._tx.reject(op.deferred, self._tx.create_failure(cancelled))

    def _queued_completion(self, op_id: int) -> Optional[int]:
        for item in self._queue:
            if type(item) is list:
                # A batch of the binding's (txlibxl._libxl.ctx_reports):
                # five ints per report, an operation's end of type 0.
                for i in range(0, len(item), 5):
                    if item[i] == _OP_DONE and item[i + 2] == op_id:
                        rc = item[i + 3]
                        del item[i:i + 5]
                        return rc
                continue
            if type(item) is not tuple:
                continue
            handler, args = item
            if handler == self._dispatch_completion and args[0] == op_id:
                self._queue.remove(item)
                return args[1]
        return None

    def _when_settled(self, op: _Operation) -> Future[bool]:
        """
        A future firing once C{op} is settled (libxl completed it, and
        its follow-up is done) with whether libxl completed it with
        success.
        """
        d = self._tx.create_future()
        if op.settled is None:
            op.settled = []
        op.settled.append(d)
        return d

    # Completion (on a reactor turn, in libxl's order).

    def _dispatch_completion(self, op_id: int, rc: int) -> None:
        op = self._operations.pop(op_id, None)
        if op is None:
            self.log.debug("completion of unknown operation {op_id}", op_id=op_id)
            return
        self._settle(op, rc)

    def _settle(self, op: _Operation, rc: int) -> None:
        if op.progress_user is not None:
            self._progress.pop(op.progress_user, None)
        value: Any = None
        said: tuple = ()
        error: Optional[BaseException] = None
        try:
            finished = self._ctx.finish_operation(op.op_id)
            value, said = finished.result, finished.said
        except errors.TxlibxlError as e:  # the context is gone: nothing to read
            error = e
        if rc:
            error = errors.from_code(rc, op.call, "; ".join(said) if said else None)
        answered = self._tx.is_called(op.deferred)
        follow_up = None
        if op.after is not None:
            try:
                follow_up = op.after(rc, value, answered)
            except Exception:
                self.log.failure("the follow-up of {call} failed", call=op.call)
        completed = rc == 0
        if follow_up is None:
            self._deliver(op, error, value, completed)
        else:
            self._tx.add_callbacks(
                follow_up,
                lambda _: self._deliver(op, error, value, completed),
                lambda f: self._deliver(op, error, value, completed),
            )

    def _deliver(self, op: _Operation, error: Optional[BaseException], value: Any, completed: bool) -> None:
        if not self._tx.is_called(op.deferred):
            if error is None:
                try:
                    value = op.result(value)
                except Exception as e:
                    error = e
            if error is None:
                self._tx.resolve(op.deferred, value)
            else:
                self._tx.reject(op.deferred, self._tx.create_failure(error))
        settled, op.settled = op.settled, None
        for d in settled or ():
            self._tx.resolve(d, completed)

    # Progress reports (a create's console).

    def _dispatch_progress(self, raw: Any) -> None:
        op = self._progress.pop(raw.for_user, None)
        if op is None or raw.type != _CONSOLE_AVAILABLE or self._tx.is_called(op.deferred):
            return
        if op.on_console is None:
            return
        try:
            op.on_console(ConsoleAvailable(raw.domid, op.uuid or raw.uuid))
        except Exception:
            self.log.failure("the console callback of {call} failed", call=op.call)
