"""
Where one event's latency goes, for the C client and for txlibxl:
``python -m benchmarks.profile_latency [-n SAMPLES] [--reps R] [--out FILE]``.

On a fresh simulated host, the latency scenario's samples (one watched
domain at a time, its guest shut down, the time from the host's change to
the client's waiter) run for the C client and for
:mod:`benchmarks.latencyprobe` (txlibxl with timers), alternated, R runs of
SAMPLES each.  Each sample is split into stages, in milliseconds:

``woke``
    the host's change to the client's poll returning (xenstored's watch
    event, libxenstore's reader thread, the pipe it wakes the loop with,
    the kernel waking the loop's thread);
``to_libxl`` (txlibxl only)
    the poll returning to the call into libxl (the reactor's dispatch,
    the fd hook);
``libxl``
    inside libxl (the C client: until libxl reports the event; txlibxl:
    until the call returns);
``to_waiter`` (txlibxl only)
    libxl's return to the waiter's callback (taking the batch,
    dispatch, the event value, the Deferred);

and ``total``.  Prints the medians and writes them, with every sample,
as JSON to FILE (default: a temporary file).  The timers cost the txlibxl
client a few microseconds per event: its total here is a little above the
latency benchmark's.

Exit status: 0, or 1 if a client failed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from .runner import Bench, BenchmarkError, Config, run_on_reactor

__all__ = ["profile_latency", "stages", "main"]

#: The stages of each client, in their order along the path.
STAGES = {"c": ("woke", "libxl"), "probe": ("woke", "to_libxl", "libxl", "to_waiter")}


def stages(kind: str, changed: float, event: Dict[str, Any]) -> Dict[str, float]:
    """
    One sample's stages (milliseconds) from the host's change and the
    client's event line.

    :raises BenchmarkError: the line lacks a stamp, or the stamps are out
        of order (a stamp from an earlier event).
    """
    if kind == "c":
        marks = [changed, event.get("t_woke"), event.get("t")]
    else:
        marks = [changed, event.get("t_woke"), event.get("t_libxl"), event.get("t_libxl_done"), event.get("t")]
    if any(not isinstance(m, (int, float)) for m in marks):
        raise BenchmarkError(f"{kind} event line without its stamps: {event}")
    if any(b < a for a, b in zip(marks, marks[1:])):
        raise BenchmarkError(f"{kind} stamps out of order (changed at {changed}): {event}")
    out = {name: (b - a) * 1e3 for name, a, b in zip(STAGES[kind], marks, marks[1:])}
    out["total"] = (marks[-1] - changed) * 1e3
    return out


async def profile_latency(reactor: Any, samples: int, reps: int, timeout: float = 120.0) -> Dict[str, Any]:
    """
    C{reps} alternated runs of C{samples} for each client; returns
    ``{"samples": [...], "c": {...}, "probe": {...}}``, each client with
    its stages' medians (``p50_ms``) and every sample.

    :raises BenchmarkError: a client failed.
    :raises tests.cclient.CClientUnavailable: the C client cannot be built.
    """
    from tests.cclient import cached_build
    from txlibxl.testing import start_simulated_host

    binary = cached_build()
    host = await start_simulated_host(reactor)
    try:
        bench = Bench(reactor, host, binary, Config(timeout=timeout), lambda text: None)
        split: Dict[str, List[Dict[str, float]]] = {"c": [], "probe": []}
        for rep in range(reps):
            for kind in (("c", "probe") if rep % 2 == 0 else ("probe", "c")):
                for changed, event in await bench.latency_events(kind, samples):
                    split[kind].append(stages(kind, changed, event))
    finally:
        await host.stop()
    result: Dict[str, Any] = {"samples_per_client": samples * reps}
    for kind, rows in split.items():
        names = STAGES[kind] + ("total",)
        result[kind] = {
            "p50_ms": {name: round(statistics.median(r[name] for r in rows), 4) for name in names},
            "samples_ms": [{name: round(r[name], 4) for name in names} for r in rows],
        }
    return result


def render(result: Dict[str, Any]) -> str:
    """The medians as a table (one row per client)."""
    names = ("woke", "to_libxl", "libxl", "to_waiter", "total")
    lines = [f"{'client':8}" + "".join(f"{n:>11}" for n in names)]
    for kind, label in (("c", "C"), ("probe", "txlibxl")):
        p50 = result[kind]["p50_ms"]
        lines.append(f"{label:8}" + "".join(f"{p50[n]:>11.3f}" if n in p50 else f"{'–':>11}" for n in names))
    lines.append(f"(medians of {result['samples_per_client']} samples each, milliseconds)")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_latency",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="samples per run (default 100)")
    parser.add_argument("--reps", type=int, default=4, help="runs per client, alternated (default 4)")
    parser.add_argument("--out", help="write the JSON here")
    options = parser.parse_args(argv)
    if options.n < 1 or options.reps < 1:
        parser.error("-n and --reps must be at least 1")
    out = options.out or os.path.join(tempfile.mkdtemp(prefix="txlx-latency-"), "latency.json")
    result = run_on_reactor(lambda reactor: profile_latency(reactor, options.n, options.reps))
    if not result:
        return 1
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(render(result))
    print(f"samples in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
