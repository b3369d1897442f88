"""
The benchmark scenarios: the C client and the txlibxl client, alternating,
on one simulated host.

:func:`run_benchmarks` starts a simulated host, builds the C client
(``tests/cclient``) and runs every scenario of a :class:`Config` for both
clients in turn (C, Python, C, Python...), each client in its own process
(``cclient`` and ``python -m benchmarks.pyclient``) with the same commands.
The death storm also runs the Python floor, ``python -m
benchmarks.bindingclient``, and txlibxl on a plain asyncio loop, ``python
-m benchmarks.asyncioclient`` (see :data:`STORM_CLIENTS`).  It returns the
results as a JSON-able dict (see :data:`SCHEMA_VERSION` and
``docs/performance.rst``), with the machine's load average before and
after the run.

Timestamps are wall-clock (``time.time()`` / ``gettimeofday``) on one
machine: the simulated host stamps the moment it applied a change
(``changed_at`` in its ``shutdown`` and ``destroy(with_time=True)``
replies) and the clients stamp the moment an event reached its waiter.
CPU times are the client's own (``getrusage`` before and after, printed by
the client) and the simulated host's (``/proc/<pid>/stat`` before and
after, read here).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

import attr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_VERSION = 1
CLIENTS = ("c", "python")
#: The death storm also runs the Python floor (``benchmarks.bindingclient``:
#: txlibxl's binding and reactor hooks, counting inside libxl's callback),
#: so that the txlibxl/C gap splits into crossing into Python and
#: txlibxl's event layer; and txlibxl on a plain asyncio loop
#: (``benchmarks.asyncioclient``, no Twisted reactor in its process), so
#: that the same storm also gives txlibxl's cost on asyncio.
#: ``batch`` is txlibxl on Twisted with one batch subscription and
#: unbuffered watches (``Context.subscribe``), no Deferred per event;
#: ``daemon`` is ``twistd libxl-events`` itself, publishing a record per
#: death to a JSON-lines file.
STORM_CLIENTS = ("c", "binding", "python", "batch", "asyncio", "daemon")

#: The module of each Python client (the C client is ``tests/cclient``'s binary).
CLIENT_MODULES = {
    "python": "benchmarks.pyclient",
    "binding": "benchmarks.bindingclient",
    "asyncio": "benchmarks.asyncioclient",
    "batch": "benchmarks.pyclient",
    # Not a client of the benchmark's runs: the Python client with timers
    # (benchmarks.profile_latency).
    "probe": "benchmarks.latencyprobe",
}

#: Commands a client kind runs before its watches (``batch``: the
#: subscription).
CLIENT_PREFIX = {"batch": ["batched"]}

#: How long a storm's client runs its loop between arming its watches and
#: the window its CPU is measured over: libxl's first look at the watched
#: domains (its @releaseDomain watch fires when it is set, and each firing
#: scans every watched domain) happens then, not in the storm's window.
SETTLE_S = 1.0

def settle(kind: str, seconds: float = SETTLE_S) -> List[Any]:
    """
    The commands that end a C{kind} client's set-up before a measured
    window: a Python client first pays its garbage collector for the
    objects its arming made (``collect``: a process whose watches are old
    has paid it long ago; the window's own collections stay in it), then
    every client runs its loop for C{seconds}.
    """
    return (["collect"] if kind != "c" else []) + ["sleep", seconds]


#: The same before each latency sample (one domain, one firing).
LATENCY_SETTLE_S = 0.02


def _nth(index: int, predicate: Callable[[Dict[str, Any]], bool]) -> Callable[[Dict[str, Any]], bool]:
    """A predicate true of the C{index}-th line (from 0) that C{predicate} is true of."""
    seen = [0]

    def check(line: Dict[str, Any]) -> bool:
        if not predicate(line):
            return False
        seen[0] += 1
        return seen[0] == index + 1

    return check

#: The devices of each op-churn domain: libxl's destroy then tears down a
#: disk and a vif (device-state timeouts, hotplug script children) and
#: forks its destroy child.
CHURN_DEVICES: Dict[str, Any] = {
    "disks": [{"vdev": "xvda", "target": "/dev/null", "format": "raw"}],
    "vifs": 1,
}


@attr.s(frozen=True, auto_attribs=True)
class Config:
    """
    What to run.  Sizes are numbers of domains; ``reps`` is how many times
    each (scenario, size) runs per client.
    """

    storm_sizes: Tuple[int, ...] = (100, 1000, 5000)
    lockstep_sizes: Tuple[int, ...] = (100, 300)
    latency_runs: int = 100
    churn_sizes: Tuple[int, ...] = (20, 100)
    memory_size: int = 5000
    reps: int = 5
    timeout: float = 600.0
    storm_clients: Tuple[str, ...] = STORM_CLIENTS

    @classmethod
    def smoke(cls) -> "Config":
        """Tiny sizes, one repetition: keeps the benchmark working in CI."""
        return cls(
            storm_sizes=(5,),
            lockstep_sizes=(3,),
            latency_runs=3,
            churn_sizes=(2,),
            memory_size=10,
            reps=1,
            timeout=60.0,
        )


class BenchmarkError(Exception):
    """A client or the simulated host did not do what a scenario needed."""


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process C{pid} so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The C{fraction} quantile of C{values} (linear interpolation)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ratio(python: Optional[float], c: Optional[float]) -> Optional[float]:
    if python is None or not c:
        return None
    return round(python / c, 3)


def _cpu(line: Dict[str, Any]) -> float:
    return float(line["utime"]) + float(line["stime"])


def loadavg() -> List[float]:
    """The machine's 1, 5 and 15 minute load averages now."""
    return [round(x, 2) for x in os.getloadavg()]


def write_json(results: Dict[str, Any], out: str) -> None:
    """Write a run's C{results} to the JSON file C{out} (its directory made if missing)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")


def machine() -> Dict[str, Any]:
    """What the numbers were measured on."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for row in f:
                if row.startswith("model name"):
                    model = row.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    libxl = None
    try:
        libxl = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "libxenmisc4.17"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False,
        ).stdout.decode().strip() or None
    except OSError:
        pass
    import twisted

    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "libxenlight": libxl,
    }


class Bench:
    """
    One benchmark session: a simulated host, the C client's binary, and a
    way to run either client against the host.
    """

    def __init__(self, reactor: Any, host: Any, cclient: str, config: Config,
                 progress: Callable[[str], None]) -> None:
        self.reactor = reactor
        self.host = host
        self.control = host.control
        self.sim_pid = int(host.info["pid"])
        self.cclient = cclient
        self.config = config
        self.progress = progress

    # -- clients ----------------------------------------------------------

    def spawn(self, kind: str, args: Sequence[Any]) -> Any:
        from tests.cclient import CClientProcess

        env = self.host.environment(preload=True)
        args = [str(a) for a in args]
        if kind == "c":
            return CClientProcess.spawn(self.reactor, self.cclient, args, env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
        return CClientProcess.spawn(self.reactor, sys.executable, ["-m", CLIENT_MODULES[kind], *args], env)

    async def finish(self, proc: Any) -> List[Dict[str, Any]]:
        code = await proc.finished(self.config.timeout)
        if code != 0:
            raise BenchmarkError(proc.describe("failed"))
        return proc.lines

    async def wait_line(self, proc: Any, predicate: Callable[[Dict[str, Any]], bool]) -> Dict[str, Any]:
        return await proc.wait_for(predicate, self.config.timeout)

    # -- the host -----------------------------------------------------------

    async def create(self, count: int, prefix: str, **devices: Any) -> List[int]:
        created = await self.control.create_domains(count, prefix=prefix, **devices)
        return [d["domid"] for d in created]

    async def destroy(self, domids: Sequence[int]) -> None:
        alive = {d["domid"] for d in await self.control.list()}
        left = [d for d in domids if d in alive]
        if left:
            await self.control.destroy(left, mode="burst")

    # -- scenarios ----------------------------------------------------------

    async def storm_once(self, kind: str, n: int, mode: str) -> Dict[str, Any]:
        """
        N watched domains destroyed by the host (C{mode} burst or lockstep);
        the time from the host's first change to the last death reaching
        its waiter.
        """
        if kind == "daemon":
            return await self.daemon_storm_once(n, mode)
        domids = await self.create(n, f"storm{kind}")
        proc = self.spawn(kind, ["quiet", *CLIENT_PREFIX.get(kind, []), "watch-death", *domids,
                                 *settle(kind), "rusage", "wait-events", n, self.config.timeout, "rusage"])
        before = await self.wait_line(proc, lambda l: l.get("cmd") == "rusage")
        if kind == "asyncio":
            ready = await self.wait_line(proc, lambda l: "ready" in l)
            if ready.get("reactor") is not False:
                raise BenchmarkError(proc.describe("the asyncio client has a Twisted reactor"))
        sim0 = cpu_seconds(self.sim_pid)
        sent = time.time()
        reply = await self.control.destroy(domids, mode=mode, with_time=True)
        waited = await self.wait_line(proc, lambda l: l.get("cmd") == "wait-events")
        sim1 = cpu_seconds(self.sim_pid)
        lines = await self.finish(proc)
        after = [l for l in lines if l.get("cmd") == "rusage"][-1]
        if waited["timeout"] or waited["seen"] < n:
            raise BenchmarkError(proc.describe(f"saw {waited['seen']} of {n} deaths"))
        changed = reply["changed_at"]
        result = {
            "wall_s": waited["t_last"] - changed,
            "first_event_s": waited["t_first"] - changed,
            "host_teardown_s": changed - sent,
            "cpu_s": _cpu(after) - _cpu(before),
            "sim_cpu_s": sim1 - sim0,
        }
        if "gc_s" in after:  # the Python clients: their garbage collector's share
            result["gc_s"] = after["gc_s"] - before["gc_s"]
            result["gc_full"] = after["gc_full"] - before["gc_full"]
        return result

    async def daemon_storm_once(self, n: int, mode: str) -> Dict[str, Any]:
        """
        The storm against ``twistd libxl-events`` writing JSON lines: the
        storm starts once the daemon's initial scan published a ``new``
        record for every domain; its CPU is read (``/proc``) just before
        the storm and once the last death record is written; the wall
        time runs from the host's change to the last record's time stamp.
        """
        import json
        import shutil
        import signal
        import tempfile
        from datetime import datetime, timezone

        from twisted.internet import protocol, task

        domids = await self.create(n, "stormdaemon")
        tmp = tempfile.mkdtemp(prefix="txlx-bench-daemon-")
        out = os.path.join(tmp, "events.jsonl")
        env = self.host.environment(preload=True)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
        args = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; "
                "sys.argv[0] = 'twistd'; run()", "-n", "--pidfile=", "--logfile", os.path.join(tmp, "twistd.log"),
                "libxl-events", "--output", out, "--rescan-interval", "3600",
                # its own record numbers: never the host's /var/lib/txlibxl-events,
                # which a daemon elsewhere on the machine may hold
                "--state-dir", os.path.join(tmp, "state")]

        class Ended(protocol.ProcessProtocol):
            def __init__(self) -> None:
                self.ended = defer.Deferred()
                self.status: Any = None
                self.stderr = b""

            def errReceived(self, data: bytes) -> None:
                self.stderr = (self.stderr + data)[-4000:]

            def processEnded(self, reason: Any) -> None:
                self.status = reason.value
                self.ended.callback(None)

        from twisted.internet import defer

        proto = Ended()
        process = self.reactor.spawnProcess(proto, args[0], args, env=env, path=tmp)
        offset = [0]
        counts: Dict[str, int] = {}
        last: List[str] = [""]

        def read() -> None:
            try:
                with open(out, "rb") as f:
                    f.seek(offset[0])
                    chunk = f.read()
            except OSError:
                return
            end = chunk.rfind(b"\n") + 1
            offset[0] += end
            for row in chunk[:end].splitlines():
                record = json.loads(row)
                counts[record["type"]] = counts.get(record["type"], 0) + 1
                if record["type"] == "death":
                    last[0] = record["time"]

        def why(what: str) -> str:
            # What the operator would look at: how it ended, its stderr, its log.
            try:
                with open(os.path.join(tmp, "twistd.log"), "rb") as f:
                    log = f.read()[-4000:].decode(errors="replace")
            except OSError as e:
                log = f"(no log: {e})"
            state = f"ended: {proto.status}" if proto.ended.called else "still running"
            return (f"{what} ({state})\n--- stderr (tail) ---\n{proto.stderr.decode(errors='replace')}"
                    f"\n--- twistd.log (tail) ---\n{log}")

        async def until(kind: str, count: int) -> None:
            deadline = time.time() + self.config.timeout
            while counts.get(kind, 0) < count:
                if proto.ended.called or time.time() > deadline:
                    raise BenchmarkError(why(f"the daemon published {counts.get(kind, 0)} of {count} {kind} records"))
                await task.deferLater(self.reactor, 0.02, lambda: None)
                read()

        try:
            await until("new", n)
            await task.deferLater(self.reactor, SETTLE_S, lambda: None)  # as the other clients' sleep
            cpu0 = cpu_seconds(process.pid)
            sim0 = cpu_seconds(self.sim_pid)
            sent = time.time()
            reply = await self.control.destroy(domids, mode=mode, with_time=True)
            await until("death", n)
            cpu1 = cpu_seconds(process.pid)
            sim1 = cpu_seconds(self.sim_pid)
        finally:
            if not proto.ended.called:
                process.signalProcess(signal.SIGTERM)
                await proto.ended
            shutil.rmtree(tmp, True)
        t_last = datetime.strptime(last[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
        changed = reply["changed_at"]
        wall = t_last - changed
        return {
            "wall_s": wall,
            "host_teardown_s": changed - sent,
            "cpu_s": cpu1 - cpu0,
            "sim_cpu_s": sim1 - sim0,
            "records_per_s": n / wall if wall > 0 else None,
        }

    async def latency_once(self, kind: str, runs: int) -> List[float]:
        """
        C{runs} domains, one at a time: watch it, have the guest shut down,
        time the host's change to the client's waiter (seconds each).
        """
        return [event["t"] - changed for changed, event in await self.latency_events(kind, runs)]

    async def latency_events(self, kind: str, runs: int) -> List[Tuple[float, Dict[str, Any]]]:
        """
        What L{latency_once} times: for each of the C{runs} shutdowns, when
        the host changed the domain and the client's event line.
        """
        domids = await self.create(runs, f"lat{kind}")
        args: List[Any] = []
        for domid in domids:
            # Armed and settled (libxl's first look at the domain done)
            # before the host changes anything.
            args += ["watch-death", domid, *settle(kind, LATENCY_SETTLE_S), "wait-events", 1, self.config.timeout,
                     "unwatch-all"]
        proc = self.spawn(kind, args)
        samples = []
        try:
            for i, domid in enumerate(domids):
                await self.wait_line(proc, lambda l, d=domid: l.get("cmd") == "watch-death" and l.get("domid") == d)
                await self.wait_line(proc, _nth(i, lambda l: l.get("cmd") == "sleep"))
                reply = await self.control.shutdown(domid, "poweroff")
                event = await self.wait_line(
                    proc, lambda l, d=domid: l.get("event") == "domain_shutdown" and l.get("domid") == d
                )
                samples.append((reply["changed_at"], event))
            await self.finish(proc)
        finally:
            await self.destroy(domids)
        return samples

    async def churn_once(self, kind: str, n: int) -> Dict[str, Any]:
        """
        N concurrent shutdowns, then N concurrent destroys (devices torn
        down, children forked); the time until all have completed.
        """
        domids = await self.create(n, f"churn{kind}", **CHURN_DEVICES)
        proc = self.spawn(kind, ["rusage", "ops", "shutdown", *domids, "rusage",
                                 "ops", "destroy", *domids, "rusage"])
        sim0 = cpu_seconds(self.sim_pid)
        lines = await self.finish(proc)
        sim1 = cpu_seconds(self.sim_pid)
        usage = [l for l in lines if l.get("cmd") == "rusage"]
        ops = {l["op"]: l for l in lines if l.get("cmd") == "ops"}
        result: Dict[str, Any] = {"sim_cpu_s": sim1 - sim0}
        for i, op in enumerate(("shutdown", "destroy")):
            line = ops[op]
            if line["failed"]:
                raise BenchmarkError(proc.describe(f"{line['failed']} of {n} {op}s failed"))
            result[op] = {
                "wall_s": line["t_end"] - line["t_start"],
                "cpu_s": _cpu(usage[i + 1]) - _cpu(usage[i]),
            }
        result["wall_s"] = result["shutdown"]["wall_s"] + result["destroy"]["wall_s"]
        result["cpu_s"] = result["shutdown"]["cpu_s"] + result["destroy"]["cpu_s"]
        await self.destroy(domids)
        return result

    async def memory_once(self, kind: str, n: int) -> Dict[str, Any]:
        """
        RSS before and after watching N domains, per domain; for Python
        also the traced heap, in a second process (``tracemalloc``'s own
        bookkeeping would inflate the RSS of the first), in all and split
        into the library's and the client's
        (:func:`~benchmarks.clientcommon.heap_line`).
        """
        domids = await self.create(n, f"mem{kind}")
        try:
            lines = await self.finish(self.spawn(kind, ["quiet", "rusage", "watch-death", *domids, "rusage"]))
            heap: List[Dict[str, Any]] = []
            if kind == "python":
                traced = await self.finish(self.spawn(
                    kind, ["quiet", "trace-heap", "heap", "watch-death", *domids, "heap"]))
                heap = [l for l in traced if l.get("cmd") == "heap"]
        finally:
            await self.destroy(domids)
        usage = [l for l in lines if l.get("cmd") == "rusage"]
        result: Dict[str, Any] = {
            "rss_per_domain_b": round((usage[1]["rss_kb"] - usage[0]["rss_kb"]) * 1024 / n, 1),
            "rss_after_kb": usage[1]["rss_kb"],
        }
        if heap:
            result["heap_per_domain_b"] = round((heap[1]["traced"] - heap[0]["traced"]) / n, 1)
            for part in ("library", "client", "other"):
                if part in heap[0]:
                    result[f"heap_{part}_per_domain_b"] = round((heap[1][part] - heap[0][part]) / n, 1)
        return result

    # -- alternation and summaries ---------------------------------------

    async def alternate(self, label: str, once: Callable[[str], Any],
                        clients: Sequence[str] = CLIENTS) -> Dict[str, List[Any]]:
        # Each rep starts one client further on, so that no client always
        # runs in the same place (after the same client, on a host the
        # same number of storms old).
        runs: Dict[str, List[Any]] = {k: [] for k in clients}
        for rep in range(self.config.reps):
            start = rep % len(clients)
            for kind in list(clients[start:]) + list(clients[:start]):
                self.progress(f"{label}: {kind} run {rep + 1}/{self.config.reps}")
                runs[kind].append(await once(kind))
        return runs

    async def death_storms(self) -> List[Dict[str, Any]]:
        rows = []
        cases = [("burst", n) for n in self.config.storm_sizes]
        cases += [("lockstep", n) for n in self.config.lockstep_sizes]
        for mode, n in cases:
            runs = await self.alternate(f"death storm {mode} N={n}",
                                        lambda kind: self.storm_once(kind, n, mode), self.config.storm_clients)
            rows.append(_summarise({"mode": mode, "n": n}, runs, n))
        return rows

    async def latency(self) -> Dict[str, Any]:
        runs = await self.alternate(f"latency x{self.config.latency_runs}",
                                    lambda kind: self.latency_once(kind, self.config.latency_runs))
        out: Dict[str, Any] = {"samples": self.config.latency_runs * self.config.reps}
        for kind in CLIENTS:
            values = [v * 1e3 for run in runs[kind] for v in run]
            out[kind] = {
                "p50_ms": round(percentile(values, 0.5), 4),
                "p99_ms": round(percentile(values, 0.99), 4),
                "mean_ms": round(statistics.fmean(values), 4),
                "max_ms": round(max(values), 4),
                "samples_ms": [round(v, 4) for v in values],
            }
        out["p50_delta_ms"] = round(out["python"]["p50_ms"] - out["c"]["p50_ms"], 4)
        out["p99_delta_ms"] = round(out["python"]["p99_ms"] - out["c"]["p99_ms"], 4)
        return out

    async def op_churn(self) -> List[Dict[str, Any]]:
        rows = []
        for n in self.config.churn_sizes:
            runs = await self.alternate(f"op churn N={n}", lambda kind: self.churn_once(kind, n))
            row = _summarise({"n": n}, runs, n)
            for op in ("shutdown", "destroy"):
                for kind in CLIENTS:
                    row[kind][op] = {
                        key: round(statistics.median(r[op][key] for r in runs[kind]), 6)
                        for key in ("wall_s", "cpu_s")
                    }
            rows.append(row)
        return rows

    async def memory(self) -> Dict[str, Any]:
        n = self.config.memory_size
        runs = await self.alternate(f"memory N={n}", lambda kind: self.memory_once(kind, n))
        out: Dict[str, Any] = {"n": n}
        for kind in CLIENTS:
            keys = runs[kind][0].keys()
            out[kind] = {k: statistics.median(r[k] for r in runs[kind]) for k in keys}
        return out


def _summarise(row: Dict[str, Any], runs: Dict[str, List[Dict[str, Any]]], n: int) -> Dict[str, Any]:
    """
    Medians per client, per-event costs and the Python/C ratios (and, with
    the floor client, ``binding_wall_ratio`` / ``binding_cpu_ratio``: the
    floor over C; with the asyncio client, ``asyncio_wall_ratio`` /
    ``asyncio_cpu_ratio``: txlibxl on asyncio over C).
    """
    for kind in runs:
        med = {key: statistics.median(r[key] for r in runs[kind]) for key in runs[kind][0]
               if isinstance(runs[kind][0][key], (int, float))}
        med = {k: round(v, 6) for k, v in med.items()}
        med["wall_us_per_domain"] = round(med["wall_s"] / n * 1e6, 2)
        med["cpu_us_per_domain"] = round(med["cpu_s"] / n * 1e6, 2)
        med["runs"] = runs[kind]
        row[kind] = med
    row["wall_ratio"] = _ratio(row["python"]["wall_s"], row["c"]["wall_s"])
    row["cpu_ratio"] = _ratio(row["python"]["cpu_s"], row["c"]["cpu_s"])
    if "binding" in row:
        row["binding_wall_ratio"] = _ratio(row["binding"]["wall_s"], row["c"]["wall_s"])
        row["binding_cpu_ratio"] = _ratio(row["binding"]["cpu_s"], row["c"]["cpu_s"])
    for kind in ("batch", "daemon"):
        if kind in row:
            row[f"{kind}_wall_ratio"] = _ratio(row[kind]["wall_s"], row["c"]["wall_s"])
            row[f"{kind}_cpu_ratio"] = _ratio(row[kind]["cpu_s"], row["c"]["cpu_s"])
    if "asyncio" in row:
        row["asyncio_wall_ratio"] = _ratio(row["asyncio"]["wall_s"], row["c"]["wall_s"])
        row["asyncio_cpu_ratio"] = _ratio(row["asyncio"]["cpu_s"], row["c"]["cpu_s"])
    return row


TARGETS = {
    # burst storms, the batch subscription over C (same runs)
    "storm_batch_wall_ratio": 1.3,
    "storm_batch_cpu_ratio": 1.3,
    # burst storms, per-domain waiters over C
    "storm_wall_ratio": 2.0,
    "storm_cpu_ratio": 2.0,
    # the ratio at N = 5000 over the ratio at N = 1000
    "storm_ratio_growth": 1.2,
    "latency_p50_delta_ms": 0.1,
    "latency_p99_delta_ms": 0.25,
    "heap_per_domain_b": 1024,
}


def evaluate(results: Dict[str, Any]) -> Dict[str, Any]:
    """Each target with its measured value (per N for storms) and whether it is met."""
    out: Dict[str, Any] = {}
    scen = results["scenarios"]
    burst = {r["n"]: r for r in scen.get("death_storm", []) if r["mode"] == "burst"}
    for n in sorted(burst):
        r = burst[n]
        for key, name in (("wall_ratio", "storm_wall_ratio"), ("cpu_ratio", "storm_cpu_ratio"),
                          ("batch_wall_ratio", "storm_batch_wall_ratio"),
                          ("batch_cpu_ratio", "storm_batch_cpu_ratio")):
            if r.get(key) is not None:
                out[f"{name}_n{n}"] = {"n": n, "value": r[key], "target": TARGETS[name]}
    if 1000 in burst and 5000 in burst:
        for key in ("wall_ratio", "cpu_ratio", "batch_wall_ratio", "batch_cpu_ratio"):
            low, high = burst[1000].get(key), burst[5000].get(key)
            if low and high:
                out[f"storm_{key}_growth"] = {"value": round(high / low, 3), "target": TARGETS["storm_ratio_growth"]}
    for name in ("p50_delta_ms", "p99_delta_ms"):
        if name in scen.get("latency", {}):
            out[f"latency_{name}"] = {"value": scen["latency"][name], "target": TARGETS[f"latency_{name}"]}
    # The whole traced heap per watched domain, and (the same target) the
    # part of it txlibxl allocated, without the benchmark client's own.
    for name in ("heap_per_domain_b", "heap_library_per_domain_b"):
        if name in scen.get("memory", {}).get("python", {}):
            out[name] = {"n": scen["memory"]["n"], "value": scen["memory"]["python"][name],
                         "target": TARGETS["heap_per_domain_b"]}
    for item in out.values():
        if "target" in item and item["value"] is not None:
            item["met"] = item["value"] <= item["target"]
    return out


SCENARIOS = ("death_storm", "latency", "op_churn", "memory")


async def run_benchmarks(
    reactor: Any,
    config: Config,
    scenarios: Sequence[str] = SCENARIOS,
    progress: Callable[[str], None] = lambda text: None,
) -> Dict[str, Any]:
    """
    Run C{scenarios} under C{config} on a fresh simulated host; returns the
    results dict (``schema``, ``date``, ``machine``, ``config``,
    ``scenarios``, ``targets``).  The host is stopped before this returns.

    :raises tests.cclient.CClientUnavailable: the C client cannot be built.
    :raises BenchmarkError: a client failed or missed its events.
    """
    from tests.cclient import cached_build
    from txlibxl.testing import start_simulated_host

    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenarios {sorted(unknown)}; known: {SCENARIOS}")
    binary = cached_build()
    started = time.time()
    host = await start_simulated_host(reactor)
    results: Dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": dict(machine(), loadavg_before=loadavg()),
        "config": attr.asdict(config),
        "scenarios": {},
    }
    try:
        bench = Bench(reactor, host, binary, config, progress)
        sim0 = cpu_seconds(bench.sim_pid)
        for name in SCENARIOS:
            if name in scenarios:
                results["scenarios"][name] = await getattr(bench, _METHODS[name])()
        results["sim_cpu_total_s"] = round(cpu_seconds(bench.sim_pid) - sim0, 3)
    finally:
        await host.stop()
    results["machine"]["loadavg_after"] = loadavg()
    results["elapsed_s"] = round(time.time() - started, 1)
    results["targets"] = evaluate(results)
    return results


_METHODS = {
    "death_storm": "death_storms",
    "latency": "latency",
    "op_churn": "op_churn",
    "memory": "memory",
}


def run_on_reactor(main: Callable[[Any], Awaitable[Any]]) -> Optional[Any]:
    """
    C{main(reactor)} under ``task.react`` (for a command line tool): what
    it returned, or None if it raised (``react`` has printed why).
    """
    from twisted.internet import defer, task

    outcome: List[Any] = []

    async def run(reactor: Any) -> None:
        outcome.append(await main(reactor))

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit as e:
        if e.code:
            return None
    return outcome[0] if outcome else None


__all__ = ["Config", "BenchmarkError", "run_on_reactor", "CLIENTS", "STORM_CLIENTS", "CLIENT_MODULES", "loadavg", "Bench", "run_benchmarks", "evaluate", "percentile", "settle",
           "cpu_seconds", "machine", "SCHEMA_VERSION", "SCENARIOS", "TARGETS"]
