"""
Simulated host processes: :func:`start_simulated_host` spawns one
(``python -m txlibxl.sim run``) with the reactor, waits until it is ready
and connects its control client; :class:`SimulatedHost` is the running
host, and stops it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections import deque
from typing import Any, Deque, Dict, List, Optional

from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .errors import SimulatedHostStartError, SimulatedHostTimeout, SimulatedHostUnavailable
from .scenarios import scenario_path

__all__ = ["SimulatedHost", "read_host_json", "start_simulated_host"]

_log = Logger(namespace="txlibxl.testing")

READY_PREFIX = b"txlibxl-sim ready "
HOST_JSON_VERSION = 1
# sun_path is 108 bytes including the NUL; the longest socket name in a
# run directory is "xenstored.sock".
_MAX_SOCKET_PATH = 107
_LONGEST_SOCKET = "xenstored.sock"
_STDERR_TAIL_LINES = 200




class _HostProcessProtocol(ProcessProtocol):
    """
    Watches a host process: its ready line on stdout, the tail of its
    stderr (always drained so the host never blocks on a full pipe) and
    its end.
    """

    def __init__(self) -> None:
        self.ready: defer.Deferred = defer.Deferred()
        self._stdout = b""
        self._stderr = b""
        self._stderr_tail: Deque[bytes] = deque(maxlen=_STDERR_TAIL_LINES)
        self._ended_waiters: List[defer.Deferred] = []
        self.ended = False
        self.exit_status: Optional[str] = None

    def connectionMade(self) -> None:
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self._stdout += data
        while b"\n" in self._stdout:
            line, self._stdout = self._stdout.split(b"\n", 1)
            if line.startswith(READY_PREFIX) and not self.ready.called:
                path = line[len(READY_PREFIX):].decode("utf-8", "replace").strip()
                self.ready.callback(path)

    def errReceived(self, data: bytes) -> None:
        self._stderr += data
        lines = self._stderr.split(b"\n")
        self._stderr = lines.pop()
        self._stderr_tail.extend(lines)

    def stderr_tail(self) -> str:
        lines = list(self._stderr_tail)
        if self._stderr:
            lines.append(self._stderr)
        return b"\n".join(lines).decode("utf-8", "replace")

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        value = reason.value
        if isinstance(value, error.ProcessDone):
            self.exit_status = "exited with status 0"
        elif isinstance(value, error.ProcessTerminated):
            if value.signal is not None:
                self.exit_status = f"killed by signal {value.signal}"
            else:
                self.exit_status = f"exited with status {value.exitCode}"
        else:
            self.exit_status = str(value)
        if not self.ready.called:
            self.ready.errback(
                SimulatedHostStartError(
                    "the simulated host exited before it was ready",
                    self.stderr_tail(),
                    self.exit_status,
                )
            )
        waiters, self._ended_waiters = self._ended_waiters, []
        for d in waiters:
            d.callback(self.exit_status)

    def when_ended(self) -> defer.Deferred:
        """A new Deferred firing with the exit status once the process ended."""
        if self.ended:
            return defer.succeed(self.exit_status)
        d: defer.Deferred = defer.Deferred()
        self._ended_waiters.append(d)
        return d

    def signal(self, name: str) -> None:
        if self.ended:
            return
        try:
            self.transport.signalProcess(name)
        except error.ProcessExitedAlready:
            pass


def read_host_json(path: str) -> Dict[str, Any]:
    """
    A host's ``host.json`` at C{path}, checked: its version, and the paths
    of its sockets, shim and root (the keys :attr:`SimulatedHost.info`
    has).

    @raise OSError: it cannot be read.
    @raise ValueError: it is not JSON, or not a ``host.json`` this
        version of txlibxl understands.
    """
    with open(path, "rb") as f:
        info = json.load(f)
    if not isinstance(info, dict):
        raise ValueError("host.json is not a JSON object")
    if info.get("version") != HOST_JSON_VERSION:
        raise ValueError(f"host.json version {info.get('version')!r}, expected {HOST_JSON_VERSION}")
    for key in ("xenstored", "hypercall", "control", "shim", "root"):
        if not isinstance(info.get(key), str):
            raise ValueError(f"host.json has no {key!r}")
    return info


def _environment_for(info: Dict[str, Any]) -> Dict[str, str]:
    return {
        "XENSTORED_PATH": info["xenstored"],
        "TXLIBXL_SIM_HYPERCALL": info["hypercall"],
        "TXLIBXL_SIM_ROOT": info["root"],
    }


class SimulatedHost:
    """
    A running simulated host process.

    @ivar control: the connected ``txlibxl.sim.control.ControlClient``;
        create domains, shut them down, inject faults through it.
    @ivar info: the host's ``host.json`` (keys ``version``, ``pid``,
        ``rundir``, ``xenstored``, ``hypercall``, ``control``, ``shim``,
        ``root``).
    @ivar rundir: the host's run directory.
    """

    def __init__(
        self,
        reactor: Any,
        protocol: _HostProcessProtocol,
        control: Any,
        info: Dict[str, Any],
        rundir: str,
        remove_rundir: bool,
    ) -> None:
        self._reactor = reactor
        self._protocol = protocol
        self.control = control
        self.info = info
        self.rundir = rundir
        self._remove_rundir = remove_rundir
        self._stopping: Optional[defer.Deferred] = None
        self._stop_finished = False
        self._stop_result: Any = None
        self._stop_waiters: List[defer.Deferred] = []

    def __repr__(self) -> str:
        return f"<SimulatedHost pid={self.info.get('pid')} rundir={self.rundir!r}>"

    @property
    def shim(self) -> str:
        """Absolute path of the host's built ``xc_*`` shim."""
        return self.info["shim"]

    @property
    def running(self) -> bool:
        """Whether the host process is still alive."""
        return not self._protocol.ended

    def stderr_tail(self) -> str:
        """The last lines the host wrote to stderr (for failure messages)."""
        return self._protocol.stderr_tail()

    def environment(self, preload: bool = False) -> Dict[str, str]:
        """
        The environment variables a libxl process needs to use this host:
        ``XENSTORED_PATH`` (the xenstored socket), ``TXLIBXL_SIM_HYPERCALL``
        (the hypercall socket the shim talks to) and ``TXLIBXL_SIM_ROOT``
        (the root libxl's ``/var`` paths are redirected under).

        @param preload: also set ``LD_PRELOAD`` to the shim (prepended to
            any ``LD_PRELOAD`` of this process), for a separate process
            that links libxenlight.
        """
        env = _environment_for(self.info)
        if preload:
            current = os.environ.get("LD_PRELOAD", "")
            env["LD_PRELOAD"] = self.shim + (" " + current if current else "")
        return env

    def stop(self, grace: float = 5.0) -> defer.Deferred:
        """
        Stop the host and wait for its process to end: first the ``stop``
        control op, then ``SIGTERM`` and then ``SIGKILL``, each after
        C{grace} seconds without an exit.  Removes the run directory only
        if :func:`start_simulated_host` created it and was not asked to
        keep it.  Safe to call more than once; every call's Deferred fires
        (with the exit status string) once the host is gone.
        """
        if self._stopping is None:
            self._stopping = defer.Deferred.fromCoroutine(self._stop(grace))
            self._stopping.addBoth(self._stop_done)
        d: defer.Deferred = defer.Deferred()
        if self._stop_finished:
            self._fire(d)
        else:
            self._stop_waiters.append(d)
        return d

    def _stop_done(self, result: Any) -> None:
        self._stop_finished = True
        self._stop_result = result
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            self._fire(d)

    def _fire(self, d: defer.Deferred) -> None:
        if isinstance(self._stop_result, Failure):
            d.errback(self._stop_result)
        else:
            d.callback(self._stop_result)

    async def _stop(self, grace: float) -> Optional[str]:
        protocol = self._protocol
        if not protocol.ended:
            try:
                await _with_timeout(self._reactor, defer.maybeDeferred(self.control.call, "stop"), grace)
            except Exception:
                # The host may close the connection before replying, or be
                # wedged; the signals below take over.
                pass
        await _disconnect(self.control)
        for signame in (None, "TERM", "KILL"):
            if protocol.ended:
                break
            if signame is not None:
                _log.info("simulated host {pid} did not exit, sending SIG{sig}", pid=self.info.get("pid"), sig=signame)
                protocol.signal(signame)
            try:
                await _with_timeout(self._reactor, protocol.when_ended(), grace)
            except defer.TimeoutError:
                continue
        if not protocol.ended:
            await protocol.when_ended()
        if self._remove_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
        return protocol.exit_status


async def _with_timeout(reactor: Any, d: defer.Deferred, seconds: float) -> Any:
    d.addTimeout(seconds, reactor)
    return await d


async def _disconnect(control: Any) -> None:
    if control is None:
        return
    try:
        await defer.maybeDeferred(control.disconnect)
    except Exception:
        _log.failure("disconnecting the control client failed")


def _check_available() -> None:
    for module in ("txlibxl.sim.__main__", "txlibxl.sim.control"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            raise SimulatedHostUnavailable(f"the simulated host is not installed: no module {module}")


def _package_parent() -> str:
    """The directory holding the ``txlibxl`` package this module came from."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_simulated_host(
    reactor: Optional[Any] = None,
    rundir: Optional[str] = None,
    scenario: Optional[str] = None,
    *,
    timeout: float = 30.0,
    log_level: Optional[str] = None,
    keep_rundir: bool = False,
) -> defer.Deferred:
    """
    Start a simulated host process and connect to its control socket.

    @param reactor: an L{IReactorProcess} and L{IReactorTime} provider (the
        global reactor by default).
    @param rundir: the host's run directory.  By default a fresh temporary
        directory, removed when the host stops (unless C{keep_rundir}).  A
        directory you give is created if needed and never removed.  Its
        socket paths must fit in a Unix socket address (107 bytes).
    @param scenario: a scenario JSON file the host plays from its start,
        or the name of a shipped one (``"demo"`` for
        ``txlibxl/sim/scenarios/demo.json``).
    @param timeout: seconds to wait for the host's ready line; after that
        it is killed and the Deferred fails with L{SimulatedHostTimeout}.
    @param log_level: the host's ``--log-level`` (``info`` or ``debug``).
    @param keep_rundir: keep a temporary run directory after stopping
        (to look at its logs or ``root``).

    @return: a Deferred firing with a L{SimulatedHost}, or failing with
        L{SimulatedHostUnavailable} (the simulator is not installed),
        L{SimulatedHostStartError} (the host exited, or its ``host.json``
        or control socket was unusable; the host's stderr tail is in the
        message) or L{SimulatedHostTimeout}.  Cancelling it kills the host.
    """
    if reactor is None:
        from twisted.internet import reactor as _global_reactor

        reactor = _global_reactor
    if not IReactorProcess.providedBy(reactor) or not IReactorTime.providedBy(reactor):
        raise TypeError(f"start_simulated_host needs a reactor with processes and time, not {reactor!r}")
    if scenario is not None:
        scenario = scenario_path(scenario)
    if log_level is not None and log_level not in ("info", "debug"):
        raise ValueError(f"log_level must be 'info' or 'debug', not {log_level!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    _check_available()

    remove = False
    if rundir is None:
        rundir = tempfile.mkdtemp(prefix="txlibxl-sim-")
        remove = not keep_rundir
    else:
        rundir = os.path.abspath(rundir)
        os.makedirs(rundir, exist_ok=True)
    if len(os.path.join(rundir, _LONGEST_SOCKET).encode()) > _MAX_SOCKET_PATH:
        if remove:
            shutil.rmtree(rundir, ignore_errors=True)
        raise ValueError(
            f"run directory {rundir!r} is too long for Unix socket paths "
            f"(at most {_MAX_SOCKET_PATH - len(_LONGEST_SOCKET) - 1} bytes)"
        )

    # The host dies with this process, even one killed with SIGKILL that
    # never gets to stop it (txlibxl.sim.lifeline).
    args = [sys.executable, "-m", "txlibxl.sim", "run", "--rundir", rundir, "--parent-pid", str(os.getpid())]
    if scenario is not None:
        args += ["--scenario", scenario]
    if log_level is not None:
        args += ["--log-level", log_level]
    env = dict(os.environ)
    # Run the same txlibxl as this process, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_parent(), env.get("PYTHONPATH")) if p)
    # The host must not inherit a preloaded shim or a pointer at another host.
    for name in ("LD_PRELOAD", "XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT"):
        env.pop(name, None)

    protocol = _HostProcessProtocol()
    _log.debug("starting simulated host in {rundir}", rundir=rundir)
    reactor.spawnProcess(protocol, sys.executable, args, env=env, path=rundir)

    async def start() -> SimulatedHost:
        try:
            return await _connect_when_ready(reactor, protocol, rundir, remove, timeout)
        except BaseException:
            # Failed or cancelled: leave no process and no temporary
            # directory behind, then report.
            protocol.signal("KILL")
            await protocol.when_ended()
            if remove:
                shutil.rmtree(rundir, ignore_errors=True)
            raise

    # Cancelling this Deferred cancels what start() awaits; it fires once
    # the cleanup above is done.
    return defer.Deferred.fromCoroutine(start())


async def _connect_when_ready(
    reactor: Any, protocol: _HostProcessProtocol, rundir: str, remove: bool, timeout: float
) -> SimulatedHost:
    timer = reactor.callLater(timeout, protocol.signal, "KILL")
    try:
        path = await protocol.ready
    except SimulatedHostStartError:
        if not timer.active():
            raise SimulatedHostTimeout(
                f"the simulated host was not ready within {timeout} s and was killed",
                protocol.stderr_tail(),
                protocol.exit_status,
            ) from None
        raise
    finally:
        if timer.active():
            timer.cancel()
    try:
        info = read_host_json(path)
    except (OSError, ValueError) as e:
        raise SimulatedHostStartError(f"unusable host.json {path!r}: {e}", protocol.stderr_tail()) from None
    from txlibxl.sim.control import ControlClient

    try:
        control = await ControlClient.connect(reactor, info["control"])
    except Exception as e:
        raise SimulatedHostStartError(
            f"cannot connect to the control socket {info['control']!r}: {e}", protocol.stderr_tail()
        ) from None
    _log.info("simulated host {pid} ready in {rundir}", pid=info.get("pid"), rundir=rundir)
    return SimulatedHost(reactor, protocol, control, info, rundir, remove)
