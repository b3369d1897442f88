"""
Run the real libxenlight against a simulated Xen host: start hosts, point
this process's libxl at one, and trial fixtures that do both.

A *simulated host* is a separate process (``python -m txlibxl.sim run``)
holding a xenstored, a hypervisor model, guest and backend agents and a
control plane (see ``txlibxl.sim``).  This module starts and stops such
processes and points libxenlight at one of them, so that trial tests can
exercise real libxl code paths on a machine without Xen::

    from txlibxl.testing import SimulatedHostTestCase

    class ShutdownTests(SimulatedHostTestCase):
        async def test_guest_poweroff_is_reported(self):
            dom = await self.host.control.create_domain(name="web1")
            ...                      # watch it with txlibxl or a C client
            await self.host.control.shutdown(dom["domid"], "poweroff")

The pieces:

:func:`start_simulated_host`
    Spawns a host process with the reactor, waits for it to be ready and
    connects a control client: ``Deferred[SimulatedHost]``.

:class:`SimulatedHost`
    The running host: ``control`` (a ``txlibxl.sim.control.ControlClient``),
    ``info`` (its ``host.json``), ``rundir``, :meth:`~SimulatedHost.environment`
    (what a libxl process needs to find it) and :meth:`~SimulatedHost.stop`.

:func:`use_simulated_host`
    Points the libxenlight *in this process* at a host (a
    :class:`SimulatedHost`, or the run directory of one any process started,
    ``python -m txlibxl.sim run --rundir DIR``): loads the host's
    ``xc_*`` shim before libxenlight, sets the environment and redirects
    libxl's hard-coded ``/var/run/xen``, ``/run/xen`` and ``/var/lib/xen``
    under the host's root.  Returns a callable that undoes the environment
    change.

:class:`SimulatedHostMixin`, :class:`SimulatedHostTestCase`
    A trial base that gives every test a fresh host in ``self.host`` and
    stops it after the test.

What libxl needs, and root versus non-root
------------------------------------------
libxl finds xenstored through ``XENSTORED_PATH`` and the simulated
hypervisor through the shim, which reads ``TXLIBXL_SIM_HYPERCALL``; the
path redirection root is ``TXLIBXL_SIM_ROOT``.  Every path the host uses
lives in its run directory (a fresh temporary directory unless you give
one), and libxl's own state files go under ``<rundir>/root`` thanks to the
redirection, so **nothing beyond that is needed to run as an unprivileged
user**: no ``/var/run/xen``, no ``/dev/xen``, no capabilities.  The user
needs only read access to the installed package (including the built
``_xcshim`` shared object) and write access to the temporary directory.

Separate processes (a C toolstack, ``xl``) need the same variables plus
``LD_PRELOAD`` naming the shim: ``host.environment(preload=True)``; if they
want the path redirection they call the shim's ``txsim_redirect_paths``
themselves (the test client ``tests/cclient/cclient.c`` shows how).

Limits
------
The shim and the path redirection are process-wide: one process's
libxenlight talks to one host at a time.  :func:`use_simulated_host` may
be called again to re-point it at another host (between tests), but a
``libxl_ctx`` opened before that keeps its xenstore connection to the old
host.  The shim must be loaded before libxenlight: use the fixture before
the first libxl context is opened in the process.
"""
from __future__ import annotations

from .errors import (
    ShimLoadOrderError,
    SimulatedHostError,
    SimulatedHostStartError,
    SimulatedHostTimeout,
    SimulatedHostUnavailable,
)
from .inprocess import use_simulated_host
from .simhost import SimulatedHost, start_simulated_host

__all__ = [
    "SimulatedHost",
    "SimulatedHostError",
    "SimulatedHostUnavailable",
    "SimulatedHostStartError",
    "SimulatedHostTimeout",
    "ShimLoadOrderError",
    "start_simulated_host",
    "use_simulated_host",
    "SimulatedHostMixin",
    "SimulatedHostTestCase",
]


def __getattr__(name: str) -> object:
    # The trial fixtures import twisted.trial; a process that only starts
    # hosts (twistd libxl-events --simulate) never needs it.
    if name in ("SimulatedHostMixin", "SimulatedHostTestCase"):
        from . import trial

        return getattr(trial, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
