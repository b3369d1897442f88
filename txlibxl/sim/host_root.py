"""
The simulated host's root: the part of a Xen host's filesystem that libxl
reaches through paths compiled into it.

libxl keeps its state under ``/var/run/xen`` and ``/var/lib/xen`` and
runs the hotplug scripts from ``/etc/xen/scripts``.  The shim redirects
those prefixes to the same paths under the host's root (see
``txlibxl/sim/shim/xcshim_redirect.c``), and :func:`populate_root` puts
there what libxl must find: the state directories, and the simulator's
own scripts (:data:`SCRIPTS`) where libxl looks for Xen's.  To have libxl
run another program of the host's instead of a compiled-in one (the
device model, later), the shim's table gets its path and this module
links the program there.
"""
from __future__ import annotations

import os
from typing import Dict

__all__ = ["SCRIPTS", "STATE_DIRS", "populate_root"]

_SCRIPT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")

#: The directories libxl and xl write their state, logs and locks into.
STATE_DIRS = ("var/run/xen", "var/lib/xen", "var/log/xen", "var/lock")

#: Path under the root -> the simulator's program to find there.
SCRIPTS: Dict[str, str] = {
    "etc/xen/scripts/block": os.path.join(_SCRIPT_DIR, "block"),
    "etc/xen/scripts/vif-bridge": os.path.join(_SCRIPT_DIR, "vif-bridge"),
}


def populate_root(root: str) -> None:
    """Create the state directories and link the scripts under C{root}
    (idempotent)."""
    for sub in STATE_DIRS:
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for sub, target in SCRIPTS.items():
        path = os.path.join(root, sub)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.islink(path) and os.readlink(path) == target:
            continue
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)
