"""
Simulated hosts for asyncio programs and tests: the asyncio twin of
:func:`~txlibxl.testing.start_simulated_host`.

::

    from txlibxl.context import Context
    from txlibxl.testing.asyncio_host import simulated_host

    async def main():
        async with simulated_host() as host:          # a host process, used by this process's libxl
            async with await Context.open_asyncio() as ctx:
                dom = await host.control.create_domain(name="web1")
                watch = ctx.watch_domain(dom["domid"])
                await host.control.shutdown(dom["domid"], "poweroff")
                print(await watch.when_shutdown())

:func:`simulated_host` is an async context manager: it starts a host
process (``python -m txlibxl.sim run``, as the Twisted fixture does) with
``asyncio.create_subprocess_exec``, waits for its ready line, connects an
:class:`AsyncioControlClient` to its control socket, points this process's
libxenlight at it (:func:`~txlibxl.testing.use_simulated_host`, with the
same process-wide rules: the shim is loaded before libxenlight, one host
at a time) and, when the block ends, undoes that and stops the host.
Nothing here runs a Twisted reactor.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections import deque
from typing import Any, AsyncIterator, Deque, Dict, Optional

from .errors import SimulatedHostStartError, SimulatedHostTimeout
from .scenarios import scenario_path

__all__ = ["AsyncioControlClient", "AsyncioSimulatedHost", "ControlError", "simulated_host"]

_READY_PREFIX = b"txlibxl-sim ready "
_HOST_JSON_VERSION = 1
_STDERR_TAIL_LINES = 200
# The host's control replies can be large (a list of a thousand domains).
_LINE_LIMIT = 16 * 1024 * 1024


class ControlError(Exception):
    """
    An error reply from the host: ``type`` is the error class name
    (``NoSuchDomain``, ``BadRequest``, ``UnknownOp``, ...), ``message``
    what went wrong.  The same as ``txlibxl.sim.control.ControlError``,
    without Twisted.
    """

    def __init__(self, type: str, message: str) -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message


class AsyncioControlClient:
    """
    A connection to a simulated host's control socket on asyncio: the
    newline-delimited JSON protocol of ``txlibxl.sim.control``, with the
    same named ops as its Twisted ``ControlClient``, each a coroutine
    returning the op's result or raising :class:`ControlError`.  If the
    connection is lost, pending calls raise ``ConnectionError``.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next_id = 0
        self._pending: Dict[int, "asyncio.Future[Any]"] = {}
        self._reading = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, path: str) -> "AsyncioControlClient":
        """Connect to the control socket at C{path}."""
        reader, writer = await asyncio.open_unix_connection(path, limit=_LINE_LIMIT)
        return cls(reader, writer)

    async def _read(self) -> None:
        error: BaseException = ConnectionError("the control connection was closed")
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                reply = json.loads(line)
                waiter = self._pending.pop(reply.get("id"), None)
                if waiter is None or waiter.done():
                    continue
                if reply.get("ok"):
                    waiter.set_result(reply.get("result"))
                else:
                    body = reply.get("error") or {}
                    waiter.set_exception(ControlError(body.get("type", "?"), body.get("message", "")))
        except (OSError, ValueError) as e:
            error = ConnectionError(f"the control connection broke: {e}")
        finally:
            pending, self._pending = self._pending, {}
            for waiter in pending.values():
                if not waiter.done():
                    waiter.set_exception(error)

    async def call(self, op: str, **args: Any) -> Any:
        """Send op C{op} with C{args}; its result."""
        self._next_id += 1
        request_id = self._next_id
        waiter: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        if self._reading.done():
            raise ConnectionError("the control connection is closed")
        self._pending[request_id] = waiter
        self._writer.write(json.dumps(dict(args, id=request_id, op=op)).encode() + b"\n")
        return await waiter

    async def disconnect(self) -> None:
        """Close the connection and wait until it is closed."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading

    # The named ops (see txlibxl.sim.host for their arguments).

    async def ping(self) -> Any:
        return await self.call("ping")

    async def create_domain(self, name: str, **args: Any) -> Any:
        """``{"domid", "uuid", "name"}`` of a new running domain."""
        return await self.call("create_domain", name=name, **args)

    async def create_domains(self, count: int, **args: Any) -> Any:
        return await self.call("create_domains", count=count, **args)

    async def shutdown(self, domid: int, reason: str) -> Any:
        return await self.call("shutdown", domid=domid, reason=reason)

    async def crash(self, domid: int) -> Any:
        return await self.call("crash", domid=domid)

    async def resume(self, domid: int) -> Any:
        return await self.call("resume", domid=domid)

    async def pause(self, domid: int) -> Any:
        return await self.call("pause", domid=domid)

    async def unpause(self, domid: int) -> Any:
        return await self.call("unpause", domid=domid)

    async def destroy(self, domids: Any, mode: str = "burst", **args: Any) -> Any:
        """C{mode="rate"} takes C{rate=} (domains per second)."""
        return await self.call("destroy", domids=list(domids), mode=mode, **args)

    async def eject(self, domid: int, vdev: str) -> Any:
        return await self.call("eject", domid=domid, vdev=vdev)

    async def list(self) -> Any:
        return await self.call("list")

    async def info(self, domid: int) -> Any:
        return await self.call("info", domid=domid)

    async def fault(self, kind: str, **args: Any) -> Any:
        return await self.call("fault", kind=kind, **args)

    async def stop(self) -> Any:
        """Ask the host to exit; its reply (before it exits)."""
        return await self.call("stop")


class AsyncioSimulatedHost:
    """
    A running simulated host process, on asyncio.

    :ivar control: the connected :class:`AsyncioControlClient`.
    :ivar info: the host's ``host.json`` (``xenstored``, ``hypercall``,
        ``control``, ``shim``, ``root``, ``pid``...).
    :ivar rundir: the host's run directory.
    """

    def __init__(self, process: Any, control: AsyncioControlClient, info: Dict[str, Any], rundir: str,
                 stderr_tail: Deque[bytes]) -> None:
        self._process = process
        self.control = control
        self.info = info
        self.rundir = rundir
        self._stderr_tail = stderr_tail

    def __repr__(self) -> str:
        return f"<AsyncioSimulatedHost pid={self.info.get('pid')} rundir={self.rundir!r}>"

    @property
    def shim(self) -> str:
        """Absolute path of the host's built ``xc_*`` shim."""
        return str(self.info["shim"])

    @property
    def running(self) -> bool:
        """Whether the host process is still alive."""
        return self._process.returncode is None

    def stderr_tail(self) -> str:
        """The last lines the host wrote to stderr."""
        return b"".join(self._stderr_tail).decode(errors="replace")

    def environment(self, preload: bool = False) -> Dict[str, str]:
        """
        What a libxl process needs to use this host (as
        :meth:`txlibxl.testing.SimulatedHost.environment`).
        """
        env = {
            "XENSTORED_PATH": self.info["xenstored"],
            "TXLIBXL_SIM_HYPERCALL": self.info["hypercall"],
            "TXLIBXL_SIM_ROOT": self.info["root"],
        }
        if preload:
            current = os.environ.get("LD_PRELOAD", "")
            env["LD_PRELOAD"] = self.shim + (" " + current if current else "")
        return env

    async def stop(self, grace: float = 5.0) -> Optional[int]:
        """
        Stop the host: the ``stop`` op, then ``SIGTERM``, then ``SIGKILL``,
        each after C{grace} seconds without an exit; its exit status.
        """
        if self.running:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.control.call("stop"), grace)
        with contextlib.suppress(Exception):
            await self.control.disconnect()
        for signal in (None, "terminate", "kill"):
            if signal is not None and self.running:
                with contextlib.suppress(ProcessLookupError):
                    getattr(self._process, signal)()
            try:
                await asyncio.wait_for(self._process.wait(), grace)
                break
            except asyncio.TimeoutError:
                continue
        return await self._process.wait()


def _package_parent() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def _drain(stream: asyncio.StreamReader, tail: Deque[bytes]) -> None:
    while True:
        line = await stream.readline()
        if not line:
            return
        tail.append(line)


@contextlib.asynccontextmanager
async def simulated_host(
    scenario: Optional[str] = None, *, timeout: float = 30.0, log_level: Optional[str] = None, point: bool = True
) -> AsyncIterator[AsyncioSimulatedHost]:
    """
    Start a simulated host process for the block, and (with C{point})
    point this process's libxenlight at it.

    :param scenario: a scenario file the host plays from its start, or
        the name of a shipped one.
    :param timeout: seconds to wait for the host's ready line; then it is
        killed and :class:`~txlibxl.testing.SimulatedHostTimeout` raised.
    :param log_level: the host's ``--log-level`` (``info`` or ``debug``).
    :param point: call :func:`~txlibxl.testing.use_simulated_host` for
        the block (libxl contexts opened inside it use this host).
    :raises txlibxl.testing.SimulatedHostStartError: the host exited, or
        its ``host.json`` or control socket was unusable (its stderr tail
        is in the message).
    """
    if scenario is not None:
        scenario = scenario_path(scenario)
    if log_level is not None and log_level not in ("info", "debug"):
        raise ValueError(f"log_level must be 'info' or 'debug', not {log_level!r}")
    rundir = tempfile.mkdtemp(prefix="txlibxl-sim-")
    args = ["-m", "txlibxl.sim", "run", "--rundir", rundir, "--parent-pid", str(os.getpid())]
    if scenario is not None:
        args += ["--scenario", scenario]
    if log_level is not None:
        args += ["--log-level", log_level]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_parent(), env.get("PYTHONPATH")) if p)
    for name in ("LD_PRELOAD", "XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT"):
        env.pop(name, None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=rundir, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    tail: Deque[bytes] = deque(maxlen=_STDERR_TAIL_LINES)
    draining = asyncio.ensure_future(_drain(process.stderr, tail))  # type: ignore[arg-type]
    stdout_tail: Deque[bytes] = deque(maxlen=10)
    host: Optional[AsyncioSimulatedHost] = None
    undo = None
    try:
        host = await _ready(process, rundir, tail, timeout)
        # Whatever the host writes to stdout later must not fill the pipe.
        draining_stdout = asyncio.ensure_future(_drain(process.stdout, stdout_tail))
        if point:
            from .inprocess import use_simulated_host

            undo = use_simulated_host(host)  # type: ignore[arg-type]
        yield host
    finally:
        if undo is not None:
            undo()
        if host is not None:
            await host.stop()
        elif process.returncode is None:
            process.kill()
            await process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await draining
            if host is not None:
                await draining_stdout
        shutil.rmtree(rundir, ignore_errors=True)


async def _ready(process: Any, rundir: str, tail: Deque[bytes], timeout: float) -> AsyncioSimulatedHost:
    def stderr() -> str:
        return b"".join(tail).decode(errors="replace")

    try:
        while True:
            line = await asyncio.wait_for(process.stdout.readline(), timeout)
            if not line:
                await process.wait()
                raise SimulatedHostStartError(
                    "the simulated host exited before it was ready", stderr(), str(process.returncode))
            if line.startswith(_READY_PREFIX):
                path = line[len(_READY_PREFIX):].strip().decode()
                break
    except asyncio.TimeoutError:
        raise SimulatedHostTimeout(
            f"the simulated host was not ready within {timeout} s and was killed", stderr()) from None
    try:
        with open(path, "rb") as f:
            info = json.load(f)
        if info.get("version") != _HOST_JSON_VERSION:
            raise ValueError(f"host.json version {info.get('version')!r}, expected {_HOST_JSON_VERSION}")
        for key in ("xenstored", "hypercall", "control", "shim", "root"):
            if not isinstance(info.get(key), str):
                raise ValueError(f"host.json has no {key!r}")
    except (OSError, ValueError) as e:
        raise SimulatedHostStartError(f"unusable host.json {path!r}: {e}", stderr()) from None
    try:
        control = await AsyncioControlClient.connect(info["control"])
    except OSError as e:
        raise SimulatedHostStartError(f"cannot connect to the control socket {info['control']!r}: {e}", stderr()) from None
    return AsyncioSimulatedHost(process, control, info, rundir, tail)
