"""
What the rest of the host writes into xenstore, as opposed to libxl.

On a real host libxl is not the only writer: ``xen-init-dom0`` writes
dom0's entries at boot (:func:`dom0_layout`), and once a disk's backend
connects, blkback and the hotplug script add their nodes to it
(:func:`disk_backend_nodes`).  The hotplug script the backends name is
:data:`HOTPLUG_SCRIPT`, shipped with the simulator.

These stay the simulator's to write even when libxl's own create path
writes :mod:`~txlibxl.sim.toolstack.libxl_layout` itself.
"""
import os
from typing import List

from .devices import Device
from .nodes import Node
from .specs import DiskSpec

__all__ = ["HOTPLUG_SCRIPT", "dom0_layout", "disk_backend_nodes"]

#: The hotplug script written into every backend's ``script`` node; libxl
#: fork+execs it with ``remove`` (or ``offline`` for a vif) on destroy.
HOTPLUG_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "hotplug")


def dom0_layout() -> List[Node]:
    """
    The nodes a freshly booted dom0 has (``xen-init-dom0``): its domid and
    name, and the cpupool entry.  Dom0 has no ``vm`` node on a real host.
    """
    return [
        Node("/local/domain/0/domid", "0"),
        Node("/local/domain/0/name", "Domain-0"),
        Node("/local/pool/0/name", "Pool-0"),
    ]


def disk_backend_nodes(device: Device, disk: DiskSpec) -> List[Node]:
    """What blkback and the hotplug script add once the disk is connected."""
    be = device.backend
    return [
        Node(be + "/hotplug-status", "connected"),
        Node(be + "/physical-device", "1:3"),
        Node(be + "/sectors", "0"),
        Node(be + "/sector-size", "512"),
        Node(be + "/info", "5" if disk.cdrom else "0"),
    ]
