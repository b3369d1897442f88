"""
One ``libxl_ctx`` and every C thing it needs: :class:`Ctx`.

With the shared modules beside it (:mod:`.native`, :mod:`.constants`,
:mod:`.checks`, :mod:`.values`), this is the only code in txlibxl that
touches cffi objects or C memory.
It knows no reactor: libxl's osevent hooks become calls on an
:class:`~txlibxl.interfaces.IOSEventHooks` provider, libxl's children are
reported to an :class:`~txlibxl.interfaces.IChildWatcher`, and :class:`Ctx`
itself is the way back into libxl (:class:`~txlibxl.interfaces.IOSEventSink`
and :class:`~txlibxl.interfaces.IChildSink`).

Rules kept here, once, for every caller:

* Every libxl return code is checked and raised as the typed
  :class:`~txlibxl.errors.LibxlError` for its code, carrying the code and
  the C call's name.  Bad input (a domid that is not an ordinary domain's,
  an empty vdev, a non-``str`` name...) raises
  :class:`~txlibxl.errors.InvalidArgument` before C is called.
* Calls libxl forbids are refused with a typed error before reaching C
  (libxl would fail an assertion and abort the process): any call after
  :meth:`Ctx.free` (:class:`~txlibxl.errors.ContextClosed`); any call from
  inside an osevent hook, the disaster, fork, log or predicate callbacks
  (:class:`~txlibxl.errors.ReentrantCall`); freeing with operations in
  flight, registering the hooks twice or late
  (:class:`~txlibxl.errors.ContextStateError`).
* Callbacks never let an exception through to C: a failing
  ``*_register``/``*_modify`` hook is logged and returns
  ``ERROR_OSEVENT_REG_FAIL`` (never 0); other failures are logged.
* Events are copied into :class:`RawEvent` and ``libxl_event_free``'d
  before Python code sees them; ``libxl_dominfo`` is disposed after being
  copied into :class:`DomainInfoRaw`.

Ownership (what libxl keeps pointers to, kept alive by the :class:`Ctx`
until :meth:`Ctx.free` returns, and by a module registry of live contexts
so that a forgotten, unfreed context never leaves libxl with dangling
pointers): the ``ffi.new_handle(ctx)`` user pointer given to every hook,
the logger, the ``libxl_event_hooks`` struct.  The osevent and childproc
hook structs are static C data.

cffi releases the GIL around every libxl call; callbacks take it back, on
whatever thread libxl calls them.
"""
from __future__ import annotations
from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from zope.interface import implementer

from .. import errors
from ..interfaces import IChildSink, IOSEventSink
from . import native
from .checks import (
    check_c_int,
    check_callable,
    check_domid,
    check_provides,
    check_text,
    check_uint64,
)
from .constants import (
    DOMID_FIRST_RESERVED,
    EVENT_DISK_EJECT,
    EVENT_DOMAIN_CREATE_CONSOLE_AVAILABLE,
    EVENT_DOMAIN_DEATH,
    EVENT_DOMAIN_SHUTDOWN,
    EVENT_OPERATION_COMPLETE,
    EVENTMASK_ALL,
    NIL_UUID,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLNVAL,
    POLLOUT,
    POLLPRI,
    SHORT_LIMIT,
    XTL_CRITICAL,
    XTL_DEBUG,
    XTL_DETAIL,
    XTL_ERROR,
    XTL_INFO,
    XTL_NOTICE,
    XTL_NUM_LEVELS,
    XTL_PROGRESS,
    XTL_VERBOSE,
    XTL_WARN,
    event_mask,
)
from .native import forbidden, in_forbidden, live_contexts
from .values import DomainInfoRaw, RawEvent, read_disk, read_dominfo, read_event, uuid_text

__all__ = [
    "Ctx",
    "RawEvent",
    "DomainInfoRaw",
    "event_mask",
    "EVENTMASK_ALL",
    "EVENT_DOMAIN_SHUTDOWN",
    "EVENT_DOMAIN_DEATH",
    "EVENT_DISK_EJECT",
    "EVENT_OPERATION_COMPLETE",
    "EVENT_DOMAIN_CREATE_CONSOLE_AVAILABLE",
    "XTL_DEBUG",
    "XTL_VERBOSE",
    "XTL_DETAIL",
    "XTL_PROGRESS",
    "XTL_INFO",
    "XTL_NOTICE",
    "XTL_WARN",
    "XTL_ERROR",
    "XTL_CRITICAL",
    "POLLIN",
    "POLLPRI",
    "POLLOUT",
    "POLLERR",
    "POLLHUP",
    "POLLNVAL",
    "DOMID_FIRST_RESERVED",
]

_log = native.log

_ffi: Any = None
_lib: Any = None


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


class _EventGenerator:
    """
    The opaque handle of one enabled libxl event generator; pass it back to
    the matching ``evdisable_*`` once.
    """

    __slots__ = ("ctx", "kind", "pointer", "user", "domid", "vdev", "__weakref__")

    def __init__(self, ctx: "Ctx", kind: str, pointer: Any, user: int) -> None:
        self.ctx = ctx
        self.kind = kind
        self.pointer = pointer
        self.user = user
        self.domid: Optional[int] = None
        self.vdev: Optional[str] = None

    def __repr__(self) -> str:
        state = "enabled" if self.pointer is not None else "disabled"
        return f"<libxl {self.kind} generator user={self.user} {state}>"


def _now_timeval(now: Optional[float]) -> Tuple[int, int]:
    if now is None:
        now = time.time()
    sec, usec = divmod(int(round(now * 1e6)), 1000000)
    return sec, usec


_OSEVENT_HOOK_METHODS = (
    "fd_register",
    "fd_modify",
    "fd_deregister",
    "timeout_register",
    "timeout_modify",
    "timeout_deregister",
)


def _ignore_event(raw: RawEvent) -> None:
    _log.warn("libxl event of type {type} with no handler, dropped", type=raw.type)


def _log_disaster(kind: int, message: str, errnoval: int) -> None:
    _log.critical("{disaster}", disaster=errors.LibxlDisaster(kind, message, errnoval))


def _drop_completion(op_id: int, rc: int) -> None:  # pragma: no cover - ops need a handler
    _log.error("libxl operation {op_id} completed with {rc} and no handler", op_id=op_id, rc=rc)


# ---------------------------------------------------------------------------


@implementer(IOSEventSink, IChildSink)
class Ctx:
    """
    One ``libxl_ctx``.  Make it with :meth:`alloc`; end it with :meth:`free`.

    Setup order (each at most once, before any watch or operation):
    :meth:`register_osevent_hooks`, :meth:`set_childproc_mainloop`,
    :meth:`register_event_callbacks`, :meth:`set_ao_completion`.  Until
    :meth:`register_event_callbacks` is called libxl queues events for
    :meth:`event_check`; its disaster callback is installed from the start
    (logging at critical level), so libxl never calls ``exit(-1)``.

    A context may be used from several threads, but :meth:`free` must not
    race any other call.
    """

    def __init__(self) -> None:
        raise TypeError("use Ctx.alloc(log) to make a libxl context")

    @classmethod
    def alloc(cls, log: Callable[[int, str], None], min_level: int = XTL_INFO) -> "Ctx":
        """
        ``libxl_ctx_alloc``: a new context whose xentoollog messages (and
        progress reports) of level C{min_level} and above go to
        C{log(level, text)}.  Messages below C{min_level} are dropped in C
        before they are formatted.

        C{log} is called from inside libxl (on any thread libxl runs on,
        with libxl's lock held): it must not call libxl.

        :raises txlibxl.errors.LibxlError: libxl could not make the
            context (no Xen, no xenstored, no permission...).
        :raises txlibxl.loader.BindingUnavailable: the binding is not built.
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
        rc = lib.txl_ctx_alloc(pctx, logger)
        if rc:
            lib.txl_logger_free(logger)
            raise errors.from_code(rc, "libxl_ctx_alloc")
        self._logger = logger
        self._ctx = pctx[0]
        self.address = int(ffi.cast("uintptr_t", self._ctx))
        self._closed = False
        live_contexts[self.address] = self
        # The disaster callback, from the start; events stay queued.
        lib.txl_register_event_callbacks(self._ctx, self._event_hooks, 0, self._handle)
        return self

    def _init_state(self, log: Callable[[int, str], None]) -> None:
        """
        The Python side of a context not (yet) allocated: it behaves as a
        freed one (every libxl call raises ContextClosed), but argument
        checks and the hook trampolines work.
        """
        ffi, _ = native.load()
        self._log_to = log
        self._closed = True
        self._ctx = ffi.NULL
        self._logger = ffi.NULL
        self.address = 0
        self._handle = ffi.new_handle(self)
        self._registrations: Dict[int, Any] = {}
        self._registration_ids = itertools.count(1)
        self._hooks: Any = None
        self._watcher: Any = None
        self._on_event: Callable[[RawEvent], None] = _ignore_event
        self._on_disaster: Callable[[int, str, int], None] = _log_disaster
        self._on_complete: Optional[Callable[[int, int], None]] = None
        self._event_hooks = ffi.new("libxl_event_hooks *")
        self._generators: Set[_EventGenerator] = set()
        # (domid, user) -> what libxl leaves out of that generator's events
        self._eject_vdevs: Dict[Tuple[int, int], str] = {}
        self._uuids: Dict[Tuple[int, int], str] = {}
        # (domid, user) -> how many enabled generators share it (so that a
        # disable finds out in O(1) whether the entries above are still used)
        self._key_refs: Dict[Tuple[int, int], int] = {}
        self._ops: Set[int] = set()
        self._libxl_busy = False  # fds/timeouts/children may exist in libxl
        self.disaster: Optional[errors.LibxlDisaster] = None

    # -- state -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """
        Whether :meth:`free` has been called.
        """
        return self._closed

    @property
    def operations_in_flight(self) -> frozenset:
        """
        The op_ids of the asynchronous operations libxl has not completed.
        """
        return frozenset(self._ops)

    @property
    def generators_enabled(self) -> int:
        """
        The number of event generators enabled and not yet disabled.
        """
        return len(self._generators)

    def _enter(self, call: str) -> Any:
        if in_forbidden():
            raise errors.ReentrantCall(
                f"{call}: libxl may not be called from inside an osevent hook or the "
                "disaster, fork, log or predicate callbacks"
            )
        if self._closed:
            raise errors.ContextClosed(f"{call}: the libxl context is not allocated or was freed")
        return self._ctx

    def set_log_level(self, min_level: int) -> None:
        """
        Pass on libxl's messages of level C{min_level} and above from now on.
        """
        check_c_int("set_log_level", "min_level", min_level, XTL_DEBUG, XTL_NUM_LEVELS + 1)
        self._enter("set_log_level")
        _lib.txl_logger_set_min_level(self._logger, min_level)

    # -- setup -----------------------------------------------------------

    def register_osevent_hooks(self, hooks: Any) -> None:
        """
        ``libxl_osevent_register_hooks``: libxl's fds and timeouts are
        watched by C{hooks} (an :class:`~txlibxl.interfaces.IOSEventHooks`)
        from now on.  Once per context, before any watch or operation.
        """
        call = "libxl_osevent_register_hooks"
        check_provides(call, "hooks", hooks, _OSEVENT_HOOK_METHODS)
        ctx = self._enter(call)
        if self._hooks is not None:
            raise errors.ContextStateError(f"{call}: the hooks are registered already")
        if self._libxl_busy:
            raise errors.ContextStateError(
                f"{call}: libxl may already have fds or timeouts; register the hooks first"
            )
        self._hooks = hooks
        _lib.txl_register_osevent_hooks(ctx, self._handle)

    def set_childproc_mainloop(self, watcher: Any) -> None:
        """
        ``libxl_childproc_setmode(libxl_sigchld_owner_mainloop)``: libxl
        forks with a C ``fork()`` and reports each child's pid, in the
        parent, to C{watcher.child_forked(pid)} (an
        :class:`~txlibxl.interfaces.IChildWatcher`); the application reaps
        and calls :meth:`child_reaped` or :meth:`sigchld_occurred`.  Once,
        before any watch or operation.
        """
        call = "libxl_childproc_setmode"
        check_provides(call, "watcher", watcher, ("child_forked",))
        ctx = self._enter(call)
        if self._watcher is not None:
            raise errors.ContextStateError(f"{call}: the child watcher is set already")
        if self._libxl_busy:
            raise errors.ContextStateError(
                f"{call}: libxl may already have children; set the mode first"
            )
        self._watcher = watcher
        _lib.txl_set_childproc_mainloop(ctx, self._handle)

    def register_event_callbacks(
        self,
        on_event: Callable[[RawEvent], None],
        on_disaster: Callable[[int, str, int], None],
        mask: int = EVENTMASK_ALL,
    ) -> None:
        """
        ``libxl_event_register_callbacks``: events whose type's bit is set
        in C{mask} (bit N for type N; default: all) are copied, freed and
        handed to C{on_event(raw_event)}; the others stay queued for
        :meth:`event_check`.  libxl's disasters go to
        C{on_disaster(type, message, errnoval)}, which must not call libxl.

        Both are called from inside libxl, on any thread that calls libxl.
        libxl allows this only while no event generator is enabled.
        """
        call = "libxl_event_register_callbacks"
        check_callable(call, "on_event", on_event)
        check_callable(call, "on_disaster", on_disaster)
        check_uint64(call, "mask", mask)
        ctx = self._enter(call)
        if self._generators:
            raise errors.ContextStateError(
                f"{call}: libxl forbids this while event generators are enabled"
            )
        self._on_event = on_event
        self._on_disaster = on_disaster
        _lib.txl_register_event_callbacks(ctx, self._event_hooks, mask, self._handle)

    def set_ao_completion(self, on_complete: Callable[[int, int], None]) -> None:
        """
        Asynchronous operations report their end to
        C{on_complete(op_id, rc)} (from inside libxl, possibly before the
        initiating call returns, on any thread that calls libxl).
        """
        check_callable("set_ao_completion", "on_complete", on_complete)
        self._enter("set_ao_completion")
        self._on_complete = on_complete

    # -- hooks (called by libxl through C) ---------------------------------

    def _store(self, registration: Any) -> Any:
        rid = next(self._registration_ids)
        self._registrations[rid] = registration
        return _ffi.cast("void *", rid)

    def _hook_fd_register(self, fd: int, out: Any, events: int, for_libxl: Any) -> int:
        token = int(_ffi.cast("uintptr_t", for_libxl))
        with forbidden:
            try:
                registration = self._hooks.fd_register(fd, events, token)
                if registration is None:
                    raise TypeError("fd_register returned None")
            except Exception:
                _log.failure("osevent hook fd_register(fd={fd}, events={events:#x}) failed",
                             fd=fd, events=events)
                return errors.ERROR_OSEVENT_REG_FAIL
        out[0] = self._store(registration)
        return 0

    def _hook_fd_modify(self, fd: int, update: Any, events: int) -> int:
        rid = int(_ffi.cast("uintptr_t", update[0]))
        with forbidden:
            try:
                registration = self._registrations[rid]
                new = self._hooks.fd_modify(fd, registration, events)
                if new is None:
                    raise TypeError("fd_modify returned None")
            except Exception:
                _log.failure("osevent hook fd_modify(fd={fd}, events={events:#x}) failed",
                             fd=fd, events=events)
                return errors.ERROR_OSEVENT_REG_FAIL
        self._registrations[rid] = new
        return 0

    def _hook_fd_deregister(self, fd: int, pointer: Any) -> None:
        registration = self._registrations.pop(int(_ffi.cast("uintptr_t", pointer)), None)
        if registration is None:
            _log.error("libxl deregistered an unknown fd registration (fd {fd})", fd=fd)
            return
        with forbidden:
            try:
                self._hooks.fd_deregister(fd, registration)
            except Exception:
                _log.failure("osevent hook fd_deregister(fd={fd}) failed", fd=fd)

    def _hook_timeout_register(self, out: Any, deadline: float, for_libxl: Any) -> int:
        token = int(_ffi.cast("uintptr_t", for_libxl))
        with forbidden:
            try:
                registration = self._hooks.timeout_register(deadline, token)
                if registration is None:
                    raise TypeError("timeout_register returned None")
            except Exception:
                _log.failure("osevent hook timeout_register failed")
                return errors.ERROR_OSEVENT_REG_FAIL
        out[0] = self._store(registration)
        return 0

    def _hook_timeout_modify(self, update: Any, deadline: Optional[float]) -> int:
        rid = int(_ffi.cast("uintptr_t", update[0]))
        with forbidden:
            try:
                registration = self._registrations[rid]
                new = self._hooks.timeout_modify(registration, deadline)
                if new is None:
                    raise TypeError("timeout_modify returned None")
            except Exception:
                _log.failure("osevent hook timeout_modify failed")
                return errors.ERROR_OSEVENT_REG_FAIL
        self._registrations[rid] = new
        return 0

    def _hook_timeout_deregister(self, pointer: Any) -> None:
        registration = self._registrations.pop(int(_ffi.cast("uintptr_t", pointer)), None)
        if registration is None:
            _log.error("libxl deregistered an unknown timeout registration")
            return
        with forbidden:
            try:
                self._hooks.timeout_deregister(registration)
            except Exception:
                _log.failure("osevent hook timeout_deregister failed")

    @property
    def osevent_registrations(self) -> int:
        """
        The number of fd and timeout registrations libxl holds through the
        hooks.  A timeout stays registered until :meth:`occurred_timeout`
        (libxl's ``timeout_modify`` "as soon as possible" does not end it).
        """
        return len(self._registrations)

    # -- callbacks (called by libxl through C) -----------------------------

    def _libxl_logged(self, level: int, text: Any) -> None:
        message = _ffi.string(text).decode("utf-8", "replace")
        with forbidden:
            try:
                self._log_to(level, message)
            except Exception:
                _log.failure("the libxl log callback failed")

    def _copy_event(self, event: Any) -> RawEvent:
        return read_event(event, self._eject_vdevs, self._uuids)

    def _event_occurred(self, kind: int, domid: int, for_user: int, reason: int, rc: int,
                        uuid: Any, kept: Any) -> None:
        # The C side passed the scalars and freed the event, unless it kept
        # one with more to read (a disk eject, a type it does not know).
        if kept != _ffi.NULL:
            try:
                raw = self._copy_event(kept)
            finally:
                _lib.libxl_event_free(self._ctx, kept)
        else:
            if uuid == _ffi.NULL:
                # libxl 4.17 never fills libxl_event.domuuid: the UUID read
                # when the generator was enabled stands in.
                text = self._uuids.get((domid, for_user), NIL_UUID)
            else:
                text = _ffi.string(uuid).decode("ascii")
            raw = RawEvent(
                kind,
                domid,
                text,
                for_user,
                reason if kind == EVENT_DOMAIN_SHUTDOWN else None,
                None,
                None,
                rc if kind == EVENT_OPERATION_COMPLETE else None,
            )
        try:
            self._on_event(raw)
        except Exception:
            _log.failure("the libxl event callback failed on {raw}", raw=raw)

    def _disaster_occurred(self, kind: int, msg: Any, errnoval: int) -> None:
        message = _ffi.string(msg).decode("utf-8", "replace")
        self.disaster = errors.LibxlDisaster(kind, message, errnoval)
        with forbidden:
            try:
                self._on_disaster(kind, message, errnoval)
            except Exception:
                _log.failure("the libxl disaster callback failed")

    def _child_forked(self, pid: int) -> None:
        with forbidden:
            try:
                self._watcher.child_forked(pid)
            except Exception:
                _log.failure("child watcher failed on libxl's child {pid}", pid=pid)

    def _op_completed(self, op_id: int, rc: int) -> None:
        self._ops.discard(op_id)
        handler = self._on_complete or _drop_completion
        try:
            handler(op_id, rc)
        except Exception:
            _log.failure("the libxl completion callback failed (op {op_id})", op_id=op_id)

    # -- IOSEventSink / IChildSink -----------------------------------------

    def occurred_fd(self, token: int, fd: int, events: int, revents: int) -> None:
        """
        ``libxl_osevent_occurred_fd``: C{fd}, registered for C{token}, is
        ready with C{revents}.  Never from inside a hook.
        """
        call = "libxl_osevent_occurred_fd"
        check_uint64(call, "token", token, 1)
        check_c_int(call, "fd", fd, 0, 1 << 31)
        check_c_int(call, "events", events, 0, SHORT_LIMIT)
        check_c_int(call, "revents", revents, 0, SHORT_LIMIT)
        ctx = self._enter(call)
        _lib.libxl_osevent_occurred_fd(ctx, _ffi.cast("void *", token), fd, events, revents)

    def occurred_timeout(self, token: int) -> None:
        """
        ``libxl_osevent_occurred_timeout``: the timeout registered for
        C{token} fired.  Exactly once per registration; never from inside
        a hook.
        """
        call = "libxl_osevent_occurred_timeout"
        check_uint64(call, "token", token, 1)
        ctx = self._enter(call)
        _lib.libxl_osevent_occurred_timeout(ctx, _ffi.cast("void *", token))

    def child_reaped(self, pid: int, status: int) -> None:
        """
        ``libxl_childproc_reaped``: libxl's child C{pid} exited with wait
        status C{status}.

        :raises txlibxl.errors.UnknownChild: C{pid} is not libxl's.
        """
        call = "libxl_childproc_reaped"
        check_c_int(call, "pid", pid, 1, 1 << 31)
        check_c_int(call, "status", status, -(1 << 31), 1 << 31)
        ctx = self._enter(call)
        rc = _lib.libxl_childproc_reaped(ctx, pid, status)
        if rc:
            raise errors.from_code(rc, call)

    def sigchld_occurred(self) -> None:
        """
        ``libxl_childproc_sigchld_occurred``: some child may have exited;
        libxl reaps its own with ``waitpid(pid, WNOHANG)``.
        """
        ctx = self._enter("libxl_childproc_sigchld_occurred")
        _lib.libxl_childproc_sigchld_occurred(ctx)

    # -- polling without hooks -------------------------------------------

    def beforepoll(
        self, timeout: int = -1, now: Optional[float] = None
    ) -> Tuple[List[Tuple[int, int]], int]:
        """
        ``libxl_osevent_beforepoll``: the C{(fd, events)} pairs libxl wants
        polled, in order, and the poll timeout in milliseconds (C{timeout}
        lowered to libxl's next deadline; -1 for none).  C{now} is the
        wall-clock time (default: ``time.time()``).
        """
        call = "libxl_osevent_beforepoll"
        check_c_int(call, "timeout", timeout, -1, 1 << 31)
        ctx = self._enter(call)
        sec, usec = _now_timeval(now)
        self._libxl_busy = True
        size = 8
        while True:
            fds = _ffi.new("struct pollfd[]", size)
            nfds = _ffi.new("int *", size)
            timeout_upd = _ffi.new("int *", timeout)
            rc = _lib.txl_osevent_beforepoll(ctx, nfds, fds, timeout_upd, sec, usec)
            if rc == errors.ERROR_BUFFERFULL:
                size = max(nfds[0], size * 2)
                continue
            if rc:
                raise errors.from_code(rc, call)
            return [(fds[i].fd, fds[i].events) for i in range(nfds[0])], timeout_upd[0]

    def afterpoll(self, polled: Sequence[Tuple[int, int, int]], now: Optional[float] = None) -> None:
        """
        ``libxl_osevent_afterpoll``: C{polled} is the list
        :meth:`beforepoll` returned, in the same order, each entry extended
        with its ``revents``: C{(fd, events, revents)}.  libxl's callbacks
        (events, completions) run inside this call.
        """
        call = "libxl_osevent_afterpoll"
        entries = list(polled)
        for entry in entries:
            if len(entry) != 3:
                raise errors.InvalidArgument(
                    call=call, message=f"each entry must be (fd, events, revents), not {entry!r}"
                )
            fd, events, revents = entry
            check_c_int(call, "fd", fd, -(1 << 31), 1 << 31)
            check_c_int(call, "events", events, 0, SHORT_LIMIT)
            check_c_int(call, "revents", revents, 0, SHORT_LIMIT)
        ctx = self._enter(call)
        sec, usec = _now_timeval(now)
        fds = _ffi.new("struct pollfd[]", max(len(entries), 1))
        for i, (fd, events, revents) in enumerate(entries):
            fds[i].fd = fd
            fds[i].events = events
            fds[i].revents = revents
        _lib.txl_osevent_afterpoll(ctx, len(entries), fds, sec, usec)

    # -- event generators --------------------------------------------------

    def evenable_domain_death(self, domid: int, user: int) -> Any:
        """
        ``libxl_evenable_domain_death``: report DOMAIN_SHUTDOWN (at most
        once) and DOMAIN_DEATH of C{domid}, with C{for_user=user}.  libxl
        does not check that the domain exists (a missing one yields DEATH).

        :returns: an opaque handle for :meth:`evdisable_domain_death`.
        """
        call = "libxl_evenable_domain_death"
        check_domid(call, domid)
        check_uint64(call, "user", user)
        ctx = self._enter(call)
        out = _ffi.new("libxl_evgen_domain_death **")
        self._libxl_busy = True
        rc = _lib.libxl_evenable_domain_death(ctx, domid, user, out)
        if rc:
            raise errors.from_code(rc, call)
        generator = _EventGenerator(self, "domain_death", out[0], user)
        generator.domid = domid
        self._add_generator(generator)
        uuid = self._uuid_of(ctx, domid)
        if uuid is not None:
            self._uuids[(domid, user)] = uuid
        return generator

    def evdisable_domain_death(self, handle: Any) -> None:
        """
        ``libxl_evdisable_domain_death``.  Events that occurred before may
        still be delivered.
        """
        self._disable(handle, "domain_death", "libxl_evdisable_domain_death",
                      _lib.libxl_evdisable_domain_death)

    def evenable_disk_eject(self, domid: int, vdev: str, user: int) -> Any:
        """
        ``libxl_evenable_disk_eject``: report DISK_EJECT of the disk
        C{vdev} (e.g. ``"xvdc"``, ``"hdc"``) of C{domid}, with
        C{for_user=user}.

        :returns: an opaque handle for :meth:`evdisable_disk_eject`.
        """
        call = "libxl_evenable_disk_eject"
        check_domid(call, domid)
        vdev_bytes = check_text(call, "vdev", vdev)
        check_uint64(call, "user", user)
        ctx = self._enter(call)
        out = _ffi.new("libxl_evgen_disk_eject **")
        self._libxl_busy = True
        rc = _lib.libxl_evenable_disk_eject(ctx, domid, vdev_bytes, user, out)
        if rc:
            raise errors.from_code(rc, call)
        generator = _EventGenerator(self, "disk_eject", out[0], user)
        generator.domid, generator.vdev = domid, vdev
        self._add_generator(generator)
        self._eject_vdevs[(domid, user)] = vdev
        uuid = self._uuid_of(ctx, domid)
        if uuid is not None:
            self._uuids[(domid, user)] = uuid
        return generator

    def evdisable_disk_eject(self, handle: Any) -> None:
        """
        ``libxl_evdisable_disk_eject``.
        """
        self._disable(handle, "disk_eject", "libxl_evdisable_disk_eject",
                      _lib.libxl_evdisable_disk_eject)

    def _disable(self, handle: Any, kind: str, call: str, disable: Callable[[Any, Any], None]) -> None:
        # On a death storm this runs once per death: checks first, then
        # the least bookkeeping that keeps the maps exact.
        if not isinstance(handle, _EventGenerator) or handle.kind != kind:
            raise errors.InvalidArgument(
                call=call, message=f"not a {kind} generator handle: {handle!r}"
            )
        if handle.ctx is not self:
            raise errors.InvalidArgument(call=call, message="the generator is another context's")
        ctx = self._enter(call)
        pointer = handle.pointer
        if pointer is None:
            raise errors.InvalidArgument(call=call, message="the generator is disabled already")
        handle.pointer = None
        self._generators.discard(handle)
        key = (handle.domid, handle.user)
        refs = self._key_refs
        left = refs.pop(key, 1) - 1
        if left > 0:
            refs[key] = left
        else:
            self._uuids.pop(key, None)
            self._eject_vdevs.pop(key, None)
        disable(ctx, pointer)

    def _add_generator(self, generator: _EventGenerator) -> None:
        self._generators.add(generator)
        key = (generator.domid, generator.user)
        self._key_refs[key] = self._key_refs.get(key, 0) + 1

    def event_check(
        self,
        typemask: int = EVENTMASK_ALL,
        predicate: Optional[Callable[[RawEvent], bool]] = None,
    ) -> Optional[RawEvent]:
        """
        ``libxl_event_check``: the first queued event whose type's bit is
        set in C{typemask} and that C{predicate} accepts (any, without
        one), removed from libxl's queue; ``None`` if there is none.

        Only events outside the mask given to
        :meth:`register_event_callbacks` are queued.  C{predicate} runs
        inside libxl and must not call libxl; an exception from it is
        logged and counts as "no".
        """
        call = "libxl_event_check"
        check_uint64(call, "typemask", typemask)
        if predicate is not None:
            check_callable(call, "predicate", predicate)
        ctx = self._enter(call)
        out = _ffi.new("libxl_event **")
        user = _ffi.new_handle((self, predicate)) if predicate is not None else _ffi.NULL
        rc = _lib.txl_event_check(ctx, out, typemask, user)
        if rc == errors.ERROR_NOT_READY:
            return None
        if rc:
            raise errors.from_code(rc, call)
        try:
            return self._copy_event(out[0])
        finally:
            _lib.libxl_event_free(ctx, out[0])

    # -- asynchronous operations ----------------------------------------------

    def _ao_how(self, op_id: int) -> Any:
        how = _ffi.new("libxl_asyncop_how *")
        _lib.txl_ao_how_init(how, op_id)
        return how

    def _start(self, call: str, function: Callable[..., int], domid: int, op_id: int) -> None:
        check_domid(call, domid)
        check_uint64(call, "op_id", op_id, 1)
        ctx = self._enter(call)
        if self._on_complete is None:
            raise errors.ContextStateError(f"{call}: call set_ao_completion first")
        if op_id in self._ops:
            raise errors.InvalidArgument(call=call, message=f"operation {op_id} is in flight already")
        how = self._ao_how(op_id)
        self._ops.add(op_id)  # libxl may complete it inside the call
        self._libxl_busy = True
        rc = function(ctx, domid, how)
        if rc:
            self._ops.discard(op_id)  # a failed start never calls back
            raise errors.from_code(rc, call)

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

    # -- synchronous queries ---------------------------------------------------

    def _uuid_of(self, ctx: Any, domid: int) -> Optional[str]:
        """
        The UUID of C{domid}, or None if there is no such domain.
        """
        info = _ffi.new("libxl_dominfo *")
        _lib.libxl_dominfo_init(info)
        try:
            if _lib.libxl_domain_info(ctx, info, domid):
                return None
            return uuid_text(info.uuid)
        finally:
            _lib.libxl_dominfo_dispose(info)

    def _name_or_none(self, ctx: Any, domid: int) -> Optional[str]:
        pointer = _lib.libxl_domid_to_name(ctx, domid)
        if pointer == _ffi.NULL:
            return None
        try:
            return _ffi.string(pointer).decode("utf-8", "replace")
        finally:
            _lib.free(pointer)

    def list_domains(self, names: bool = True) -> List[DomainInfoRaw]:
        """
        ``libxl_list_domain``: every domain, by domid, with its name (one
        xenstore read per domain; C{names=False} leaves them ``None``).
        """
        call = "libxl_list_domain"
        ctx = self._enter(call)
        count = _ffi.new("int *")
        infos = _lib.libxl_list_domain(ctx, count)
        if infos == _ffi.NULL:
            raise errors.from_code(errors.ERROR_FAIL, call, "libxl could not list the domains")
        try:
            return [
                read_dominfo(
                    infos[i], self._name_or_none(ctx, infos[i].domid) if names else None
                )
                for i in range(count[0])
            ]
        finally:
            _lib.libxl_dominfo_list_free(infos, count[0])

    def domain_info(self, domid: int) -> DomainInfoRaw:
        """
        ``libxl_domain_info`` of C{domid}, with its name.

        :raises txlibxl.errors.DomainNotFound: there is no such domain.
        """
        call = "libxl_domain_info"
        check_domid(call, domid)
        ctx = self._enter(call)
        info = _ffi.new("libxl_dominfo *")
        _lib.libxl_dominfo_init(info)
        try:
            rc = _lib.libxl_domain_info(ctx, info, domid)
            if rc:
                raise errors.from_code(rc, call)
            return read_dominfo(info[0], self._name_or_none(ctx, domid))
        finally:
            _lib.libxl_dominfo_dispose(info)

    def domid_to_name(self, domid: int) -> str:
        """
        ``libxl_domid_to_name``.

        :raises txlibxl.errors.DomainNotFound: no domain C{domid}, or it
            has no name in xenstore.
        """
        call = "libxl_domid_to_name"
        check_domid(call, domid)
        name = self._name_or_none(self._enter(call), domid)
        if name is None:
            raise errors.from_code(
                errors.ERROR_DOMAIN_NOTFOUND, call, f"domain {domid} has no name (no such domain?)"
            )
        return name

    def name_to_domid(self, name: str) -> int:
        """
        ``libxl_name_to_domid``.

        :raises txlibxl.errors.InvalidArgument: no domain is called
            C{name} (libxl's code for that is ``ERROR_INVAL``).
        """
        call = "libxl_name_to_domid"
        encoded = check_text(call, "name", name)
        ctx = self._enter(call)
        out = _ffi.new("uint32_t *")
        rc = _lib.libxl_name_to_domid(ctx, encoded, out)
        if rc == errors.ERROR_INVAL:
            raise errors.from_code(rc, call, f"no domain is called {name!r}")
        if rc:
            raise errors.from_code(rc, call)
        return int(out[0])

    def vdev_to_device_disk(self, domid: int, vdev: str) -> Dict[str, Any]:
        """
        ``libxl_vdev_to_device_disk``: the configuration of disk C{vdev} of
        C{domid}, as libxl stored it (the keys of :class:`RawEvent`'s
        ``disk``).  Useful to check that a disk exists before watching it:
        ``libxl_evenable_disk_eject`` does not check.

        :raises txlibxl.errors.LibxlError: no such disk (libxl's code, e.g.
            ``ERROR_FAIL``), or C{vdev} is not a disk name (``ERROR_INVAL``).
        """
        call = "libxl_vdev_to_device_disk"
        check_domid(call, domid)
        encoded = check_text(call, "vdev", vdev)
        ctx = self._enter(call)
        disk = _ffi.new("libxl_device_disk *")
        _lib.libxl_device_disk_init(disk)
        try:
            rc = _lib.libxl_vdev_to_device_disk(ctx, domid, encoded, disk)
            if rc:
                raise errors.from_code(rc, call, f"domain {domid} has no disk {vdev!r}")
            fields = _ffi.new("struct txl_disk_fields *")
            _lib.txl_disk_read(disk, fields)
            return read_disk(fields)
        finally:
            _lib.libxl_device_disk_dispose(disk)

    # -- teardown ------------------------------------------------------------

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
        if self._ops:
            raise errors.ContextStateError(
                f"{call}: operations {sorted(self._ops)} are in flight; "
                "abort them and wait for their completion first"
            )
        rc = _lib.libxl_ctx_free(ctx)
        self._closed = True
        for generator in self._generators:
            generator.pointer = None
        self._generators.clear()
        self._key_refs.clear()
        self._eject_vdevs.clear()
        self._uuids.clear()
        self._registrations.clear()
        _lib.txl_logger_free(self._logger)
        self._logger = _ffi.NULL
        live_contexts.pop(self.address, None)
        if rc:
            raise errors.from_code(rc, call)

    def __repr__(self) -> str:
        state = "freed" if self._closed else "live"
        return f"<txlibxl._libxl.binding.Ctx {self.address:#x} {state}>"
