"""
A stand-in for an HVM guest's device model (QEMU) on the simulated host.

libxl drives an HVM guest's QEMU over QMP, a JSON protocol on a Unix
socket (``/var/run/xen/qmp-libxl-<domid>``), and waits for QEMU to say in
xenstore that it runs.  The stand-in answers what libxl 4.17 asks on its
HVM paths, from a model of the machine that has no guest behind it: the
run state, the block devices with their media and trays, the file
descriptors passed to it.  It does not emulate anything: no CPU, memory,
block layer, display, network, USB or PCI.

By module:

* :mod:`.cmdline`: the QEMU command line libxl writes, parsed;
* :mod:`.model`: :class:`~.model.DeviceModel`, the machine as QMP sees it;
* :mod:`.commands`: the QMP commands it answers, with QEMU's arguments
  and errors;
* :mod:`.qmp`: :class:`~.qmp.QmpSession`, one QMP conversation, without
  I/O (greeting, negotiation, framing, errors, events, passed fds);
* :mod:`.server`: QMP on Unix sockets with Twisted;
* :mod:`.xs_client`: the little xenstore client the process needs;
* :mod:`.standin`: the process libxl spawns (``python -m
  txlibxl.sim.devicemodel``).

The host plays the same model and sessions itself for the HVM domains it
makes (:mod:`txlibxl.sim.host_device_models`).  Like the rest of the
simulator, nothing here imports txlibxl's client side; the package's
``__init__`` imports nothing, so that the process starts quickly.
"""
