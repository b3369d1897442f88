"""
libxl domain configurations for tests, in libxl's own JSON shape (what
``xl -N create`` prints and ``libxl_domain_config_from_json`` reads), and
the checks that a simulated host kept nothing of a domain.
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Any, Dict, List, Optional, Sequence

__all__ = [
    "disk",
    "domain_config",
    "leftover_processes",
    "nic",
    "saved_configs",
    "write_json",
]


def disk(target: str, vdev: str = "xvda", backend: str = "phy") -> Dict[str, Any]:
    """A raw, writable disk on C{target} (a block device or a file)."""
    return {"pdev_path": target, "vdev": vdev, "backend": backend, "format": "raw", "readwrite": 1}


def nic(devid: int, mac: Optional[str] = None, bridge: str = "xenbr0") -> Dict[str, Any]:
    return {"devid": devid, "mac": mac or "00:16:3e:5e:00:%02x" % devid, "bridge": bridge}


def domain_config(
    name: str,
    kernel: str,
    type: str = "pv",
    memory_kb: int = 262144,
    vcpus: int = 2,
    disks: Sequence[Dict[str, Any]] = (),
    nics: Sequence[Dict[str, Any]] = (),
    uuid_: Optional[str] = None,
) -> Dict[str, Any]:
    """A PV or PVH guest booting C{kernel}, with its own UUID (libxl makes
    none: a config without one gets the nil UUID)."""
    return {
        "c_info": {
            "type": type,
            "name": name,
            "uuid": uuid_ or str(uuid.uuid4()),
            "run_hotplug_scripts": "True",
        },
        "b_info": {
            "max_vcpus": vcpus,
            "avail_vcpus": list(range(vcpus)),
            "max_memkb": memory_kb,
            "target_memkb": memory_kb,
            "kernel": kernel,
            "type.%s" % type: {},
        },
        "disks": list(disks),
        "nics": list(nics),
        "on_reboot": "restart",
    }


def write_json(directory: str, name: str, value: Any) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name + ".json")
    with open(path, "w") as f:
        json.dump(value, f)
    return path


def saved_configs(root: str) -> Dict[str, Any]:
    """The configurations libxl saved under the host's root
    (``/var/lib/xen/userdata-d.<domid>.<uuid>.libxl-json``), by file name.
    libxl writes them with their terminating NUL."""
    directory = os.path.join(root, "var", "lib", "xen")
    found = {}
    for entry in sorted(os.listdir(directory)) if os.path.isdir(directory) else ():
        if entry.startswith("userdata-d.") and entry.endswith(".libxl-json"):
            with open(os.path.join(directory, entry)) as f:
                found[entry] = json.loads(f.read().rstrip("\0"))
    return found


def leftover_processes(hypercall_socket: str) -> List[str]:
    """Processes still running with this host's environment (libxl's
    children, an xl monitor...): their command lines."""
    marker = ("TXLIBXL_SIM_HYPERCALL=%s" % hypercall_socket).encode()
    left = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                if marker not in f.read().split(b"\0"):
                    continue
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open("/proc/%s/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        left.append("%s: %s" % (pid, cmdline))
    return left
