"""A simulated Xen host for the real libxenlight.

The simulator runs as its own process: a xenstored speaking the real wire
protocol, a hypervisor model, guest and backend agents and a control plane.
libxenlight meets it only where it would meet real Xen: the xenstore socket
and the ``xc_*`` calls, which the C shim (``_xcshim``) answers from here.
"""
