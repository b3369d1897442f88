"""
The toolstack's half of a simulated domain: the xenstore tree libxl writes.

When libxl 4.17 creates a domain it writes, in dom0's name, a fixed set of
xenstore nodes (``libxl__domain_make``, ``libxl__build_post``,
``libxl__device_generic_add`` for the console, each disk and each vif) and
introduces the domain to xenstored.  Everything that libxl later *reads*
from those trees on its list, info, shutdown, destroy and disk-eject paths
comes from here, so the real libxl finds the layout it wrote itself.

This package has two parts: pure *layout* functions that give the nodes,
values and permissions as data, and the :class:`Toolstack`, which applies a
layout to a store, keeps the registry of the domains it created (names are
unique; devices are remembered for the agents), and tears the trees down
again the way another toolstack would (``teardown``).  By module:

* :mod:`.specs`: :class:`DomainSpec` and :class:`DiskSpec`, a
  ``create_domain`` request validated;
* :mod:`.vdev`: :func:`vdev_to_devid`, libxl's disk numbering;
* :mod:`.devices`: :func:`devices_of`, :class:`Device` and
  :class:`GuestRecord`, what is remembered of a created domain;
* :mod:`.nodes`: :class:`Node`, the permission notation and the xenbus
  states, the vocabulary of the layouts;
* :mod:`.libxl_layout`: :func:`domain_layout`, the tree *libxl* writes for
  a new domain (the simulator writes it in libxl's place);
* :mod:`.host_layout`: what the *rest of the host* writes: dom0's entries
  (:func:`dom0_layout`), the nodes blkback and the hotplug script add, and
  :data:`HOTPLUG_SCRIPT`;
* :mod:`.saved_config`: the configuration libxl saves for a domain it
  creates (``/var/lib/xen/userdata-d.<domid>.<uuid>.libxl-json``), which
  ``xl list -l`` reads back;
* :mod:`.toolstack`: the :class:`Toolstack`.

A subpackage, because these are the parts of one job (giving libxl the
tree it expects) and the layouts will grow as the simulator serves more of
libxl.  Import from here; the errors the toolstack raises are in
:mod:`txlibxl.sim.errors`.
"""
from .devices import Device, GuestRecord, devices_of
from .host_layout import HOTPLUG_SCRIPT, dom0_layout
from .libxl_layout import domain_layout
from .nodes import XENBUS_CLOSED, XENBUS_CLOSING, XENBUS_CONNECTED, XENBUS_INITIALISING, Node
from .specs import DiskSpec, DomainSpec, VifSpec
from .toolstack import Toolstack
from .vdev import vdev_to_devid

__all__ = [
    "Node",
    "DiskSpec",
    "DomainSpec",
    "VifSpec",
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
