"""
What can go wrong when starting a simulated host or pointing this
process's libxenlight at one.
"""
from __future__ import annotations

from typing import Optional

__all__ = [
    "SimulatedHostError",
    "SimulatedHostUnavailable",
    "SimulatedHostStartError",
    "SimulatedHostTimeout",
    "ShimLoadOrderError",
]


class SimulatedHostError(Exception):
    """Base class of this module's errors."""


class SimulatedHostUnavailable(SimulatedHostError):
    """
    The simulated host cannot run here at all (its package or its shim is
    missing).  :class:`SimulatedHostMixin` turns this into a skip.
    """


class SimulatedHostStartError(SimulatedHostError):
    """
    The host process did not become ready: it exited, or it wrote an
    unusable ``host.json``, or its control socket refused us.

    @ivar stderr_tail: the last lines the host wrote to stderr.
    @ivar exit_status: its exit code or signal description, if it ended.
    """

    def __init__(self, message: str, stderr_tail: str = "", exit_status: Optional[str] = None):
        self.stderr_tail = stderr_tail
        self.exit_status = exit_status
        full = message
        if exit_status is not None:
            full += f" (host process {exit_status})"
        if stderr_tail:
            full += "\n--- host stderr (tail) ---\n" + stderr_tail
        super().__init__(full)


class SimulatedHostTimeout(SimulatedHostStartError):
    """The host process did not print its ready line in time (it was killed)."""


class ShimLoadOrderError(SimulatedHostError, RuntimeError):
    """
    libxenlight is already loaded in this process without the simulated
    host's shim, so its ``xc_*`` calls would go to the real libxenctrl.
    Use the fixture before opening the first libxl context.
    """
