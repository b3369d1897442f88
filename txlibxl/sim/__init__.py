"""A simulated Xen host for the real libxenlight.

The simulator runs as its own process: a xenstored speaking the real wire
protocol, a hypervisor model, guest and backend agents and a control plane.
libxenlight meets it only where it would meet real Xen: the xenstore socket
and the ``xc_*`` calls, which the C shim (``_xcshim``) answers from here.

The simulator never imports txlibxl's client side (``txlibxl.context``,
``txlibxl._libxl``, ``txlibxl.testing``, ...): only ``txlibxl.sim`` and
third-party packages.

The models hold the host's state and do no I/O; each is a subpackage split
by job, whose ``__init__`` is the place to import from:

* :mod:`txlibxl.sim.store`: the xenstore tree, permissions, transactions,
  watches and domains, as C xenstored 4.17 keeps them;
* :mod:`txlibxl.sim.hypervisor`: the domain table Xen keeps, its
  hypercalls, and when xenstored fires ``@releaseDomain``;
* :mod:`txlibxl.sim.toolstack`: the xenstore trees libxl and the rest of
  the host write for a domain, and the toolstack that writes them;
* :mod:`txlibxl.sim.savestream`: the stream a save writes into libxl's
  (the format, a reader and a writer).

The servers put the models on sockets:

* :mod:`txlibxl.sim.xenstored` (with the codec :mod:`txlibxl.sim.wire`):
  the xenstore socket libxenstore connects to;
* :mod:`txlibxl.sim.hypercalls`: the socket the shim's ``xc_*`` calls use
  (its domain-building ops in :mod:`txlibxl.sim.hypercalls_build`, its
  save and restore ops in :mod:`txlibxl.sim.hypercalls_save`);
* :mod:`txlibxl.sim.control`: the control plane (JSON lines), whose error
  types are in :mod:`txlibxl.sim.errors`.

And around them:

* :mod:`txlibxl.sim.agents`: the guests, backends and QEMU that answer
  what libxl writes;
* :mod:`txlibxl.sim.devicemodel`: an HVM guest's device model, a QMP
  stand-in libxl spawns in QEMU's place; :mod:`txlibxl.sim.host_device_models`:
  the same played by the host for the HVM domains it makes;
* :mod:`txlibxl.sim.built_domains` and :mod:`txlibxl.sim.xenbus`: what the
  host plays for a domain a toolstack builds through the hypercall
  interface (dom0's backends and the guest's frontends, xenconsoled, the
  guest's balloon and vCPU hotplug);
* :mod:`txlibxl.sim.host`: everything composed into one host and its
  control ops; :mod:`txlibxl.sim.host_process`: the host process;
  :mod:`txlibxl.sim.host_root`: the part of the filesystem libxl reaches
  by compiled-in paths (its state directories, the hotplug scripts, the
  device model and the firmware);
* :mod:`txlibxl.sim.scenario`: timed sequences of control ops;
* ``python -m txlibxl.sim`` (:mod:`txlibxl.sim.__main__`): run a host, or
  talk to one.
"""
