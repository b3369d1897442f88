"""
The Python floor of the benchmarks: txlibxl's binding and reactor hooks,
without its event layer.

``python -m benchmarks.bindingclient COMMAND [ARGS]...`` takes the
commands of a death storm (``quiet``, ``watch-death D...``, ``rusage``,
``wait-events N [SECONDS]``) and prints the same JSON lines as
``cclient`` and :mod:`benchmarks.pyclient`.  It drives libxl exactly as
the C client does, on the same reactor integration txlibxl uses
(:class:`~txlibxl.loop.reactor_osevents.ReactorOSEvents`,
:class:`~txlibxl.loop.reactor_children.ReactorChildReaper`): each event is counted in
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
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import task

from .clientcommon import collect_line, emit, parse_storm, redirect_paths, rusage_line
from .pyclient import EventCounter, run_client

__all__ = ["main", "BindingClient"]

_EVENT_DOMAIN_DEATH = 2


def parse(argv: Sequence[str]) -> List[tuple]:
    """
    The commands on C{argv} (the death storm's subset of cclient's).

    :raises benchmarks.clientcommon.Usage: an unknown command or a bad argument.
    """
    return parse_storm(argv, "bindingclient")


class BindingClient(EventCounter):
    """
    Counts libxl's events as the binding hands out each batch it took after a
    libxl call (libxl's own callback runs no Python any more).
    """

    def __init__(self, reactor: Any, ctx: Any) -> None:
        super().__init__(reactor)
        self.ctx = ctx
        self.generators: Dict[int, Any] = {}
        self.next_user = 1

    def on_event(self, raw: Any) -> None:
        self.count()
        if raw.type == _EVENT_DOMAIN_DEATH:
            generator = self.generators.pop(raw.for_user, None)
            if generator is not None:
                self.ctx.evdisable_domain_death(generator)
        # The command loop must not run inside libxl's callback.
        self.resume_waiter(later=True)

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
            elif name == "collect":
                emit(collect_line())
            elif name == "sleep":
                await task.deferLater(self.reactor, command[1], lambda: None)
                emit({"cmd": "sleep", "seconds": command[1]})
            sys.stdout.flush()
        return 1 if self.failed else 0

    def close(self) -> None:
        for generator in self.generators.values():
            self.ctx.evdisable_domain_death(generator)
        self.generators.clear()


async def _main(reactor: Any, commands: Sequence[tuple]) -> int:
    from txlibxl._libxl import binding
    from txlibxl.loop.reactor_children import ReactorChildReaper
    from txlibxl.errors import LibxlError
    from txlibxl.loop.reactor_osevents import ReactorOSEvents

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
    return run_client("bindingclient", argv, parse, _main)


if __name__ == "__main__":
    sys.exit(main())
