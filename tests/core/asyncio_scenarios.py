"""
The shared integration scenarios (:mod:`tests.core.context_scenarios`) on a
plain asyncio loop, no Twisted reactor anywhere: run as a program, one
fresh simulated host and context per scenario::

    python -m tests.core.asyncio_scenarios [--loop epoll|select] [NAME ...]

It prints ``ok NAME`` or ``FAIL NAME`` and a traceback for each, and exits
non-zero if any failed.  ``test_scenarios_on_asyncio`` runs it under trial.
"""
from __future__ import annotations

import argparse
import asyncio
import selectors
import sys
import traceback
import unittest
from typing import Any, List

from tests.core.context_scenarios import SCENARIOS, Kit


class _Checks(unittest.TestCase):
    """unittest's assertions, for a scenario's ``kit.check``."""

    def runTest(self) -> None:  # pragma: no cover - never run as a test
        pass


def _run_process(argv: List[str]) -> "asyncio.Future[int]":
    async def run() -> int:
        process = await asyncio.create_subprocess_exec(*argv)
        return await process.wait()

    return asyncio.ensure_future(run())


async def run_one(name: str) -> None:
    from txlibxl.context import Context
    from txlibxl.testing.asyncio_host import simulated_host

    async with simulated_host() as host:
        ctx = await Context.open_asyncio()
        try:
            if ctx.framework != "asyncio":
                raise AssertionError(f"the context's framework is {ctx.framework}")
            await SCENARIOS[name](Kit(ctx, host.control, _Checks(), asyncio.sleep, _run_process, asyncio.ensure_future))
        finally:
            await ctx.close()
    if "twisted.internet.reactor" in sys.modules:
        raise AssertionError("a Twisted reactor was installed")


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--loop", choices=("epoll", "select"), default="epoll")
    parser.add_argument("names", nargs="*", default=list(SCENARIOS))
    args = parser.parse_args(argv)
    selector = selectors.EpollSelector if args.loop == "epoll" else selectors.SelectSelector
    failed = 0
    for name in args.names:
        loop = asyncio.SelectorEventLoop(selector())
        try:
            loop.run_until_complete(asyncio.wait_for(run_one(name), 240))
            print(f"ok {name}", flush=True)
        except BaseException:
            failed += 1
            print(f"FAIL {name}", flush=True)
            traceback.print_exc(file=sys.stdout)
        finally:
            loop.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
