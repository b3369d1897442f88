"""
The txlibxl side of the create benchmark (:mod:`benchmarks.create`).

``python -m benchmarks.createclient CONFIG.json N`` creates a domain from
C{CONFIG.json} (libxl's JSON) through
:meth:`~txlibxl.context.Context.create`, destroys it with
:meth:`~txlibxl.context.Context.destroy`, N times one after the other, and
prints the lines ``cclient rusage create CONFIG.json destroy last ...
rusage`` prints: a ``rusage`` line before and after, and one ``create``
and one ``destroy`` line per cycle.  It finds the simulated host as
``cclient`` and :mod:`benchmarks.pyclient` do (the environment).

Exit status: 0 ok, 1 a create or destroy failed, 2 setup failed, 64 bad
usage.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from .clientcommon import Usage, emit, redirect_paths, rusage_line
from .pyclient import run_client

__all__ = ["main", "parse"]


def parse(argv: Sequence[str]) -> List[tuple]:
    """
    C{CONFIG.json N}: the config, read now, and the number of cycles.

    :raises Usage: not two arguments, an unreadable config, a bad N.
    """
    if len(argv) != 2:
        raise Usage("expected CONFIG.json N")
    try:
        with open(argv[0]) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise Usage(f"cannot read {argv[0]}: {e}")
    if not argv[1].isdigit():
        raise Usage(f"not a count: {argv[1]!r}")
    return [("cycles", config, int(argv[1]))]


async def _cycles(ctx: Any, config: Dict[str, Any], count: int) -> int:
    from txlibxl.errors import LibxlError

    consoles: List[Any] = []
    emit(rusage_line())
    for _ in range(count):
        try:
            domid = await ctx.create(config, on_console=consoles.append)
        except LibxlError as e:
            emit({"cmd": "create", "rc": e.code, "domid": None})
            return 1
        emit({"cmd": "create", "rc": 0, "domid": domid, "console_available": bool(consoles), "t": time.time()})
        consoles.clear()
        try:
            await ctx.destroy(domid)
        except LibxlError as e:
            emit({"cmd": "destroy", "domid": domid, "rc": e.code})
            return 1
        emit({"cmd": "destroy", "domid": domid, "rc": 0, "t": time.time()})
    emit(rusage_line())
    return 0


async def _main(reactor: Any, commands: Sequence[tuple]) -> int:
    from txlibxl.context import Context
    from txlibxl.errors import LibxlError

    try:
        ctx = Context(reactor, log_level="error")
    except LibxlError as e:
        emit({"setup": "libxl_ctx_alloc", "rc": int(getattr(e, "code", -1) or -1)})
        sys.stdout.flush()
        return 2
    emit({"ready": True, "pid": os.getpid(), "redirect": redirect_paths()})
    [(_, config, count)] = commands
    try:
        status = await _cycles(ctx, config, count)
    finally:
        await ctx.close()
    sys.stdout.flush()
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the cycles on C{argv}; returns the exit status."""
    return run_client("createclient", argv, parse, _main)


if __name__ == "__main__":
    sys.exit(main())
