"""
``python -m benchmarks.create``: N PV creates and destroys, one after the
other, through txlibxl and through the C client, on one simulated host.

Each run is one client process doing N cycles of create (libxl's whole PV
create path: the domain builder, a disk and a NIC brought to Connected by
the host's agents, the console) then destroy:

* **C**: ``cclient rusage create CONFIG.json destroy last ... rusage``
  (``tests/cclient/cclient.c``: its own osevent hooks and ``poll(2)`` loop);
* **txlibxl**: ``python -m benchmarks.createclient CONFIG.json N``
  (:meth:`~txlibxl.context.Context.create` and
  :meth:`~txlibxl.context.Context.destroy` on the epoll reactor).

Both read the same libxl JSON config and give it a fresh UUID per create.
The clients alternate (C, txlibxl, C...) for ``--reps`` runs each; the
machine is shared, so the table gives medians and the spread (min-max).
Wall time runs from the client's first ``rusage`` line to its last (its
start-up is not counted); CPU is the client's own (``getrusage``) over the
same span, and the simulated host's (``/proc/<pid>/stat``) over the run.

    .venv/bin/python -m benchmarks.create [--creates 100] [--reps 5]

writes ``benchmarks/results/create.json`` and the docs' table
``docs/performance/create.inc``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer, task

from .runner import ROOT, BenchmarkError, cpu_seconds, machine, write_json

DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "results", "create.json")
DEFAULT_INC = os.path.join(ROOT, "docs", "performance", "create.inc")
CLIENTS = ("c", "python")


def guest_config(directory: str) -> Dict[str, Any]:
    """The PV guest every create builds, its files made in C{directory}."""

    def made(name: str, content: bytes = b"", size: int = 0) -> str:
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(content)
            f.truncate(size or len(content))
        return path

    return {
        "c_info": {"type": "pv", "name": "bench"},
        "b_info": {
            "max_vcpus": 1,
            "max_memkb": 131072,
            "target_memkb": 131072,
            "kernel": made("vmlinuz", b"\x7fELF simulated kernel"),
            "type.pv": {},
        },
        "disks": [{"pdev_path": made("disk.img", size=1 << 20), "vdev": "xvda", "format": "raw", "readwrite": 1}],
        "nics": [{"devid": 0, "bridge": "xenbr0"}],
    }


def _cpu(line: Dict[str, Any]) -> float:
    return float(line["utime"]) + float(line["stime"])


async def run_once(reactor: Any, host: Any, cclient: str, kind: str, config_path: str, creates: int,
                   timeout: float) -> Dict[str, Any]:
    """One client process's N cycles: wall, CPU (client, host), failures."""
    from tests.cclient import CClientProcess

    env = host.environment(preload=True)
    if kind == "c":
        args: List[str] = ["rusage"]
        for _ in range(creates):
            args += ["create", config_path, "destroy", "last"]
        proc = CClientProcess.spawn(reactor, cclient, args + ["rusage"], env)
    else:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
        proc = CClientProcess.spawn(reactor, sys.executable,
                                    ["-m", "benchmarks.createclient", config_path, str(creates)], env)
    sim_pid = int(host.info["pid"])
    sim0 = cpu_seconds(sim_pid)
    code = await proc.finished(timeout)
    sim1 = cpu_seconds(sim_pid)
    if code != 0:
        raise BenchmarkError(proc.describe(f"{kind} client failed"))
    usage = [l for l in proc.lines if l.get("cmd") == "rusage"]
    created = [l for l in proc.lines if l.get("cmd") == "create" and l.get("rc") == 0]
    destroyed = [l for l in proc.lines if l.get("cmd") == "destroy" and l.get("rc") == 0]
    if len(created) != creates or len(destroyed) != creates or len(usage) != 2:
        raise BenchmarkError(proc.describe(f"{kind}: {len(created)} creates, {len(destroyed)} destroys"))
    if not all(l.get("console_available") for l in created):
        raise BenchmarkError(proc.describe(f"{kind}: a create without its console report"))
    left = [d for d in await host.control.list() if d["domid"] != 0]
    if left:
        raise BenchmarkError(f"{kind}: domains left on the host: {left}")
    wall = usage[1]["t"] - usage[0]["t"]
    cpu = _cpu(usage[1]) - _cpu(usage[0])
    return {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "sim_cpu_s": round(sim1 - sim0, 4)}


def _spread(values: Sequence[float]) -> Dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def summarise(runs: Dict[str, List[Dict[str, Any]]], creates: int) -> Dict[str, Any]:
    """Medians and spreads per client, per-create costs and the txlibxl/C ratios."""
    out: Dict[str, Any] = {}
    for kind, rows in runs.items():
        out[kind] = {key: _spread([r[key] for r in rows]) for key in ("wall_s", "cpu_s", "sim_cpu_s")}
        out[kind]["wall_ms_per_create"] = round(out[kind]["wall_s"]["median"] / creates * 1e3, 3)
        out[kind]["cpu_ms_per_create"] = round(out[kind]["cpu_s"]["median"] / creates * 1e3, 3)
        out[kind]["runs"] = rows
    # Ratios of the medians, and of each alternating pair (C then txlibxl).
    pairs = list(zip(runs["c"], runs["python"]))
    for key in ("wall_s", "cpu_s"):
        name = key.split("_")[0]
        out[f"{name}_ratio"] = round(out["python"][key]["median"] / out["c"][key]["median"], 3)
        out[f"{name}_ratio_pairs"] = _spread([p[key] / c[key] for c, p in pairs])
    return out


async def measure(reactor: Any, creates: int, reps: int, progress: Any = print,
                  timeout: float = 900.0) -> Dict[str, Any]:
    from tests.cclient import cached_build
    from txlibxl.testing import start_simulated_host

    binary = cached_build()
    directory = tempfile.mkdtemp(prefix="txlx-create-bench-")
    config_path = os.path.join(directory, "guest.json")
    with open(config_path, "w") as f:
        json.dump(guest_config(directory), f)
    started = time.time()
    host = await start_simulated_host(reactor)
    runs: Dict[str, List[Dict[str, Any]]] = {kind: [] for kind in CLIENTS}
    try:
        for rep in range(reps):
            for kind in CLIENTS:
                progress(f"create: {kind} run {rep + 1}/{reps} ({creates} creates + destroys)")
                runs[kind].append(await run_once(reactor, host, binary, kind, config_path, creates, timeout))
    finally:
        await host.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "schema": 1,
        "scenario": "create",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "method": (
            f"{creates} PV creates (a disk, a NIC, the console) each followed by its destroy, one after the "
            "other, in one client process; the C client and txlibxl alternate on one simulated host; wall and "
            "client CPU from the client's first rusage line to its last"
        ),
        "creates": creates,
        "reps": reps,
        "machine": dict(machine(), load=list(os.getloadavg())),
        "elapsed_s": round(time.time() - started, 1),
        "results": summarise(runs, creates),
    }


def render_inc(results: Dict[str, Any]) -> str:
    """The docs' table of a run."""
    r = results["results"]
    load = ", ".join(f"{x:.2f}" for x in results["machine"]["load"])

    def cell(kind: str, key: str) -> str:
        s = r[kind][key]
        return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"

    def ratio(name: str) -> str:
        s = r[f"{name}_ratio_pairs"]
        return f"**{r[f'{name}_ratio']:.2f}** (pairs {s['min']:.2f}-{s['max']:.2f})"

    lines = [
        f"{results['creates']} creates + destroys per run, {results['reps']} runs per client, alternating; "
        f"{results['machine']['cpus']} CPUs, load average {load} at the end.  Medians, (min-max) over the runs.",
        "",
        f".. list-table:: {results['creates']} PV creates and destroys, one after the other",
        "   :header-rows: 1",
        "",
        "   * - ",
        "     - C client",
        "     - txlibxl",
        "     - txlibxl / C",
        "   * - wall, s",
        f"     - {cell('c', 'wall_s')}",
        f"     - {cell('python', 'wall_s')}",
        f"     - {ratio('wall')}",
        "   * - client CPU, s",
        f"     - {cell('c', 'cpu_s')}",
        f"     - {cell('python', 'cpu_s')}",
        f"     - {ratio('cpu')}",
        "   * - simulated host CPU, s",
        f"     - {cell('c', 'sim_cpu_s')}",
        f"     - {cell('python', 'sim_cpu_s')}",
        "     - ",
        "   * - per create + destroy, ms wall / ms client CPU",
        f"     - {r['c']['wall_ms_per_create']:.1f} / {r['c']['cpu_ms_per_create']:.1f}",
        f"     - {r['python']['wall_ms_per_create']:.1f} / {r['python']['cpu_ms_per_create']:.1f}",
        "     - ",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.create", description=__doc__.split("\n")[1])
    p.add_argument("--creates", type=int, default=100, help="creates + destroys per run (100)")
    p.add_argument("--reps", type=int, default=5, help="runs per client, alternating (5)")
    p.add_argument("--out", default=DEFAULT_OUT, help="the JSON results file")
    p.add_argument("--docs", default=DEFAULT_INC, help="the docs' table ('' to skip)")
    args = p.parse_args(argv)

    async def run(reactor: Any) -> None:
        results = await measure(reactor, args.creates, args.reps, lambda text: print(text, file=sys.stderr))
        write_json(results, args.out)
        if args.docs:
            with open(args.docs, "w") as f:
                f.write(render_inc(results))
        print(render_inc(results))

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
