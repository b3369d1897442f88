"""
txlibxl: libxenlight's event machinery on an event loop.

The public API is importable from here::

    from txlibxl import Context, DomainDeath, LibxlError

* :class:`~txlibxl.context.Context` (from :mod:`txlibxl.context`): one libxl
  context on the reactor; watches and operations as Deferreds.
* The event values (:mod:`txlibxl.events`), the watches
  (:mod:`txlibxl.watches`) and the errors (:mod:`txlibxl.errors`).
* Domain configurations as data (:mod:`txlibxl.config`).

Importing ``txlibxl`` imports none of them until a name is used, and
never loads libxenlight: the simulated host (``txlibxl.sim``) and the
``twistd`` plugin import this package too, and test fixtures must be able
to load the simulated host's shim before libxenlight.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, List

__version__ = "0.1.0.dev0"

_PUBLIC: Dict[str, str] = {
    "Context": "txlibxl.context",
    "OperationCancelled": "txlibxl.context",
    "DomainWatch": "txlibxl.watches",
    "DiskEjectWatch": "txlibxl.watches",
    "WatchEnded": "txlibxl.watches",
    "WatchCancelled": "txlibxl.watches",
}
_PUBLIC.update(
    (name, "txlibxl.events")
    for name in (
        "ShutdownReason",
        "Disk",
        "DomainShutdown",
        "DomainDeath",
        "DiskEject",
        "OperationComplete",
        "ConsoleAvailable",
        "DomainInfo",
    )
)


def _error_names() -> List[str]:
    errors = importlib.import_module("txlibxl.errors")
    return [name for name in errors.__all__ if name[0].isupper() and not name.startswith("ERROR_")]


__all__ = ["__version__", *_PUBLIC]  # and the error classes of txlibxl.errors


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        if name in _error_names():
            return getattr(importlib.import_module("txlibxl.errors"), name)
        raise AttributeError(f"module 'txlibxl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_PUBLIC) | set(_error_names()))
