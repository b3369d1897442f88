"""
The toolstack's half of a simulated domain: the xenstore tree libxl writes.

When libxl 4.17 creates a domain it writes, in dom0's name, a fixed set of
xenstore nodes (``libxl__domain_make``, ``libxl__build_post``,
``libxl__device_generic_add`` for the console, each disk and each vif) and
introduces the domain to xenstored.  Everything that libxl later *reads*
from those trees on its list, info, shutdown, destroy and disk-eject paths
comes from here, so the real libxl finds the layout it wrote itself.

This package has two parts:

* pure *layout* functions (:func:`dom0_layout`, :func:`domain_layout`,
  :func:`vdev_to_devid`): the nodes, values and permissions, as data;
* :class:`Toolstack`, which applies a layout to a store, keeps the registry
  of the domains it created (names are unique; devices are remembered for
  the agents), and tears the trees down again the way another toolstack
  would (``teardown``).

Permissions use the xenstore wire notation: a tuple of ``"<letter><domid>"``
strings whose first entry names the owner and the access of everybody else
(``n`` none, ``r`` read, ``w`` write, ``b`` both), as in ``("n0", "r5")``.
A node whose ``perms`` is ``None`` inherits its parent's, which is what
xenstored does for a node that dom0 creates with a plain write.
"""
from .toolstack import (
    HOTPLUG_SCRIPT,
    XENBUS_CLOSED,
    XENBUS_CLOSING,
    XENBUS_CONNECTED,
    XENBUS_INITIALISING,
    Device,
    DiskSpec,
    DomainSpec,
    GuestRecord,
    Node,
    Toolstack,
    devices_of,
    dom0_layout,
    domain_layout,
    vdev_to_devid,
)

__all__ = [
    "Node",
    "DiskSpec",
    "DomainSpec",
    "Device",
    "GuestRecord",
    "HOTPLUG_SCRIPT",
    "XENBUS_INITIALISING",
    "XENBUS_CONNECTED",
    "XENBUS_CLOSING",
    "XENBUS_CLOSED",
    "vdev_to_devid",
    "dom0_layout",
    "domain_layout",
    "devices_of",
    "Toolstack",
]
