"""
``python -m benchmarks``: run the benchmarks, write the JSON results, the
plots and the docs table.

    python -m benchmarks                 # full run (what ``make bench`` does)
    python -m benchmarks --smoke         # tiny sizes, no plots (``make bench-smoke``)
    python -m benchmarks --only latency --reps 1
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer, task

from .report import PlotsUnavailable, render_plots, render_table
from .runner import ROOT, SCENARIOS, Config, run_benchmarks, write_json

DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "results", "latest.json")
SMOKE_OUT = os.path.join(ROOT, "benchmarks", "results", "tmp", "smoke.json")  # git-ignored
DOCS_DIR = os.path.join(ROOT, "docs", "performance")


def _sizes(text: str) -> tuple:
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[1])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one run each, no docs output")
    p.add_argument("--only", action="append", choices=SCENARIOS, help="run only these scenarios")
    p.add_argument("--reps", type=int, help="runs per client per case")
    p.add_argument("--storm-sizes", type=_sizes)
    p.add_argument("--lockstep-sizes", type=_sizes)
    p.add_argument("--churn-sizes", type=_sizes)
    p.add_argument("--latency-runs", type=int)
    p.add_argument("--memory-size", type=int)
    p.add_argument("--storm-clients", type=lambda t: tuple(x for x in t.split(",") if x),
                   help="the death storm's clients, alternated (default: all; 'c' must be one)")
    p.add_argument("--out", help="JSON results file (default: benchmarks/results/latest.json, "
                                 "or results/tmp/smoke.json with --smoke)")
    p.add_argument("--docs", default=None,
                   help="directory for the plots and results.inc (default: docs/performance; "
                        "'' to skip; skipped with --smoke unless given)")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> Config:
    base = Config.smoke() if args.smoke else Config()
    changes: Dict[str, Any] = {}
    for name in ("reps", "storm_sizes", "lockstep_sizes", "churn_sizes", "latency_runs", "memory_size",
                 "storm_clients"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    import attr

    return attr.evolve(base, **changes)


def write_outputs(results: Dict[str, Any], out: str, docs: Optional[str]) -> List[str]:
    """Write the JSON (and, if C{docs}, the table and plots); returns the paths."""
    write_json(results, out)
    written = [out]
    if docs:
        os.makedirs(docs, exist_ok=True)
        table = os.path.join(docs, "results.inc")
        with open(table, "w") as f:
            f.write(render_table(results))
        written.append(table)
        try:
            written += render_plots(results, docs)
        except PlotsUnavailable as e:
            print(f"benchmarks: no plots: {e}", file=sys.stderr)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    config = config_from(args)
    scenarios = tuple(args.only or SCENARIOS)
    out = args.out or (SMOKE_OUT if args.smoke else DEFAULT_OUT)
    docs = args.docs if args.docs is not None else (None if args.smoke else DOCS_DIR)

    def progress(text: str) -> None:
        print(f"benchmarks: {text}", file=sys.stderr, flush=True)

    outcome: List[Dict[str, Any]] = []

    async def run(reactor: Any) -> None:
        outcome.append(await run_benchmarks(reactor, config, scenarios, progress))

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit as e:
        if not outcome:
            return int(e.code or 1)
    results = outcome[0]
    for path in write_outputs(results, out, docs or None):
        print(f"benchmarks: wrote {path}", file=sys.stderr)
    print(render_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
