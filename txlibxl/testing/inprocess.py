"""
Pointing this process's libxenlight at a simulated host:
:func:`use_simulated_host`, given the host this process started or the
run directory of one started elsewhere (``python -m txlibxl.sim run``).

libxenlight's ``xc_*`` calls must reach the simulated hypervisor, so the
host's shim is loaded with ``RTLD_GLOBAL`` *before* libxenlight; the
environment tells libxl where the host's xenstored and hypercall sockets
are, and the shim redirects libxl's hard-coded ``/var/run/xen``,
``/run/xen`` and ``/var/lib/xen`` under the host's root.  All of this is
process-wide: one process's libxenlight talks to one host at a time.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any, Callable, Dict, List, Optional, Union

from .errors import ShimLoadOrderError, SimulatedHostError, SimulatedHostUnavailable
from .simhost import SimulatedHost, _environment_for, read_host_json

__all__ = ["use_simulated_host"]



_shim: Optional[ctypes.CDLL] = None
_shim_path: Optional[str] = None
_roots: List[str] = []


def _mapped_objects() -> str:
    try:
        with open("/proc/self/maps") as f:
            return f.read()
    except OSError:
        return ""


def _libxenlight_loaded() -> bool:
    try:
        from txlibxl._libxl import loader  # type: ignore[attr-defined]
    except ImportError:
        loader = None
    if loader is not None and loader.is_loaded():
        return True
    return "libxenlight" in _mapped_objects()


def _load_libxenlight() -> None:
    """Load libxenlight (after the shim): through the binding if it exists."""
    try:
        from txlibxl._libxl import loader  # type: ignore[attr-defined]
    except ImportError:
        loader = None
    if loader is not None:
        try:
            loader.load()
            return
        except ImportError:
            pass  # not built: libxenlight itself may still be there
    name = ctypes.util.find_library("xenlight") or "libxenlight.so"
    try:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise SimulatedHostUnavailable(f"cannot load libxenlight ({name}): {e}") from None


def _load_shim(path: str) -> ctypes.CDLL:
    global _shim, _shim_path
    if _shim is not None:
        if os.path.realpath(path) != os.path.realpath(_shim_path or ""):
            raise ShimLoadOrderError(
                f"this process already loaded the shim {_shim_path!r}; it cannot load a second one ({path!r})"
            )
        return _shim
    if not os.path.isfile(path):
        raise SimulatedHostUnavailable(f"the simulated host's shim is not built: {path!r}")
    maps = _mapped_objects()
    preloaded = os.path.realpath(path) in maps or path in maps
    if not preloaded and _libxenlight_loaded():
        raise ShimLoadOrderError(
            "libxenlight is already loaded in this process without the simulated host's shim "
            f"({path}), so its xc_* calls would reach the real libxenctrl; call use_simulated_host "
            "(or start the process with LD_PRELOAD=<shim>) before the first libxl context is opened"
        )
    lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL, use_errno=True)
    lib.txsim_redirect_paths.argtypes = [ctypes.c_char_p]
    lib.txsim_redirect_paths.restype = ctypes.c_int
    lib.txsim_shim_version.argtypes = []
    lib.txsim_shim_version.restype = ctypes.c_int
    _shim, _shim_path = lib, path
    return lib


def _redirect(lib: ctypes.CDLL, root: str) -> None:
    rc = lib.txsim_redirect_paths(os.fsencode(root))
    if rc != 0:
        err = ctypes.get_errno()
        raise SimulatedHostError(f"txsim_redirect_paths({root!r}) failed: {os.strerror(err)} (errno {err})")


HostLike = Union[SimulatedHost, str, "os.PathLike[str]"]


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's process
    return True


def _running_host_info(where: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """
    The ``host.json`` of the host running in the run directory C{where}
    (or at the ``host.json`` C{where} names).

    @raise SimulatedHostUnavailable: there is no usable ``host.json`` there,
        or its host is not running.
    """
    path = os.path.abspath(os.fsdecode(where))
    if os.path.isdir(path):
        path = os.path.join(path, "host.json")
    try:
        info = read_host_json(path)
    except (OSError, ValueError) as e:
        raise SimulatedHostUnavailable(f"no simulated host at {path!r}: {e}") from None
    if not _pid_alive(info.get("pid")) or not os.path.exists(info["xenstored"]):
        raise SimulatedHostUnavailable(
            f"the simulated host of {path!r} (pid {info.get('pid')!r}) is not running"
        )
    return info


def use_simulated_host(host: HostLike) -> Callable[[], None]:
    """
    Make the real libxenlight in this process talk to C{host}: a
    L{SimulatedHost} this process started, or the run directory of a host
    started by any process (``python -m txlibxl.sim run --rundir DIR``),
    or the ``host.json`` in it.

    1. Loads the host's shim with ``RTLD_GLOBAL``, once per process, so
       that libxenlight's ``xc_*`` calls reach the simulated hypervisor.
       This must happen before libxenlight is loaded: if it already is
       (without the shim), L{ShimLoadOrderError} (a C{RuntimeError}) is
       raised and nothing is changed.
    2. Sets ``XENSTORED_PATH``, ``TXLIBXL_SIM_HYPERCALL`` and
       ``TXLIBXL_SIM_ROOT`` in C{os.environ} (libxl contexts opened from
       now on connect to this host).
    3. Loads libxenlight (through ``txlibxl._libxl.loader`` if the binding
       is installed, else with ctypes) and redirects its ``/var/run/xen``,
       ``/run/xen`` and ``/var/lib/xen`` paths under the host's root.  The
       redirection is process-wide.

    @return: an idempotent callable that restores the environment
        variables and points the redirection back at the previous host (if
        any).  The shim stays loaded: it cannot be unloaded.
    @raise SimulatedHostUnavailable: the shim or libxenlight is missing,
        or a path names no running host (no readable ``host.json``, or
        its process is gone).
    @raise TypeError: C{host} is neither a L{SimulatedHost} nor a path.
    """
    if isinstance(host, SimulatedHost):
        info = host.info
    elif isinstance(host, (str, os.PathLike)):
        info = _running_host_info(host)
    else:
        raise TypeError(f"use_simulated_host needs a SimulatedHost or a run directory, not {host!r}")
    lib = _load_shim(info["shim"])
    new_env = _environment_for(info)
    saved = {name: os.environ.get(name) for name in new_env}
    os.environ.update(new_env)
    try:
        if not _libxenlight_loaded():
            _load_libxenlight()
        root = info["root"]
        _redirect(lib, root)
    except BaseException:
        _restore(saved)
        raise
    _roots.append(root)
    undone = []

    def undo() -> None:
        if undone:
            return
        undone.append(True)
        _restore(saved)
        try:
            _roots.remove(root)
        except ValueError:
            pass
        if _roots:
            _redirect(lib, _roots[-1])

    return undo


def _restore(saved: Dict[str, Optional[str]]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
