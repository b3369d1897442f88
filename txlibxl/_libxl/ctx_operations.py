"""
libxl's asynchronous operations: :class:`OperationsMixin`, the part of
:class:`~txlibxl._libxl.binding.Ctx` that starts them with an ``ao_how``,
reports their completion and aborts them, and the domain operations
(shutdown, reboot, destroy, pause, unpause).

An operation is named by the caller's ``op_id``, a positive uint64: its
``ao_how`` carries it as ``for_callback``, so that libxl's completion
(queued in C as events are, ``txl_ao_done``) and ``libxl_ao_abort`` (which matches the
``ao_how`` byte for byte) find it.  Another operations module starts its
own operations with :meth:`OperationsMixin._start_ao`, passing the C
arguments libxl keeps as a :class:`~txlibxl._libxl.kept.KeptArguments`;
this part holds them per ``op_id`` until :meth:`OperationsMixin.finish_operation`
(or :meth:`~txlibxl._libxl.binding.Ctx.free`) disposes them.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Set, Tuple

from .. import errors
from . import native
from .capture import LibxlSays
from .checks import check_callable, check_domid, check_uint64
from .ctx_base import CtxBase
from .kept import KeptArguments

__all__ = ["OperationsMixin", "Finished"]


class Finished(NamedTuple):
    """
    What :meth:`OperationsMixin.finish_operation` read from a completed
    operation: its C{result} (``None`` for operations that only succeed or
    fail) and what libxl C{said} at error level while starting it and, if
    it failed, in the call it failed in (its messages: the reason).
    """

    result: Any
    said: Tuple[str, ...]

_log = native.log

_ffi: Any = None
_lib: Any = None


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


def _drop_completion(op_id: int, rc: int) -> None:  # pragma: no cover - ops need a handler
    _log.error("libxl operation {op_id} completed with {rc} and no handler", op_id=op_id, rc=rc)


class OperationsMixin(CtxBase):
    """
    The asynchronous operations of a :class:`~txlibxl._libxl.binding.Ctx`.
    """

    def _init_state(self, log: Callable[[int, str], None]) -> None:
        super()._init_state(log)
        self._on_complete: Optional[Callable[[int, int], None]] = None
        self._ops: Set[int] = set()
        # op_id -> the C arguments libxl keeps (or kept) pointers to, until
        # finish_operation or free.
        self._kept: Dict[int, KeptArguments] = {}

    def _before_free(self, call: str) -> None:
        super()._before_free(call)
        if self._ops:
            raise errors.ContextStateError(
                f"{call}: operations {sorted(self._ops)} are in flight; "
                "abort them and wait for their completion first"
            )

    def _after_free(self) -> None:
        super()._after_free()
        # Every operation has completed (free refuses otherwise): libxl
        # points into none of these any more.  Results never read are lost.
        kept, self._kept = self._kept, {}
        for arguments in kept.values():
            arguments.dispose()

    # -- setup -----------------------------------------------------------

    def set_ao_completion(self, on_complete: Callable[[int, int], None]) -> None:
        """
        Asynchronous operations report their end to
        C{on_complete(op_id, rc)} (from inside libxl, possibly before the
        initiating call returns, on any thread that calls libxl).
        """
        check_callable("set_ao_completion", "on_complete", on_complete)
        self._enter("set_ao_completion")
        self._on_complete = on_complete

    @property
    def operations_in_flight(self) -> frozenset:
        """
        The op_ids of the asynchronous operations libxl has not completed.
        """
        return frozenset(self._ops)

    @property
    def operations_kept(self) -> frozenset:
        """
        The op_ids whose C arguments are still held: in flight, or
        completed and not yet finished with :meth:`finish_operation`.
        """
        return frozenset(self._kept)

    # -- callbacks (called by libxl through C) ---------------------------

    def _deliver_reports(self, function: Callable[..., Any], *args: Any) -> Any:
        # What libxl says while it delivers reports: an operation failing
        # in here gets it (see _op_completed).  Without an operation in
        # flight none can fail, and the event path (a death storm) pays
        # nothing for it.
        if not self._ops:
            return super()._deliver_reports(function, *args)
        with LibxlSays():
            return super()._deliver_reports(function, *args)

    def _op_reported(self, op_id: int, rc: int) -> None:
        # Taken from the C queue, inside the call libxl reported it in.
        self._ops.discard(op_id)
        if rc:
            # libxl logged why before it reported the failure; the call
            # it happened in (a start, or a delivery) has kept it.
            said = LibxlSays.current()
            if said is not None:
                self._note_said(op_id, said.so_far())

    def _op_completed(self, op_id: int, rc: int) -> None:
        # Without a batch callback (ctx_reports): after _op_reported.
        handler = self._on_complete or _drop_completion
        try:
            handler(op_id, rc)
        except Exception:
            _log.failure("the libxl completion callback failed (op {op_id})", op_id=op_id)

    def _note_said(self, op_id: int, lines: Tuple[str, ...]) -> None:
        if not lines:
            return
        kept = self._kept.get(op_id)
        if kept is None:
            kept = self._kept[op_id] = KeptArguments()
        kept.said = kept.said + tuple(line for line in lines if line not in kept.said)

    # -- starting and aborting -------------------------------------------

    def _ao_how(self, op_id: int) -> Any:
        how = _ffi.new("libxl_asyncop_how *")
        _lib.txl_ao_how_init(how, op_id)
        return how

    def _start(self, call: str, function: Callable[..., int], domid: int, op_id: int) -> None:
        """
        Start operation C{op_id} as libxl's domain operations take it:
        C{function(ctx, domid, ao_how)}.
        """
        check_domid(call, domid)
        self._start_ao(call, op_id, lambda ctx, how: function(ctx, domid, how))

    def _start_ao(
        self,
        call: str,
        op_id: int,
        initiate: Callable[[Any, Any], int],
        kept: Optional[KeptArguments] = None,
    ) -> None:
        """
        Start asynchronous operation C{op_id}: C{initiate(ctx, ao_how)}
        makes the C call C{call} with the ``libxl_ctx *`` and an
        ``ao_how`` that reports C{(op_id, rc)} to the completion callback
        once libxl is done (perhaps inside the call), and returns libxl's
        code.  A failed start raises its typed error (with what libxl
        logged, if anything) and never completes.

        The caller checks its own arguments first.  libxl requires every
        argument but the ``ao_how`` to stay valid until the completion:
        C{kept} holds the C memory C{initiate} passes.  From here on it is
        this context's: disposed at once if the start fails, else kept
        under C{op_id} until :meth:`finish_operation` (or :meth:`free`).
        """
        try:
            check_uint64(call, "op_id", op_id, 1)
            ctx = self._enter(call)
            if self._on_complete is None:
                raise errors.ContextStateError(f"{call}: call set_ao_completion first")
            if op_id in self._ops:
                raise errors.InvalidArgument(call=call, message=f"operation {op_id} is in flight already")
        except BaseException:
            if kept is not None:
                kept.dispose()
            raise
        stale = self._kept.pop(op_id, None)
        if stale is not None:  # completed, never finished: the caller let it go
            stale.dispose()
        how = self._ao_how(op_id)
        # Both before the call: libxl may complete the operation inside it.
        self._ops.add(op_id)
        if kept is not None:
            self._kept[op_id] = kept
        self._libxl_busy = True
        with LibxlSays() as said:
            rc = initiate(ctx, how)
            self._take_reports(False)
        if rc:
            self._ops.discard(op_id)  # a failed start never calls back
            dropped = self._kept.pop(op_id, None)
            if dropped is not None:
                dropped.dispose()  # nor keeps any pointer
            raise errors.from_code(rc, call, said.message())
        self._note_said(op_id, said.lines)

    def finish_operation(self, op_id: int) -> Finished:
        """
        Read what completed operation C{op_id} left in its C arguments
        (the new domid, the retrieved configuration...), then dispose
        them.  Call it once, after its completion was reported; for an
        operation that kept nothing it returns ``Finished(None, ())``.

        :raises txlibxl.errors.ContextStateError: libxl has not completed
            the operation (it still points into its arguments).
        """
        call = "finish_operation"
        check_uint64(call, "op_id", op_id, 1)
        self._enter(call)
        if op_id in self._ops:
            raise errors.ContextStateError(f"{call}: operation {op_id} is still in flight")
        kept = self._kept.pop(op_id, None)
        if kept is None:
            return Finished(None, ())
        try:
            return Finished(kept.read(), kept.said)
        finally:
            kept.dispose()

    def ao_abort(self, op_id: int) -> int:
        """
        ``libxl_ao_abort`` of operation C{op_id} (the identical ``ao_how``
        is rebuilt).

        :returns: 0 (the abort is under way; the operation will complete,
            perhaps with ``ERROR_ABORTED``, perhaps successfully),
            ``ERROR_NOTFOUND`` (no such operation in flight) or
            ``ERROR_ABORTED`` (already being aborted).
        :raises txlibxl.errors.LibxlError: any other code.
        """
        call = "libxl_ao_abort"
        check_uint64(call, "op_id", op_id, 1)
        ctx = self._enter(call)
        rc = _lib.libxl_ao_abort(ctx, self._ao_how(op_id))
        self._take_reports(False)
        if rc in (0, errors.ERROR_NOTFOUND, errors.ERROR_ABORTED):
            return rc
        raise errors.from_code(rc, call)

    # -- domain operations -----------------------------------------------

    def domain_shutdown(self, domid: int, op_id: int) -> None:
        """
        ``libxl_domain_shutdown``, asynchronous: completion reports
        C{(op_id, rc)} once the guest acknowledged the request.
        """
        self._start("libxl_domain_shutdown", _lib.libxl_domain_shutdown, domid, op_id)

    def domain_reboot(self, domid: int, op_id: int) -> None:
        """
        ``libxl_domain_reboot``, asynchronous, like :meth:`domain_shutdown`.
        """
        self._start("libxl_domain_reboot", _lib.libxl_domain_reboot, domid, op_id)

    def domain_destroy(self, domid: int, op_id: int) -> None:
        """
        ``libxl_domain_destroy``, asynchronous: completion reports
        C{(op_id, rc)} once the domain and its devices are gone.
        """
        self._start("libxl_domain_destroy", _lib.libxl_domain_destroy, domid, op_id)

    def domain_pause(self, domid: int, op_id: int) -> None:
        """
        ``libxl_domain_pause``, asynchronous (an ``ao_how`` since 4.13).
        """
        self._start("libxl_domain_pause", _lib.libxl_domain_pause, domid, op_id)

    def domain_unpause(self, domid: int, op_id: int) -> None:
        """
        ``libxl_domain_unpause``, asynchronous (an ``ao_how`` since 4.13).
        """
        self._start("libxl_domain_unpause", _lib.libxl_domain_unpause, domid, op_id)
