"""
The life of one ``libxl_ctx``: :class:`CtxBase`, the part of
:class:`~txlibxl._libxl.binding.Ctx` every other part builds on.

It allocates and frees the context, owns what libxl keeps a pointer to
(the ``ffi.new_handle`` user pointer every hook gets, the logger, the
``libxl_event_hooks`` struct), guards every call into libxl
(:meth:`CtxBase._enter`), and receives the context's own callbacks: its
log messages and its disaster.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Type, TypeVar

from .. import errors
from . import native
from .capture import LibxlSays
from .checks import check_c_int, check_callable
from .constants import XTL_DEBUG, XTL_INFO, XTL_NUM_LEVELS
from .native import forbidden, in_forbidden, live_contexts

__all__ = ["CtxBase"]

_log = native.log

_ffi: Any = None
_lib: Any = None


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


_C = TypeVar("_C", bound="CtxBase")


def _log_disaster(kind: int, message: str, errnoval: int) -> None:
    _log.critical("{disaster}", disaster=errors.LibxlDisaster(kind, message, errnoval))


class CtxBase:
    """
    A ``libxl_ctx``'s life: :meth:`alloc`, :meth:`free` and the state every
    part of :class:`~txlibxl._libxl.binding.Ctx` shares.  Not used alone.
    """

    def __init__(self) -> None:
        raise TypeError("use Ctx.alloc(log) to make a libxl context")

    @classmethod
    def alloc(cls: Type[_C], log: Callable[[int, str], None], min_level: int = XTL_INFO) -> _C:
        """
        ``libxl_ctx_alloc``: a new context whose xentoollog messages (and
        progress reports) of level C{min_level} and above go to
        C{log(level, text)}.  Messages below C{min_level} are dropped in C
        before they are formatted.

        C{log} is called from inside libxl (on any thread libxl runs on,
        with libxl's lock held): it must not call libxl.

        :raises txlibxl.errors.LibxlError: libxl could not make the
            context (no Xen, no xenstored, no permission...); its message
            is what libxl logged at error level meanwhile.
        :raises txlibxl._libxl.loader.BindingUnavailable: the binding is not built.
        """
        check_callable("libxl_ctx_alloc", "log", log)
        check_c_int("libxl_ctx_alloc", "min_level", min_level, XTL_DEBUG, XTL_NUM_LEVELS + 1)
        ffi, lib = native.load()
        self = cls.__new__(cls)
        self._init_state(log)

        logger = lib.txl_logger_new(self._handle, min_level)
        if logger == ffi.NULL:
            raise errors.from_code(errors.ERROR_NOMEM, "libxl_ctx_alloc", "no memory for the logger")
        pctx = ffi.new("libxl_ctx **")
        with LibxlSays() as said:
            rc = lib.txl_ctx_alloc(pctx, logger)
        if rc:
            lib.txl_logger_free(logger)
            # libxl says what it could not open ("cannot open libxc
            # handle", "cannot connect to xenstore") only in its log.
            raise errors.from_code(rc, "libxl_ctx_alloc", said.message())
        self._logger = logger
        self._ctx = pctx[0]
        lib.txl_queue_set_ctx(self._queue, self._ctx)
        self.address = int(ffi.cast("uintptr_t", self._ctx))
        self._closed = False
        live_contexts[self.address] = self
        # The disaster callback, from the start; events stay queued.
        lib.txl_register_event_callbacks(self._ctx, self._event_hooks, 0, self._queue)
        return self

    def _init_state(self, log: Callable[[int, str], None]) -> None:
        """
        The Python side of a context not (yet) allocated: it behaves as a
        freed one (every libxl call raises ContextClosed), but argument
        checks and the hook trampolines work.

        Each part of :class:`~txlibxl._libxl.binding.Ctx` extends this with
        its own state, calling ``super()._init_state(log)`` first.  What
        libxl keeps a pointer to is this part's: the user pointer every
        hook gets and the ``libxl_event_hooks`` struct (made here), the
        logger (made by :meth:`alloc`).
        """
        ffi, lib = native.load()
        self._log_to = log
        self._closed = True
        self._ctx = ffi.NULL
        self._logger = ffi.NULL
        self.address = 0
        self._handle = ffi.new_handle(self)
        self._event_hooks = ffi.new("libxl_event_hooks *")
        # The C queue of libxl's reports (c/txl_queue.c): libxl's
        # event_occurs user pointer, so it outlives the libxl_ctx (freed
        # with this object, after free()).
        queue = lib.txl_queue_new(self._handle)
        if queue == ffi.NULL:
            raise MemoryError("no memory for a libxl report queue")
        self._queue = ffi.gc(queue, lib.txl_queue_free)
        self._on_disaster: Callable[[int, str, int], None] = _log_disaster
        self._libxl_busy = False  # fds/timeouts/children may exist in libxl
        self.disaster: Optional[errors.LibxlDisaster] = None

    # -- state -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """
        Whether :meth:`free` has been called.
        """
        return self._closed

    def _enter(self, call: str) -> Any:
        if in_forbidden():
            raise errors.ReentrantCall(
                f"{call}: libxl may not be called from inside an osevent hook or the "
                "disaster, fork, log or predicate callbacks"
            )
        if self._closed:
            raise errors.ContextClosed(f"{call}: the libxl context is not allocated or was freed")
        return self._ctx

    def _deliver_reports(self, function: Callable[..., Any], *args: Any) -> Any:
        """
        C{function(*args)}: one of the calls into libxl in which it
        delivers its reports (``occurred_fd``, ``occurred_timeout``,
        ``childproc_reaped``...).  A part that wants to know what happens
        during them extends this (calling super).  What libxl reported
        inside is taken from the C queue before this returns
        (:meth:`_take_reports`, as reported on the loop).
        """
        result = function(*args)
        self._take_reports(True)
        return result

    def _take_reports(self, delivering: bool) -> None:
        """
        After a call into libxl: take what it reported (the reports part,
        :mod:`.ctx_reports`, does).  C{delivering}: the call was one of
        the deliveries of :meth:`_deliver_reports`.
        """

    def set_log_level(self, min_level: int) -> None:
        """
        Pass on libxl's messages of level C{min_level} and above from now on.
        """
        check_c_int("set_log_level", "min_level", min_level, XTL_DEBUG, XTL_NUM_LEVELS + 1)
        self._enter("set_log_level")
        _lib.txl_logger_set_min_level(self._logger, min_level)

    # -- callbacks (called by libxl through C) ---------------------------

    def _libxl_logged(self, level: int, text: Any) -> None:
        message = _ffi.string(text).decode("utf-8", "replace")
        with forbidden:
            try:
                self._log_to(level, message)
            except Exception:
                _log.failure("the libxl log callback failed")

    def _disaster_occurred(self, kind: int, msg: Any, errnoval: int) -> None:
        message = _ffi.string(msg).decode("utf-8", "replace")
        self.disaster = errors.LibxlDisaster(kind, message, errnoval)
        with forbidden:
            try:
                self._on_disaster(kind, message, errnoval)
            except Exception:
                _log.failure("the libxl disaster callback failed")

    # -- teardown --------------------------------------------------------

    def free(self) -> None:
        """
        ``libxl_ctx_free``: disables the remaining event generators (their
        handles become invalid), deregisters libxl's fds through the hooks
        (which must still work), and ends the context.  Idempotent; every
        other call afterwards raises :class:`~txlibxl.errors.ContextClosed`.

        :raises txlibxl.errors.ContextStateError: operations are in flight
            (abort them and wait for their completion first: libxl would
            abort the process).
        """
        if self._closed:
            return
        call = "libxl_ctx_free"
        ctx = self._enter(call)
        self._before_free(call)
        rc = _lib.libxl_ctx_free(ctx)
        self._closed = True
        # What libxl reported and nobody took is freed with the context.
        _lib.txl_queue_forget_generators(self._queue)
        _lib.txl_queue_discard(self._queue)
        self._after_free()
        _lib.txl_logger_free(self._logger)
        self._logger = _ffi.NULL
        live_contexts.pop(self.address, None)
        if rc:
            raise errors.from_code(rc, call)

    def _before_free(self, call: str) -> None:
        """
        Before ``libxl_ctx_free``: raise
        :class:`~txlibxl.errors.ContextStateError` if libxl must finish
        something first.  A part with such a thing extends this (calling
        super).
        """

    def _after_free(self) -> None:
        """
        After ``libxl_ctx_free``: forget what referred into the freed C
        context.  A part with such state extends this (calling super).
        """

    def __repr__(self) -> str:
        state = "freed" if self._closed else "live"
        return f"<txlibxl._libxl.binding.Ctx {self.address:#x} {state}>"
