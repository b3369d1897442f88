"""
Trial fixtures: a fresh simulated host for every test, with this process's
libxenlight pointed at it.
"""
from __future__ import annotations

from typing import Awaitable, Optional

from twisted.internet import defer
from twisted.trial import unittest

from .errors import SimulatedHostUnavailable
from .inprocess import use_simulated_host
from .simhost import SimulatedHost, start_simulated_host

__all__ = ["SimulatedHostMixin", "SimulatedHostTestCase"]



class SimulatedHostMixin:
    """
    Gives each test a fresh simulated host in ``self.host``.

    Mix into a ``twisted.trial.unittest.TestCase`` (or use
    L{SimulatedHostTestCase}).  ``setUp`` returns a Deferred that fires once
    the host is ready and registers its stop as a cleanup, so every test
    leaves no process behind.  If the simulator is not installed the test
    is skipped with the reason.

    Class attributes to override:

    @cvar simulatedHostScenario: a scenario file the host plays, or None.
    @cvar simulatedHostInProcess: also call L{use_simulated_host} so that
        libxenlight in the test process (a ``txlibxl.context.Context``)
        talks to the host; undone in cleanup.  True by default; set it to
        False for tests that only drive separate processes (then the test
        process never loads libxenlight).  If the shim or libxenlight is
        missing the test is skipped with the reason.
    @cvar simulatedHostTimeout: seconds to wait for the host to be ready.
    """

    simulatedHostScenario: Optional[str] = None
    simulatedHostInProcess: bool = True
    simulatedHostTimeout: float = 30.0
    host: SimulatedHost

    def setUp(self) -> Awaitable[None]:  # type: ignore[override]
        result = super().setUp()  # type: ignore[misc]

        async def start() -> None:
            if result is not None:
                await result
            try:
                host = await start_simulated_host(
                    scenario=self.simulatedHostScenario, timeout=self.simulatedHostTimeout
                )
            except SimulatedHostUnavailable as e:
                raise unittest.SkipTest(str(e))
            self.host = host
            self.addCleanup(host.stop)  # type: ignore[attr-defined]
            if self.simulatedHostInProcess:
                try:
                    undo = use_simulated_host(host)
                except SimulatedHostUnavailable as e:
                    raise unittest.SkipTest(str(e))
                self.addCleanup(undo)  # type: ignore[attr-defined]

        return defer.Deferred.fromCoroutine(start())


class SimulatedHostTestCase(SimulatedHostMixin, unittest.TestCase):
    """A trial TestCase whose every test has a fresh simulated host in ``self.host``."""
