"""
The txlibxl side of the benchmarks: ``cclient``'s commands, on a
:class:`~txlibxl.context.Context` and the reactor.

``python -m benchmarks.pyclient COMMAND [ARGS]...`` runs in its own process
(so that its CPU time and memory are its own), finds the simulated host
the way ``tests/cclient/cclient.c`` does (the shim preloaded with
``LD_PRELOAD``, ``XENSTORED_PATH``, ``TXLIBXL_SIM_HYPERCALL`` and
``TXLIBXL_SIM_ROOT`` in the environment) and prints the same JSON lines
for the commands both clients have:

``quiet``, ``watch-death D...``, ``watch-death-all``, ``unwatch-all``,
``wait-events N [SECONDS]``, ``ops OP D...``, ``rusage``, ``sleep SECONDS``

and, as every Python client, ``collect`` (one full garbage collection:
:func:`~benchmarks.clientcommon.collect_line`); and one of its own:
``batched`` (before the watches) subscribes to the context's batches
(``Context.subscribe``) and makes the watches after it unbuffered, so
that events are counted per batch with no Deferred each.

(its ``rusage`` line also has ``gc_s`` and ``gc_full``: the time spent in
Python's garbage collector and the full collections run so far)

plus, for the memory scenario, ``trace-heap`` (start ``tracemalloc``) and
``heap`` (:func:`~benchmarks.clientcommon.heap_line`: traced bytes, split
into the library's, the client's and the rest), and for
:mod:`benchmarks.profile_storm`, ``profile-start`` and ``profile-stop
FILE`` (``cProfile`` over the commands between them, its stats written to
FILE).

An *event* is counted when it reaches its waiter: each watch has one
``next_event()`` Deferred outstanding, asked again after every event but
the domain's death, and an event is counted (and timestamped) in that
Deferred's callback.  That is the application's view, to set against the
C client counting in libxl's ``event_occurs``.

The command line, the lines and the readings are
:mod:`benchmarks.clientcommon`'s, shared with the other Python clients
(and still importable from here).

Exit status as cclient's: 0 ok, 1 some command failed, 2 setup failed,
3 ``wait-events`` timed out, 64 bad usage.
"""
from __future__ import annotations

import cProfile
import os
import sys
import time
from typing import Any, Awaitable, Callable, List, Optional, Sequence

from twisted.internet import defer, task

from .clientcommon import (  # noqa: F401 (the helpers' old home: re-exported)
    OPS,
    CollectorClock,
    EventTally,
    Usage,
    collector,
    emit,
    emit_event,
    parse,
    redirect_paths,
    rss_kb,
    collect_line,
    heap_line,
    rusage_line,
    trace_heap_line,
)

__all__ = ["main", "run_client", "Client", "EventCounter", "CollectorClock", "collector"]



class EventCounter(EventTally):
    """
    What every client of the benchmarks on the reactor does with events:
    count and time-stamp each one as it reaches the client
    (:meth:`~benchmarks.clientcommon.EventTally.count`), and let
    ``wait-events N`` wait until N have (:meth:`wait_events`, resumed by
    :meth:`resume_waiter`).
    """

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor
        self._wanted: Optional[int] = None
        self._waiting: Optional[defer.Deferred] = None

    def resume_waiter(self, later: bool = False) -> None:
        """
        Resume ``wait-events`` if enough events arrived: at once, or on the
        next reactor turn (C{later}, from inside libxl's callback).
        """
        if self._wanted is not None and self.seen >= self._wanted and self._waiting is not None:
            d, self._waiting = self._waiting, None
            if later:
                self.reactor.callLater(0, d.callback, None)
            else:
                d.callback(None)

    async def wait_events(self, count: int, seconds: float) -> bool:
        ok = True
        if self.seen < count:
            self._wanted = count
            self._waiting = defer.Deferred()
            waiting = self._waiting
            timer = self.reactor.callLater(seconds, lambda: waiting.called or waiting.callback("timeout"))
            result = await waiting
            if timer.active():
                timer.cancel()
            self._waiting = None
            self._wanted = None
            ok = result != "timeout" and self.seen >= count
        self.report(count, ok)
        return ok


class Client(EventCounter):
    """
    Runs the commands on a Context, printing cclient's lines.
    """

    def __init__(self, reactor: Any, ctx: Any) -> None:
        super().__init__(reactor)
        self.ctx = ctx
        self.quiet = False
        self.batched = False
        self.watches: List[Any] = []
        self.profile: Optional[cProfile.Profile] = None

    # Events.

    def _follow(self, watch: Any) -> None:
        watch.next_event().addCallbacks(self._event, self._ended, callbackArgs=(watch,))

    def _event(self, event: Any, watch: Any) -> None:
        t = self.count()
        kind = type(event).__name__
        if not self.quiet:
            emit_event(event, t)
        if kind != "DomainDeath":
            self._follow(watch)
        self.resume_waiter()

    def _ended(self, failure: Any) -> None:
        return None  # cancelled or context closed: nothing more to count

    def _batch(self, events: Any) -> None:
        t = self.count_batch(len(events))
        if not self.quiet:
            for event in events:
                emit_event(event, t)
        self.resume_waiter()

    # Commands.

    def watch(self, domid: int) -> int:
        if self.batched:  # its events come in the subscription's batches
            self.watches.append(self.ctx.watch_domain(domid, buffered=False))
            return 0
        watch = self.ctx.watch_domain(domid)
        self.watches.append(watch)
        self._follow(watch)
        return 0

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
                    rc = self._try(self.watch, domid)
                    emit({"cmd": "watch-death", "domid": domid, "rc": rc})
            elif name == "watch-death-all":
                count, rc = 0, 0
                for info in self.ctx.list_domains():
                    if info.domid == 0:
                        continue
                    rc = self._try(self.watch, info.domid)
                    if rc:
                        break
                    count += 1
                emit({"cmd": "watch-death-all", "rc": rc, "count": count})
            elif name == "unwatch-all":
                count = len(self.watches)
                for watch in self.watches:
                    watch.cancel()
                self.watches = []
                emit({"cmd": "unwatch-all", "count": count})
            elif name == "wait-events":
                if not await self.wait_events(command[1], command[2]):
                    sys.stdout.flush()
                    return 3
            elif name == "ops":
                await self.ops(command[1], command[2])
            elif name == "rusage":
                emit(rusage_line())
            elif name == "trace-heap":
                emit(trace_heap_line())
            elif name == "heap":
                emit(heap_line())
            elif name == "profile-start":
                self.profile = cProfile.Profile()
                self.profile.enable()
                emit({"cmd": "profile-start"})
            elif name == "profile-stop":
                if self.profile is not None:
                    self.profile.disable()
                    self.profile.dump_stats(command[1])
                emit({"cmd": "profile-stop", "file": command[1], "profiled": self.profile is not None})
                self.profile = None
            elif name == "collect":
                emit(collect_line())
            elif name == "sleep":
                await task.deferLater(self.reactor, command[1], lambda: None)
                emit({"cmd": "sleep", "seconds": command[1]})
            sys.stdout.flush()
        return 1 if self.failed else 0

    def _try(self, call: Any, *args: Any) -> int:
        from txlibxl.errors import LibxlError

        try:
            return call(*args)
        except LibxlError as e:
            self.failed = True
            return int(getattr(e, "code", -1) or -1)

    async def ops(self, op: str, domids: Sequence[int]) -> None:
        start = getattr(self.ctx, op)
        t_start = time.time()
        started = 0
        results: List[defer.Deferred] = []
        for domid in domids:
            try:
                d = start(domid)
            except Exception as e:  # refused before libxl took it
                d = defer.fail(e)
            else:
                started += 1
            results.append(d)
        outcomes = await defer.DeferredList(results, consumeErrors=True)
        t_end = time.time()
        failures = [value for ok, value in outcomes if not ok]
        first_rc = 0
        if failures:
            self.failed = True
            first_rc = int(getattr(failures[0].value, "code", -1) or -1)
        emit({
            "cmd": "ops",
            "op": op,
            "count": len(domids),
            "started": started,
            "failed": len(failures),
            "first_rc": first_rc,
            "t_start": t_start,
            "t_end": t_end,
        })


async def _main(reactor: Any, commands: Sequence[tuple]) -> int:
    from txlibxl.context import Context
    from txlibxl.errors import LibxlError

    try:
        ctx = Context(reactor, log_level="error")
    except LibxlError as e:
        emit({"setup": "libxl_ctx_alloc", "rc": int(getattr(e, "code", -1) or -1)})
        sys.stdout.flush()
        return 2
    redirect = redirect_paths()  # libxenlight is loaded now, as in cclient
    emit({"ready": True, "pid": os.getpid(), "redirect": redirect})
    sys.stdout.flush()
    client = Client(reactor, ctx)
    try:
        status = await client.run(commands)
    finally:
        await ctx.close()
    sys.stdout.flush()
    return status


def run_client(prog: str, argv: Optional[Sequence[str]], parse: Callable[[Sequence[str]], List[tuple]],
               main: Callable[[Any, Sequence[tuple]], Awaitable[int]]) -> int:
    """
    Parse C{argv} (default: ``sys.argv[1:]``) with C{parse}, then run
    C{main(reactor, commands)} under ``task.react``; returns the exit
    status (64 on bad usage).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    collector.install()
    try:
        commands = parse(args)
    except Usage as e:
        sys.stderr.write(f"{prog}: {e}\nusage: python -m benchmarks.{prog} COMMAND [ARGS]...\n")
        return 64
    status: List[int] = []

    async def run(reactor: Any) -> None:
        status.append(await main(reactor, commands))

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit as e:
        if not status:
            return int(e.code or 0) or 1
    return status[0] if status else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the commands on C{argv}; returns the exit status."""
    return run_client("pyclient", argv, parse, _main)


if __name__ == "__main__":
    sys.exit(main())
