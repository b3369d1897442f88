"""
libxl's asynchronous operations: :class:`OperationsMixin`, the part of
:class:`~txlibxl._libxl.binding.Ctx` that starts them with an ``ao_how``,
reports their completion and aborts them, and the domain operations
(shutdown, reboot, destroy, pause, unpause).

An operation is named by the caller's ``op_id``, a positive uint64: its
``ao_how`` carries it as ``for_callback``, so that libxl's completion
(``txl_py_ao_complete``) and ``libxl_ao_abort`` (which matches the
``ao_how`` byte for byte) find it.  Another operations module starts its
own operations with :meth:`OperationsMixin._start_ao`.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Set

from .. import errors
from . import native
from .checks import check_callable, check_domid, check_uint64
from .ctx_base import CtxBase

__all__ = ["OperationsMixin"]

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

    def _before_free(self, call: str) -> None:
        super()._before_free(call)
        if self._ops:
            raise errors.ContextStateError(
                f"{call}: operations {sorted(self._ops)} are in flight; "
                "abort them and wait for their completion first"
            )

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

    # -- callbacks (called by libxl through C) ---------------------------

    def _op_completed(self, op_id: int, rc: int) -> None:
        self._ops.discard(op_id)
        handler = self._on_complete or _drop_completion
        try:
            handler(op_id, rc)
        except Exception:
            _log.failure("the libxl completion callback failed (op {op_id})", op_id=op_id)

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

    def _start_ao(self, call: str, op_id: int, initiate: Callable[[Any, Any], int]) -> None:
        """
        Start asynchronous operation C{op_id}: C{initiate(ctx, ao_how)}
        makes the C call C{call} with the ``libxl_ctx *`` and an
        ``ao_how`` that reports C{(op_id, rc)} to the completion callback
        once libxl is done (perhaps inside the call), and returns libxl's
        code.  A failed start raises its typed error and never completes.

        The caller checks its own arguments first.  libxl requires every
        argument but the ``ao_how`` to stay valid until the completion:
        whatever C memory C{initiate} passes must be kept alive that long.
        """
        check_uint64(call, "op_id", op_id, 1)
        ctx = self._enter(call)
        if self._on_complete is None:
            raise errors.ContextStateError(f"{call}: call set_ao_completion first")
        if op_id in self._ops:
            raise errors.InvalidArgument(call=call, message=f"operation {op_id} is in flight already")
        how = self._ao_how(op_id)
        self._ops.add(op_id)  # libxl may complete it inside the call
        self._libxl_busy = True
        rc = initiate(ctx, how)
        if rc:
            self._ops.discard(op_id)  # a failed start never calls back
            raise errors.from_code(rc, call)

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
