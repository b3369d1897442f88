"""
Loads the compiled binding on first use, and only then.

Importing ``txlibxl._libxl._cffi`` loads libxenlight (and through it
libxenctrl) into the process.  A test fixture must be able to load the
simulated host's xc shim with ``RTLD_GLOBAL`` *before* that happens, so
nothing in txlibxl imports the compiled module at import time: the first
call of :func:`load` does.
"""
from __future__ import annotations

import threading
from typing import Any, Optional, Tuple

__all__ = ["load", "is_loaded", "BindingUnavailable"]

_lock = threading.Lock()
_loaded: Optional[Tuple[Any, Any]] = None


class BindingUnavailable(ImportError):
    """
    The compiled binding ``txlibxl._libxl._cffi`` could not be imported
    (not built, or libxenlight is missing).
    """


def load() -> Tuple[Any, Any]:
    """
    The compiled binding's ``(ffi, lib)``, importing it (and so loading
    libxenlight) on the first call.

    :raises BindingUnavailable: the module is not built or cannot load.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is None:
            try:
                from . import _cffi  # type: ignore[attr-defined]
            except ImportError as e:
                raise BindingUnavailable(
                    "txlibxl's libxl binding is not available (build it with "
                    "`pip install -e .` against the installed libxen-dev): " + str(e)
                ) from e
            _loaded = (_cffi.ffi, _cffi.lib)
    return _loaded


def is_loaded() -> bool:
    """
    Whether :func:`load` has imported the compiled binding already.
    """
    return _loaded is not None
