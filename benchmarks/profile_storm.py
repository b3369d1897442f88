"""
Where a Python client's time goes in a burst death storm:
``python -m benchmarks.profile_storm [--client python|batch] [-n N] [--top K] [--out FILE]``.

On a fresh simulated host, N watched domains are destroyed at once while
:mod:`benchmarks.pyclient` (per-domain waiters, or with ``batch`` the
batch subscription) runs ``cProfile`` from just before the storm until its
last death is counted.  Prints the functions with the most time of their
own (the profiler's clock; its own overhead inflates every Python call, so
read the shares, and the benchmark for the costs), and the storm's CPU per
death measured by the same run.  C{--out} keeps the raw stats for
``pstats``.

Exit status: 0, or 1 if the storm did not complete.
"""
from __future__ import annotations

import argparse
import io
import os
import pstats
import sys
import tempfile
from typing import Any, Dict, Optional, Sequence

from .runner import CLIENT_PREFIX, Bench, BenchmarkError, Config, run_on_reactor, settle

__all__ = ["profile_storm", "main"]


async def profile_storm(reactor: Any, client: str, n: int, out: str, timeout: float = 600.0) -> Dict[str, Any]:
    """
    One profiled burst storm of C{n} domains with C{client} (``python`` or
    ``batch``); the stats are written to C{out}.  Returns the client's CPU
    seconds over the storm (profiled) and the deaths seen.

    :raises BenchmarkError: the client failed or missed deaths.
    """
    from txlibxl.testing import start_simulated_host

    if client not in ("python", "batch"):
        raise ValueError(f"client must be 'python' or 'batch', not {client!r}")
    host = await start_simulated_host(reactor)
    try:
        # The C client's binary is not needed: only Python clients are spawned.
        bench = Bench(reactor, host, "", Config(timeout=timeout), lambda text: None)
        domids = await bench.create(n, f"profile{client}")
        proc = bench.spawn(client, ["quiet", *CLIENT_PREFIX.get(client, []), "watch-death", *domids,
                                    *settle(client), "rusage", "profile-start", "wait-events", n, timeout,
                                    "profile-stop", out, "rusage"])
        await bench.wait_line(proc, lambda line: line.get("cmd") == "profile-start")
        await host.control.destroy(domids, mode="burst")
        waited = await bench.wait_line(proc, lambda line: line.get("cmd") == "wait-events")
        lines = await bench.finish(proc)
        if waited["timeout"] or waited["seen"] < n:
            raise BenchmarkError(proc.describe(f"saw {waited['seen']} of {n} deaths"))
        before, after = [line for line in lines if line.get("cmd") == "rusage"]
        cpu = (after["utime"] + after["stime"]) - (before["utime"] + before["stime"])
        return {"cpu_s": cpu, "seen": waited["seen"]}
    finally:
        await host.stop()


def report(stats_file: str, top: int) -> str:
    """The C{top} functions by own time in C{stats_file}, as pstats prints them."""
    text = io.StringIO()
    stats = pstats.Stats(stats_file, stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_storm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", choices=("python", "batch"), default="batch")
    parser.add_argument("-n", type=int, default=5000, help="domains in the storm (default 5000)")
    parser.add_argument("--top", type=int, default=25, help="functions to print (default 25)")
    parser.add_argument("--out", help="keep the cProfile stats here")
    options = parser.parse_args(argv)
    if options.n < 1:
        parser.error("-n must be at least 1")
    out = options.out or os.path.join(tempfile.mkdtemp(prefix="txlx-profile-"), "storm.prof")
    result = run_on_reactor(lambda reactor: profile_storm(reactor, options.client, options.n, out))
    if not result:
        return 1
    print(f"{options.client}: {options.n} deaths, {result['cpu_s'] * 1e6 / options.n:.1f} µs of CPU per death "
          f"under the profiler; stats in {out}")
    print(report(out, options.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
