"""
The simulated host process (``python -m txlibxl.sim run``).

:func:`serve` makes a :class:`~txlibxl.sim.host.SimHost`, puts the
xenstored, the hypercall server and the control server on the run
directory's sockets, lays out the host's root
(:mod:`txlibxl.sim.host_root`), writes ``host.json`` atomically, prints the
ready line and runs until the ``stop`` op or SIGTERM/SIGINT; then it closes
every connection and removes its sockets.  See
``notes/sim-host-protocol.md`` for the contract.
"""
import glob
import importlib.util
import json
import os
import sys
from typing import Any, Dict, Optional

from twisted.internet import defer
from twisted.logger import Logger

from . import hypercalls
from .control import ControlServer
from .host import SimHost
from .host_root import populate_root
from .scenario import ScenarioError, ScenarioRunner
from .scenario import load as load_scenario

__all__ = ["serve", "shim_path", "HOST_JSON_VERSION", "READY_PREFIX"]

log = Logger()

HOST_JSON_VERSION = 1
READY_PREFIX = "txlibxl-sim ready "


def shim_path() -> Optional[str]:
    """The absolute path of the built ``_xcshim`` shared object, if any."""
    try:
        spec = importlib.util.find_spec("txlibxl.sim._xcshim")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and os.path.isfile(spec.origin):
        return os.path.abspath(spec.origin)
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(glob.glob(os.path.join(here, "_xcshim*.so")))
    return found[0] if found else None


def _raise_file_limit(most: int = 65536) -> None:
    """Each HVM domain the host makes has a QMP socket of its own: allow
    as many open files as the system lets this process have (up to
    C{most})."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = most if hard == resource.RLIM_INFINITY else min(hard, most)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ImportError, ValueError, OSError):
        pass


def _write_json_atomically(path: str, data: Dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


async def serve(reactor, rundir: str, scenario: Optional[str] = None, stdout=None, debug: bool = False) -> int:
    """
    Run the host process in C{rundir} until the stop op or the reactor
    stops (SIGTERM/SIGINT).  Returns the exit status: 0, or 1 if it could
    not start.
    """
    stdout = stdout or sys.stdout
    rundir = os.path.abspath(rundir)
    shim = shim_path()
    if shim is None:
        log.error("the xc_* shim is not built (run: pip install --no-build-isolation -e .)")
        return 1
    try:
        loaded = load_scenario(scenario) if scenario else None
    except ScenarioError as e:
        log.error("{error}", error=str(e))
        return 1
    root = os.path.join(rundir, "root")
    populate_root(root)
    _raise_file_limit()
    paths = {name: os.path.join(rundir, name + ".sock") for name in ("xenstored", "hypercall", "control")}
    for path in paths.values():
        if os.path.exists(path):
            os.unlink(path)

    host = SimHost(reactor, root=root)
    ports = []
    host.start_xenstored(paths["xenstored"])
    ports.append(hypercalls.listen(reactor, host.hypervisor, paths["hypercall"], debug=debug,
                                   on_created=host.domain_built))
    control_factory = ControlServer(host.handlers())
    ports.append(reactor.listenUNIX(paths["control"], control_factory))

    finished = defer.Deferred()
    cleaned = []

    async def clean_up() -> None:
        if cleaned:
            return
        cleaned.append(True)
        log.info("simulated host stopping")
        host.close()
        if host.xenstored_port is not None:
            host._fault_die()
        for port in ports:
            factory = port.factory
            await defer.maybeDeferred(port.stopListening)
            if hasattr(factory, "close"):
                factory.close()
        for path in paths.values():
            if os.path.exists(path):
                os.unlink(path)

    def on_reactor_shutdown() -> defer.Deferred:
        return defer.ensureDeferred(clean_up())

    trigger = reactor.addSystemEventTrigger("before", "shutdown", on_reactor_shutdown)
    host.stop_requested.addCallback(lambda _: finished.callback(None) if not finished.called else None)

    info = {
        "version": HOST_JSON_VERSION,
        "pid": os.getpid(),
        "rundir": rundir,
        "xenstored": paths["xenstored"],
        "hypercall": paths["hypercall"],
        "control": paths["control"],
        "shim": shim,
        "root": root,
    }
    host_json = os.path.join(rundir, "host.json")
    _write_json_atomically(host_json, info)
    stdout.write(READY_PREFIX + host_json + "\n")
    stdout.flush()
    log.info("simulated host ready in {rundir}", rundir=rundir)

    if loaded is not None:
        runner = ScenarioRunner(reactor, host.call)
        played = host._track(runner.run(loaded))
        played.addCallbacks(
            lambda _: log.info("scenario {name} played", name=loaded.name),
            lambda f: None if f.check(defer.CancelledError) else log.error(
                "scenario {name} failed: {why}", name=loaded.name, why=f.getErrorMessage()
            ),
        )

    await finished
    reactor.removeSystemEventTrigger(trigger)
    await clean_up()
    return 0
