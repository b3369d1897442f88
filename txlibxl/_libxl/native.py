"""
The compiled module, once, and the Python it calls into.

:func:`load` imports ``txlibxl._libxl._cffi`` through :mod:`.loader` and
installs the ``extern "Python"`` callbacks before any context exists;
each callback finds its :class:`~txlibxl._libxl.binding.Ctx` (by the
``ffi.new_handle`` user pointer libxl passes back) and calls the Ctx's
method for it.  Events and operation completions call no Python: they
are queued in C (``c/txl_queue.c``) and taken in batches.  The modules of the binding that call C
keep the compiled module's ``ffi`` and ``lib`` as module globals (the
cheapest lookup on the per-event path), set by :func:`on_load`.

Also here: :data:`forbidden`, the guard marking the callbacks from which
libxl must not be called, and :data:`log`, the binding's logger.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Tuple

from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import errors
from . import loader

__all__ = ["load", "on_load", "live_contexts", "forbidden", "in_forbidden", "log"]

#: The binding's one logger (its namespace is the module that used to hold
#: the whole binding, so that log observers see what they always saw).
log = Logger(namespace="txlibxl._libxl.binding")

_ffi: Any = None
_lib: Any = None
_install_lock = threading.Lock()
_binders: List[Callable[[Any, Any], None]] = []

#: Live contexts by ``libxl_ctx`` address: the ao completion callback gets
#: only the ctx pointer, and a context that is never freed must keep what
#: libxl points to alive.
live_contexts: Dict[int, Any] = {}


def load() -> Tuple[Any, Any]:
    """
    The compiled binding, loading it and installing the callbacks on first
    use (then telling every function given to :func:`on_load`).

    :raises txlibxl._libxl.loader.BindingUnavailable: it is not built.
    """
    global _ffi, _lib
    if _lib is not None:
        return _ffi, _lib
    with _install_lock:
        if _lib is None:
            ffi, lib = loader.load()
            _install_callbacks(ffi)
            _ffi = ffi
            for bind in _binders:
                bind(ffi, lib)
            _lib = lib
    return _ffi, _lib


def on_load(bind: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """
    Call C{bind(ffi, lib)} once the compiled module is loaded (at once if
    it is), before :func:`load` returns it to anyone.  A decorator.
    """
    with _install_lock:
        if _lib is None:
            _binders.append(bind)
            return bind
    bind(_ffi, _lib)
    return bind


# ---------------------------------------------------------------------------
# The reentrancy guard.

_tls = threading.local()


class _Forbidden:
    """
    Marks this thread as running inside a callback from which libxl must
    not be called.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        _tls.depth = getattr(_tls, "depth", 0) + 1

    def __exit__(self, *exc: Any) -> None:
        _tls.depth -= 1


#: ``with forbidden:`` around every call out of libxl into code that
#: might call libxl (``Ctx._enter`` refuses while it is on).
forbidden = _Forbidden()


def in_forbidden() -> bool:
    """
    Whether this thread is inside a callback guarded by :data:`forbidden`.
    """
    return getattr(_tls, "depth", 0) > 0


# ---------------------------------------------------------------------------
# The extern "Python" callbacks.


def _onerror(exc_type: Any, exc_value: Any, tb: Any) -> None:
    """
    Last resort for an exception escaping a callback (the callbacks catch
    their own): log it; cffi then returns the declared error value.
    """
    try:
        log.failure("exception in a libxl callback", Failure(exc_value, exc_type, tb))
    except BaseException:  # pragma: no cover - the logger itself failed
        pass


def _install_callbacks(ffi: Any) -> None:
    reg_fail = errors.ERROR_OSEVENT_REG_FAIL
    ffi.def_extern("txl_py_log", onerror=_onerror)(_py_log)
    ffi.def_extern("txl_py_fd_register", error=reg_fail, onerror=_onerror)(_py_fd_register)
    ffi.def_extern("txl_py_fd_modify", error=reg_fail, onerror=_onerror)(_py_fd_modify)
    ffi.def_extern("txl_py_fd_deregister", onerror=_onerror)(_py_fd_deregister)
    ffi.def_extern("txl_py_timeout_register", error=reg_fail, onerror=_onerror)(
        _py_timeout_register
    )
    ffi.def_extern("txl_py_timeout_modify", error=reg_fail, onerror=_onerror)(_py_timeout_modify)
    ffi.def_extern("txl_py_timeout_deregister", onerror=_onerror)(_py_timeout_deregister)
    ffi.def_extern("txl_py_disaster", onerror=_onerror)(_py_disaster)
    ffi.def_extern("txl_py_child_forked", onerror=_onerror)(_py_child_forked)
    ffi.def_extern("txl_py_event_predicate", error=0, onerror=_onerror)(_py_event_predicate)


# The extern "Python" functions: find the Ctx, let it do the work.


def _py_log(user: Any, level: int, text: Any) -> None:
    _ffi.from_handle(user)._libxl_logged(level, text)


def _py_fd_register(user: Any, fd: int, out: Any, events: int, for_libxl: Any) -> int:
    return _ffi.from_handle(user)._hook_fd_register(fd, out, events, for_libxl)


def _py_fd_modify(user: Any, fd: int, update: Any, events: int) -> int:
    return _ffi.from_handle(user)._hook_fd_modify(fd, update, events)


def _py_fd_deregister(user: Any, fd: int, registration: Any) -> None:
    _ffi.from_handle(user)._hook_fd_deregister(fd, registration)


def _py_timeout_register(user: Any, out: Any, deadline: float, for_libxl: Any) -> int:
    return _ffi.from_handle(user)._hook_timeout_register(out, deadline, for_libxl)


def _py_timeout_modify(user: Any, update: Any, deadline: float, asap: int) -> int:
    return _ffi.from_handle(user)._hook_timeout_modify(update, None if asap else deadline)


def _py_timeout_deregister(user: Any, registration: Any) -> None:
    _ffi.from_handle(user)._hook_timeout_deregister(registration)


def _py_disaster(user: Any, kind: int, msg: Any, errnoval: int) -> None:
    _ffi.from_handle(user)._disaster_occurred(kind, msg, errnoval)


def _py_child_forked(user: Any, pid: int) -> None:
    _ffi.from_handle(user)._child_forked(pid)


def _py_event_predicate(event: Any, user: Any) -> int:
    ctx, predicate = _ffi.from_handle(user)
    with forbidden:
        try:
            return 1 if predicate(ctx._copy_event(event)) else 0
        except Exception:
            log.failure("an event_check predicate raised; the event does not match")
            return 0

