"""
``python -m benchmarks.discovery``: how soon ``twistd libxl-events``
publishes a new domain after xenstored's ``@introduceDomain``.

The daemon runs as operators run it (``twistd -n libxl-events --simulate
--output -``), its simulated host playing nothing; this process drives the
host through its control socket and watches ``@introduceDomain`` itself,
on a libxenstore connection of its own to the same xenstored (txlibxl's
:class:`~txlibxl.loop.reactor_xenstore.XenstoreWatcher`).  For each of N
domains, created one after the other (every other one paused, as a domain
being built is):

* ``introduced``: the wall-clock time this process's watch read the
  firing (xenstored sends it to every watcher in the same turn);
* ``published``: the record's own ``time`` (the daemon's wall clock when
  it published it; same machine, same clock);
* ``received``: when this process read the record's JSON line.

It reports ``published - introduced`` and ``received - introduced``
(median, 90th percentile, max, in milliseconds) and writes them to
``benchmarks/results/discovery.json`` and the docs' table
``docs/performance/discovery.inc``.  The safety-net rescan is set to
60 s, so any record it found would show as a latency of seconds.

    .venv/bin/python -m benchmarks.discovery [--domains 50] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer, task
from twisted.internet.protocol import ProcessProtocol

from .runner import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "results", "discovery.json")
DEFAULT_INC = os.path.join(ROOT, "docs", "performance", "discovery.inc")
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


class _Daemon(ProcessProtocol):
    """The daemon's JSON lines, stamped as they arrive."""

    def __init__(self) -> None:
        self._buffer = b""
        self.records: List[Dict[str, Any]] = []
        self.ended: defer.Deferred = defer.Deferred()
        self._waiters: List[Any] = []

    def outReceived(self, data: bytes) -> None:
        now = time.time()
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            record = json.loads(line)
            record["_received"] = now
            self.records.append(record)
        for predicate, d in list(self._waiters):
            found = [r for r in self.records if predicate(r)]
            if found:
                self._waiters.remove((predicate, d))
                d.callback(found[0])

    def wait_for(self, predicate: Any, reactor: Any, timeout: float = 30.0) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((predicate, d))
        self.outReceived(b"")
        return d.addTimeout(timeout, reactor)

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


def _parse_time(text: str) -> float:
    import datetime

    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _summary(values: Sequence[float]) -> Dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(p90 * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "min_ms": round(ordered[0] * 1000, 3),
    }


async def measure(reactor: Any, domains: int, progress: Any = print) -> Dict[str, Any]:
    from txlibxl.sim.control import ControlClient

    tmp = tempfile.mkdtemp(prefix="txlx-discovery-", dir="/tmp")
    rundir = os.path.join(tmp, "host")
    ready = os.path.join(tmp, "ready.json")
    daemon = _Daemon()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    for name in ("LD_PRELOAD", "XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT"):
        env.pop(name, None)
    args = TWISTD + [
        "-n", "--pidfile=", "--logfile", os.path.join(tmp, "twistd.log"),
        "libxl-events", "--simulate", "--simulate-rundir", rundir, "--output", "-",
        "--ready-file", ready, "--rescan-interval", "60",
    ]
    process = reactor.spawnProcess(daemon, sys.executable, args, env=env, path=tmp)
    watcher = None
    control = None
    try:
        for _ in range(600):
            if os.path.exists(ready):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        else:
            raise RuntimeError("the daemon did not become ready")
        with open(os.path.join(rundir, "host.json")) as f:
            host = json.load(f)
        control = await ControlClient.connect(reactor, host["control"])

        # A watcher of our own on the same xenstored.
        os.environ["XENSTORED_PATH"] = host["xenstored"]
        from txlibxl._libxl.xenstore import XenstoreConnection
        from txlibxl.loop.reactor_xenstore import XenstoreWatcher

        introduced: List[float] = []
        watcher = XenstoreWatcher(
            reactor, XenstoreConnection.open(), lambda path, token: introduced.append(time.time()), lambda e: None
        )
        watcher.start(["@introduceDomain"])
        await task.deferLater(reactor, 0.2, lambda: None)
        del introduced[:]

        samples = []
        for i in range(domains):
            before = len(introduced)
            paused = i % 2 == 1
            created = await control.create_domain(name=f"disc{i}", paused=paused)
            record = await daemon.wait_for(
                lambda r, u=created["uuid"]: r["type"] == "new" and r["uuid"] == u, reactor
            )
            for _ in range(100):
                if len(introduced) > before:
                    break
                await task.deferLater(reactor, 0.01, lambda: None)
            t_intro = introduced[before]
            samples.append(
                {
                    "paused": paused,
                    "published": _parse_time(record["time"]) - t_intro,
                    "received": record["_received"] - t_intro,
                }
            )
            await control.destroy([created["domid"]])
            await task.deferLater(reactor, 0.05, lambda: None)
        progress(f"discovery: {domains} domains measured")
    finally:
        if watcher is not None:
            watcher.stop()
        if control is not None:
            await control.disconnect()
        if not daemon.ended.called:
            process.signalProcess("TERM")
            await daemon.ended
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "schema": 1,
        "scenario": "discovery",
        "method": (
            "twistd libxl-events --simulate --output - (rescan 60 s); N domains created one at a time "
            "(every other one paused); latency from this process's own @introduceDomain watch firing "
            "(time.time()) to the record's time (published) and to reading its JSON line (received)"
        ),
        "domains": domains,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "published": _summary([s["published"] for s in samples]),
        "received": _summary([s["received"] for s in samples]),
        "paused_published": _summary([s["published"] for s in samples if s["paused"]] or [0.0]),
        "samples": samples,
    }


def render_inc(results: Dict[str, Any]) -> str:
    """The docs' table of a run."""
    rows = [
        ("published, all domains", results["published"]),
        ("published, paused domains", results["paused_published"]),
        ("received (JSON line read)", results["received"]),
    ]
    load = ", ".join(f"{x:.2f}" for x in results["machine"]["load"])
    lines = [
        f"{results['domains']} domains, {results['machine']['cpus']} CPUs, load average {load} at the end.",
        "",
        ".. list-table:: @introduceDomain to the new record, milliseconds",
        "   :header-rows: 1",
        "",
        "   * - ",
        "     - median",
        "     - 90th percentile",
        "     - max",
    ]
    for name, summary in rows:
        lines += [f"   * - {name}", f"     - {summary['median_ms']:.2f}", f"     - {summary['p90_ms']:.2f}", f"     - {summary['max_ms']:.2f}"]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.discovery", description=__doc__.split("\n")[1])
    p.add_argument("--domains", type=int, default=50, help="domains to create, one at a time (50)")
    p.add_argument("--out", default=DEFAULT_OUT, help="the JSON results file")
    p.add_argument("--docs", default=DEFAULT_INC, help="the docs' table ('' to skip)")
    args = p.parse_args(argv)

    async def run(reactor: Any) -> None:
        results = await measure(reactor, args.domains, lambda text: print(text, file=sys.stderr))
        write_json(results, args.out)
        if args.docs:
            with open(args.docs, "w") as f:
                f.write(render_inc(results))
        summary = {k: results[k] for k in ("domains", "published", "received", "paused_published")}
        print(json.dumps(summary, indent=1))

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
