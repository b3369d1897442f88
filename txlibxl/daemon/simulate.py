"""
``--simulate``: run ``twistd libxl-events`` against a simulated Xen host.

:class:`SimulatedHostRunner` starts a simulated host (``python -m
txlibxl.sim run``) as a child process and points this process's
libxenlight at it (its ``xc_*`` shim is loaded before libxenlight, see
:func:`txlibxl.testing.use_simulated_host`), and stops it at the end.  The
service calls :meth:`~SimulatedHostRunner.start` before opening its first
libxl context and :meth:`~SimulatedHostRunner.stop` after closing its last.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger

from .startup import StartupError

from txlibxl.testing.scenarios import scenario_path, shipped_scenarios

__all__ = ["SimulatedHostRunner", "shipped_scenarios", "scenario_path"]


class SimulatedHostRunner:
    """
    A simulated host for the service's lifetime.

    :param scenario: a scenario file or shipped scenario name, or ``None``
        for a host with Domain-0 only.
    :param rundir: the host's run directory (kept afterwards), or ``None``
        for a temporary one (removed).
    """

    _log = Logger(namespace="txlibxl.daemon.simulate")

    def __init__(self, reactor: Any, scenario: Optional[str] = None, rundir: Optional[str] = None) -> None:
        self._reactor = reactor
        self.scenario = scenario_path(scenario) if scenario else None
        self.rundir = rundir
        self.host: Any = None
        self._undo: Optional[Callable[[], None]] = None

    def start(self) -> defer.Deferred:
        """Start the host and point libxenlight at it."""
        from txlibxl.testing.simhost import start_simulated_host

        d = start_simulated_host(self._reactor, rundir=self.rundir, scenario=self.scenario)
        d.addCallbacks(self._started, self._not_started)
        return d

    def _not_started(self, failure: Any) -> None:
        from txlibxl.testing.errors import SimulatedHostError

        if not failure.check(SimulatedHostError):
            return failure
        error = failure.value
        # The first line of the message, and the host's last word.
        summary = str(error).split("\n", 1)[0]
        tail = [line for line in (getattr(error, "stderr_tail", "") or "").splitlines() if line.strip()]
        if tail:
            summary += f"; it said: {tail[-1].strip()}"
        raise StartupError(f"the simulated host did not start: {summary}")

    def _started(self, host: Any) -> None:
        from txlibxl.testing.inprocess import use_simulated_host

        self.host = host
        self.rundir = host.rundir
        try:
            self._undo = use_simulated_host(host)
        except BaseException:
            host.stop()
            raise
        self._log.info(
            "simulated Xen host {pid} running in {rundir}{scenario}",
            pid=host.info.get("pid"),
            rundir=host.rundir,
            scenario=f", playing {self.scenario}" if self.scenario else "",
        )

    def stop(self) -> defer.Deferred:
        """Stop the host (if it started); fires when its process is gone."""
        if self._undo is not None:
            self._undo()
            self._undo = None
        host, self.host = self.host, None
        if host is None:
            return defer.succeed(None)
        return host.stop()
