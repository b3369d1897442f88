"""
The simulated host's root: the part of a Xen host's filesystem that libxl
reaches through paths compiled into it.

libxl keeps its state under ``/var/run/xen`` and ``/var/lib/xen`` and
runs the hotplug scripts from ``/etc/xen/scripts``.  The shim redirects
those prefixes to the same paths under the host's root (see
``txlibxl/sim/shim/xcshim_redirect.c``), and :func:`populate_root` puts
there what libxl must find: the state directories, and the simulator's
own scripts (:data:`SCRIPTS`) where libxl looks for Xen's.  To have libxl
run another program of the host's instead of a compiled-in one, the
shim's table gets its path and this module puts the program there.

For an HVM guest libxl also runs its device model
(:data:`DEVICE_MODEL`, Debian's ``QEMU_XEN_PATH``): the host writes a
launcher there that runs the QMP stand-in
(:mod:`txlibxl.sim.devicemodel`) with the host's own interpreter; and
it loads the guest's firmware (:data:`FIRMWARE`), for which the host puts
small stand-ins (nothing reads their contents).  :data:`DM_FAULTS` is the
file through which the host tells the device models it did not start
itself which fault to play, :data:`GUEST_EJECT` the node through which
it tells them the guest ejected a CD; :func:`host_path` is where a compiled-in
state path is under the root, for the programs of the host that libxl
hands such paths (the stand-in's QMP sockets).
"""
from __future__ import annotations

import os
import shlex
import sys
from typing import Dict

__all__ = ["DEVICE_MODEL", "DM_FAULTS", "FIRMWARE", "GUEST_EJECT", "SCRIPTS", "STATE_DIRS", "host_path",
           "populate_root"]

_SCRIPT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")

#: The directories libxl and xl write their state, logs and locks into.
STATE_DIRS = ("var/run/xen", "var/lib/xen", "var/log/xen", "var/lock")

#: Path under the root -> the simulator's program to find there.
SCRIPTS: Dict[str, str] = {
    "etc/xen/scripts/block": os.path.join(_SCRIPT_DIR, "block"),
    "etc/xen/scripts/vif-bridge": os.path.join(_SCRIPT_DIR, "vif-bridge"),
}


#: Where libxl 4.17 (Debian's build) runs an HVM guest's device model.
DEVICE_MODEL = "usr/libexec/xen-qemu-system-i386"

#: The firmware libxl loads for an HVM guest (hvmloader, SeaBIOS, OVMF).
FIRMWARE = ("usr/lib/xen-4.17/boot/hvmloader", "usr/share/seabios/bios-256k.bin", "usr/share/ovmf/OVMF.fd")

#: The fault the device model stand-ins play (JSON), absent when none.
DM_FAULTS = "txsim/device-model-fault.json"

#: Where the host tells a device model stand-in that the guest ejected the
#: CD of drive ``<devid>`` (``GUEST_EJECT % (domid, devid)``, in the device
#: model's own xenstore directory).  A guest ejects through QEMU's emulated
#: drive, and the simulator has no guest: the stand-in takes this node in
#: its place (removes it, empties the drive, writes the eject node libxl
#: watches).
GUEST_EJECT = "/local/domain/0/device-model/%d/txsim-guest-eject/%d"

#: Compiled-in state prefixes and where they are under the root (the
#: shim's table for them).
_STATE_PREFIXES = (("/var/run/xen", "var/run/xen"), ("/run/xen", "var/run/xen"),
                   ("/var/lib/xen", "var/lib/xen"), ("/var/log/xen", "var/log/xen"))

_FIRMWARE_TEXT = b"txlibxl simulated host: stand-in firmware, never run\n"


def host_path(root: str, path: str) -> str:
    """Where the compiled-in state path C{path} is under C{root} (C{path}
    itself if it is not one)."""
    for prefix, under in _STATE_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return os.path.join(root, under) + path[len(prefix):]
    return path


def _device_model_launcher() -> bytes:
    """A script running the QMP stand-in with this interpreter and this
    copy of the package."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return (
        "#!/bin/sh\n"
        "# The simulated host's device model, written by txlibxl.sim.host_root:\n"
        "# libxl runs /usr/libexec/xen-qemu-system-i386 for an HVM guest, the\n"
        "# shim sends it here, and this runs the QMP stand-in.\n"
        "PYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH}\n"
        "export PYTHONPATH\n"
        "exec %s -m txlibxl.sim.devicemodel \"$@\"\n" % (shlex.quote(package_parent), shlex.quote(sys.executable))
    ).encode()


def _write_if_changed(path: str, content: bytes, mode: int) -> None:
    try:
        with open(path, "rb") as f:
            if f.read() == content:
                return
    except OSError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def populate_root(root: str) -> None:
    """Create the state directories, link the scripts and write the
    device model's launcher and the firmware under C{root} (idempotent)."""
    for sub in STATE_DIRS:
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    os.makedirs(os.path.dirname(os.path.join(root, DM_FAULTS)), exist_ok=True)
    for sub, content, mode in [(DEVICE_MODEL, _device_model_launcher(), 0o755)] + [
        (f, _FIRMWARE_TEXT, 0o644) for f in FIRMWARE
    ]:
        path = os.path.join(root, sub)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write_if_changed(path, content, mode)
    for sub, target in SCRIPTS.items():
        path = os.path.join(root, sub)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.islink(path) and os.readlink(path) == target:
            continue
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)
