"""
libxl's osevent and childproc hooks: :class:`HooksMixin`, the part of
:class:`~txlibxl._libxl.binding.Ctx` that connects a context to an event
loop it knows nothing of.

libxl's six osevent hooks become calls on an
:class:`~txlibxl.interfaces.IOSEventHooks` provider, each registration
kept here under a small id that libxl holds as its pointer; libxl's
children are reported to an :class:`~txlibxl.interfaces.IChildWatcher`.
The way back into libxl is this part's
:class:`~txlibxl.interfaces.IOSEventSink` and
:class:`~txlibxl.interfaces.IChildSink` methods, and
:meth:`~HooksMixin.beforepoll`/:meth:`~HooksMixin.afterpoll` for polling
without hooks.
"""
from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from zope.interface import implementer

from .. import errors
from ..interfaces import IChildSink, IOSEventSink
from . import native
from .checks import check_c_int, check_provides, check_uint64
from .constants import SHORT_LIMIT, UINT64_LIMIT
from .ctx_base import CtxBase
from .native import forbidden

__all__ = ["HooksMixin"]

_log = native.log

#: An fd number's limit (a C int).
_FD_LIMIT = 1 << 31

_ffi: Any = None
_lib: Any = None


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


_OSEVENT_HOOK_METHODS = (
    "fd_register",
    "fd_modify",
    "fd_deregister",
    "timeout_register",
    "timeout_modify",
    "timeout_deregister",
)


def _now_timeval(now: Optional[float]) -> Tuple[int, int]:
    if now is None:
        now = time.time()
    sec, usec = divmod(int(round(now * 1e6)), 1000000)
    return sec, usec


@implementer(IOSEventSink, IChildSink)
class HooksMixin(CtxBase):
    """
    The osevent and childproc hooks of a :class:`~txlibxl._libxl.binding.Ctx`.
    """

    def _init_state(self, log: Callable[[int, str], None]) -> None:
        super()._init_state(log)
        self._registrations: Dict[int, Any] = {}
        self._registration_ids = itertools.count(1)
        self._hooks: Any = None
        self._watcher: Any = None

    def _after_free(self) -> None:
        super()._after_free()
        self._registrations.clear()

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

    # -- hooks (called by libxl through C) -------------------------------

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

    def _child_forked(self, pid: int) -> None:
        with forbidden:
            try:
                self._watcher.child_forked(pid)
            except Exception:
                _log.failure("child watcher failed on libxl's child {pid}", pid=pid)

    # -- IOSEventSink / IChildSink ---------------------------------------

    def occurred_fd(self, token: int, fd: int, events: int, revents: int) -> None:
        """
        ``libxl_osevent_occurred_fd``: C{fd}, registered for C{token}, is
        ready with C{revents}.  Never from inside a hook.
        """
        call = "libxl_osevent_occurred_fd"
        # The loop's own arguments pass the first test; anything else is
        # checked one by one, for the error that names it.
        if not (
            type(token) is int and type(fd) is int and type(events) is int and type(revents) is int
            and 0 < token < UINT64_LIMIT and 0 <= fd < _FD_LIMIT
            and 0 <= events < SHORT_LIMIT and 0 <= revents < SHORT_LIMIT
        ):
            check_uint64(call, "token", token, 1)
            check_c_int(call, "fd", fd, 0, _FD_LIMIT)
            check_c_int(call, "events", events, 0, SHORT_LIMIT)
            check_c_int(call, "revents", revents, 0, SHORT_LIMIT)
        ctx = self._enter(call)
        self._deliver_reports(
            _lib.libxl_osevent_occurred_fd, ctx, _ffi.cast("void *", token), fd, events, revents
        )

    def occurred_timeout(self, token: int) -> None:
        """
        ``libxl_osevent_occurred_timeout``: the timeout registered for
        C{token} fired.  Exactly once per registration; never from inside
        a hook.
        """
        call = "libxl_osevent_occurred_timeout"
        check_uint64(call, "token", token, 1)
        ctx = self._enter(call)
        self._deliver_reports(_lib.libxl_osevent_occurred_timeout, ctx, _ffi.cast("void *", token))

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
        rc = self._deliver_reports(_lib.libxl_childproc_reaped, ctx, pid, status)
        if rc:
            raise errors.from_code(rc, call)

    def sigchld_occurred(self) -> None:
        """
        ``libxl_childproc_sigchld_occurred``: some child may have exited;
        libxl reaps its own with ``waitpid(pid, WNOHANG)``.
        """
        ctx = self._enter("libxl_childproc_sigchld_occurred")
        self._deliver_reports(_lib.libxl_childproc_sigchld_occurred, ctx)

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
        self._deliver_reports(_lib.txl_osevent_afterpoll, ctx, len(entries), fds, sec, usec)
