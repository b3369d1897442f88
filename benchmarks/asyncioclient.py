"""
The txlibxl client of the benchmarks on a plain asyncio loop: a
:class:`~txlibxl.context.Context` opened with
:meth:`~txlibxl.context.Context.open_asyncio`, no Twisted reactor in the
process.

``python -m benchmarks.asyncioclient COMMAND [ARGS]...`` takes the
commands of a death storm (``quiet``, ``watch-death D...``, ``rusage``,
``wait-events N [SECONDS]``) and prints the same JSON lines as
``cclient`` and :mod:`benchmarks.pyclient` (its ``rusage`` line also has
``gc_s`` and ``gc_full``).  Its ``ready`` line also says whether
``twisted.internet.reactor`` was imported (``"reactor": false``, which the
runner checks): the process measures txlibxl on asyncio alone.

An event is counted as :mod:`benchmarks.pyclient` counts it, when it
reaches its waiter: each watch has one ``next_event()`` future
outstanding, asked again after every event but the domain's death, and an
event is counted (and timestamped) in that future's done callback, which
asyncio runs on the loop turn after the future is resolved.  The loop is
``asyncio.run``'s default, the selector loop on epoll, as the Twisted
client's reactor is.

Exit status as cclient's: 0 ok, 1 some command failed, 2 setup failed,
3 ``wait-events`` timed out, 64 bad usage.
"""
from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, List, Optional, Sequence

from .clientcommon import EventTally, Usage, collect_line, collector, emit, emit_event, parse_storm, redirect_paths, rusage_line

__all__ = ["main", "AsyncioClient", "parse", "reactor_imported"]



def parse(argv: Sequence[str]) -> List[tuple]:
    """
    The commands on C{argv} (the death storm's subset of cclient's).

    :raises benchmarks.clientcommon.Usage: an unknown command or a bad argument.
    """
    return parse_storm(argv, "asyncioclient")


def reactor_imported() -> bool:
    """Whether this process has imported (and so installed) a Twisted reactor."""
    return "twisted.internet.reactor" in sys.modules


class AsyncioClient(EventTally):
    """
    Runs the storm's commands on a Context on the asyncio loop C{loop},
    printing cclient's lines.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx: Any) -> None:
        super().__init__()
        self.loop = loop
        self.ctx = ctx
        self.quiet = False
        self.batched = False
        self.watches: List[Any] = []
        self._wanted: Optional[int] = None
        self._waiting: Optional["asyncio.Future[bool]"] = None

    # Events.

    def _follow(self, watch: Any) -> None:
        watch.next_event().add_done_callback(lambda future: self._event(future, watch))

    def _event(self, future: "asyncio.Future[Any]", watch: Any) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # the watch ended (cancelled, context closed): nothing more to count
        event = future.result()
        t = self.count()
        kind = type(event).__name__
        if not self.quiet:
            emit_event(event, t)
        if kind != "DomainDeath":
            self._follow(watch)
        if self._wanted is not None and self.seen >= self._wanted and self._waiting is not None:
            if not self._waiting.done():
                self._waiting.set_result(True)

    def _batch(self, events: Any) -> None:
        t = self.count_batch(len(events))
        if not self.quiet:
            for event in events:
                emit_event(event, t)
        if self._wanted is not None and self.seen >= self._wanted and self._waiting is not None:
            if not self._waiting.done():
                self._waiting.set_result(True)

    # Commands.

    def watch(self, domid: int) -> int:
        from txlibxl.errors import LibxlError

        try:
            watch = self.ctx.watch_domain(domid, buffered=not self.batched)
        except LibxlError as e:
            self.failed = True
            return int(getattr(e, "code", -1) or -1)
        self.watches.append(watch)
        if not self.batched:
            self._follow(watch)
        return 0

    async def wait_events(self, count: int, seconds: float) -> bool:
        """Wait until C{count} events have arrived, at most C{seconds}; write the line."""
        ok = True
        if self.seen < count:
            self._wanted = count
            self._waiting = waiting = self.loop.create_future()
            timer = self.loop.call_later(seconds, lambda: waiting.done() or waiting.set_result(False))
            ok = await waiting
            timer.cancel()
            self._waiting = self._wanted = None
            ok = ok and self.seen >= count
        self.report(count, ok)
        return ok

    async def run(self, commands: Sequence[tuple]) -> int:
        for command in commands:
            name = command[0]
            if name == "quiet":
                self.quiet = True
            elif name == "batched":
                self.batched = True
                self.ctx.subscribe(self._batch)
            elif name == "watch-death":
                for domid in command[1]:
                    emit({"cmd": "watch-death", "domid": domid, "rc": self.watch(domid)})
            elif name == "wait-events":
                if not await self.wait_events(command[1], command[2]):
                    sys.stdout.flush()
                    return 3
            elif name == "rusage":
                emit(rusage_line())
            elif name == "collect":
                emit(collect_line())
            elif name == "sleep":
                await asyncio.sleep(command[1])
                emit({"cmd": "sleep", "seconds": command[1]})
            sys.stdout.flush()
        return 1 if self.failed else 0


async def _main(commands: Sequence[tuple]) -> int:
    from txlibxl.context import Context
    from txlibxl.errors import TxlibxlError

    loop = asyncio.get_running_loop()
    try:
        ctx = await Context.open_asyncio(loop, log_level="error")
    except TxlibxlError as e:
        emit({"setup": "libxl_ctx_alloc", "rc": int(getattr(e, "code", -1) or -1), "error": str(e)})
        sys.stdout.flush()
        return 2
    redirect = redirect_paths()  # libxenlight is loaded now, as in cclient
    emit({"ready": True, "pid": os.getpid(), "redirect": redirect, "reactor": reactor_imported()})
    sys.stdout.flush()
    client = AsyncioClient(loop, ctx)
    try:
        status = await client.run(commands)
    finally:
        await ctx.close()
    sys.stdout.flush()
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the commands on C{argv} (default: ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    collector.install()
    try:
        commands = parse(args)
    except Usage as e:
        sys.stderr.write(f"asyncioclient: {e}\nusage: python -m benchmarks.asyncioclient COMMAND [ARGS]...\n")
        return 64
    return asyncio.run(_main(commands))


if __name__ == "__main__":
    sys.exit(main())
