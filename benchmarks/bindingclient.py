"""
The Python floor of the benchmarks: txlibxl's binding and reactor hooks,
without its event layer.

``python -m benchmarks.bindingclient COMMAND [ARGS]...`` takes the
commands of a death storm (``quiet``, ``watch-death D...``, ``rusage``,
``wait-events N [SECONDS]``) and prints the same JSON lines as
``cclient`` and :mod:`benchmarks.pyclient`.  It drives libxl exactly as
the C client does, on the same reactor integration txlibxl uses
(:class:`~txlibxl.osevent.ReactorOSEvents`,
:class:`~txlibxl.childproc.ReactorChildReaper`): each event is counted in
libxl's ``event_occurs`` callback itself, and a death disables its
generator there, with no queue, no event value and no Deferred.

Set against the C client it measures what crossing into Python costs
(cffi, the binding's copy, the reactor's hooks); set against
:mod:`benchmarks.pyclient` it measures what txlibxl's event layer adds
(the queue drained on the next turn, the immutable values, the watches
and their Deferreds).  It is a measuring instrument, not an API: an
application that counts inside libxl's callback gives up the guarantees
the event layer exists for.

Exit status as cclient's: 0 ok, 1 some command failed, 2 setup failed,
3 ``wait-events`` timed out, 64 bad usage.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer, task

from .pyclient import Usage, collector, emit, redirect_paths, rusage_line

__all__ = ["main", "BindingClient"]

_EVENT_DOMAIN_DEATH = 2


def parse(argv: Sequence[str]) -> List[tuple]:
    """
    The commands on C{argv} (the death storm's subset of cclient's).

    :raises Usage: an unknown command or a bad argument.
    """
    from .pyclient import parse as parse_all

    commands = parse_all(argv)
    for command in commands:
        if command[0] not in ("quiet", "watch-death", "rusage", "wait-events"):
            raise Usage(f"{command[0]} is not a bindingclient command")
    return commands


class BindingClient:
    """
    Counts libxl's events inside its callback, as the C client does.
    """

    def __init__(self, reactor: Any, ctx: Any) -> None:
        self.reactor = reactor
        self.ctx = ctx
        self.generators: Dict[int, Any] = {}
        self.next_user = 1
        self.seen = 0
        self.t_first: Optional[float] = None
        self.t_last: Optional[float] = None
        self.wanted: Optional[int] = None
        self.waiting: Optional[defer.Deferred] = None
        self.failed = False

    def on_event(self, raw: Any) -> None:
        t = time.time()
        self.seen += 1
        if self.t_first is None:
            self.t_first = t
        self.t_last = t
        if raw.type == _EVENT_DOMAIN_DEATH:
            generator = self.generators.pop(raw.for_user, None)
            if generator is not None:
                self.ctx.evdisable_domain_death(generator)
        if self.wanted is not None and self.seen >= self.wanted and self.waiting is not None:
            d, self.waiting = self.waiting, None
            # Resumed on the next turn: the command loop must not run
            # inside libxl's callback.
            self.reactor.callLater(0, d.callback, None)

    def on_disaster(self, kind: int, message: str, errnoval: int) -> None:
        sys.stderr.write(f"bindingclient: libxl disaster: {message}\n")
        self.failed = True

    def watch(self, domid: int) -> int:
        from txlibxl.errors import LibxlError

        user = self.next_user
        self.next_user += 1
        try:
            self.generators[user] = self.ctx.evenable_domain_death(domid, user)
        except LibxlError as e:
            self.failed = True
            return int(getattr(e, "code", -1) or -1)
        return 0

    async def wait_events(self, count: int, seconds: float) -> bool:
        ok = True
        if self.seen < count:
            self.wanted = count
            waiting = self.waiting = defer.Deferred()
            timer = self.reactor.callLater(seconds, lambda: waiting.called or waiting.callback("timeout"))
            result = await waiting
            if timer.active():
                timer.cancel()
            self.waiting = None
            self.wanted = None
            ok = result != "timeout" and self.seen >= count
        emit({"cmd": "wait-events", "wanted": count, "seen": self.seen, "timeout": not ok,
              "t_first": self.t_first, "t_last": self.t_last})
        self.seen = self.seen - count if ok else 0
        self.t_first = self.t_last = None
        return ok

    async def run(self, commands: Sequence[tuple]) -> int:
        for command in commands:
            name = command[0]
            if name == "watch-death":
                for domid in command[1]:
                    emit({"cmd": "watch-death", "domid": domid, "rc": self.watch(domid)})
            elif name == "wait-events":
                if not await self.wait_events(command[1], command[2]):
                    sys.stdout.flush()
                    return 3
            elif name == "rusage":
                emit(rusage_line())
            sys.stdout.flush()
        return 1 if self.failed else 0

    def close(self) -> None:
        for generator in self.generators.values():
            self.ctx.evdisable_domain_death(generator)
        self.generators.clear()


async def _main(reactor: Any, commands: Sequence[tuple]) -> int:
    from txlibxl._libxl import binding
    from txlibxl.childproc import ReactorChildReaper
    from txlibxl.errors import LibxlError
    from txlibxl.osevent import ReactorOSEvents

    try:
        ctx = binding.Ctx.alloc(lambda level, message: None, 8)  # XTL_ERROR and up
    except LibxlError as e:
        emit({"setup": "libxl_ctx_alloc", "rc": int(getattr(e, "code", -1) or -1)})
        sys.stdout.flush()
        return 2
    osevents = ReactorOSEvents(reactor, ctx)
    ctx.register_osevent_hooks(osevents)
    children = ReactorChildReaper(reactor, ctx)
    ctx.set_childproc_mainloop(children)
    client = BindingClient(reactor, ctx)
    ctx.register_event_callbacks(client.on_event, client.on_disaster)
    redirect = redirect_paths()
    emit({"ready": True, "pid": os.getpid(), "redirect": redirect})
    sys.stdout.flush()
    try:
        return await client.run(commands)
    finally:
        client.close()
        ctx.free()
        osevents.close()
        children.close()
        sys.stdout.flush()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the commands on C{argv}; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    collector.install()
    try:
        commands = parse(args)
    except Usage as e:
        sys.stderr.write(f"bindingclient: {e}\nusage: python -m benchmarks.bindingclient COMMAND [ARGS]...\n")
        return 64
    status: List[int] = []

    async def run(reactor: Any) -> None:
        status.append(await _main(reactor, commands))

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit as e:
        if not status:
            return int(e.code or 0) or 1
    return status[0] if status else 1


if __name__ == "__main__":
    sys.exit(main())
