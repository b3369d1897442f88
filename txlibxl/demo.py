"""
The demo: the real libxenlight, on a simulated Xen host, through txlibxl.

``python -m txlibxl.demo`` (what ``make demo`` runs) starts a simulated host
playing the shipped demo scenario (domains are created, rebooted, shut
down, crashed, have a CD ejected and are destroyed), opens a
:class:`~txlibxl.context.Context` on it, watches every domain it finds, and
prints each event as it reaches its watch.  It stops when the scenario has
played and every watched domain has died, or after ``--duration`` seconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, List, Optional, TextIO

from twisted.internet import defer, task

from .events import DiskEject, DomainDeath, DomainShutdown


def describe(event: Any) -> str:
    """
    One line for C{event}, as the demo prints it.
    """
    if isinstance(event, DomainShutdown):
        return f"domain {event.domid} shut down ({event.reason.name.lower()})"
    if isinstance(event, DomainDeath):
        return f"domain {event.domid} died"
    if isinstance(event, DiskEject):
        return f"domain {event.domid} ejected the medium of {event.vdev}"
    return repr(event)  # pragma: no cover


class Demo:
    """
    Watches every domain of a host and prints what happens to them.
    """

    def __init__(self, reactor: Any, ctx: Any, out: TextIO, started: float) -> None:
        self.reactor = reactor
        self.ctx = ctx
        self.out = out
        self.started = started
        self.watched: Dict[str, Any] = {}  # by uuid: domids are reused
        self.ejects: Dict[str, Any] = {}
        self.events: List[Any] = []

    def say(self, text: str) -> None:
        self.out.write(f"[{time.time() - self.started:6.2f}s] {text}\n")
        self.out.flush()

    def rescan(self) -> None:
        """
        Watch each domain not yet watched (and its CD-ROM, if it has one).
        """
        for info in self.ctx.list_domains():
            if info.domid == 0 or info.uuid in self.watched or info.dying:
                continue
            self.say(f"watching domain {info.domid} ({info.name})")
            watch = self.ctx.watch_domain(info.domid)
            self.watched[info.uuid] = watch
            self._follow(watch)
            try:
                eject = self.ctx.watch_disk_eject(info.domid, "hdc")
            except Exception:
                continue
            self.ejects[info.uuid] = eject
            self._follow(eject)

    def _follow(self, watch: Any) -> None:
        def shown(event: Any) -> None:
            self.events.append(event)
            self.say(describe(event))
            if isinstance(event, DomainDeath):
                eject = self.ejects.pop(event.uuid, None)
                if eject is not None:
                    eject.cancel()
            else:
                self._follow(watch)

        watch.next_event().addCallbacks(shown, lambda f: None)


def scenario_length(name: str) -> float:
    """
    When the last step of the shipped scenario C{name} happens, in seconds.
    """
    import json
    from importlib import resources

    text = resources.files("txlibxl.sim").joinpath("scenarios", f"{name}.json").read_text()
    return max((float(step.get("at", 0)) for step in json.loads(text)["steps"]), default=0.0)


async def run(reactor: Any, duration: float, out: TextIO) -> int:
    from .context import Context
    from .testing import start_simulated_host, use_simulated_host

    started = time.time()
    out.write("starting a simulated Xen host with the demo scenario...\n")
    host = await start_simulated_host(reactor, scenario="demo")
    undo = use_simulated_host(host)
    ctx = Context(reactor)
    demo = Demo(reactor, ctx, out, started)
    loop = task.LoopingCall(demo.rescan)
    loop.clock = reactor
    try:
        loop.start(0.25)
        deadline = started + duration
        played = started + scenario_length("demo") + 1.0
        while time.time() < deadline:
            await task.deferLater(reactor, 0.25, lambda: None)
            if time.time() > played and all(not w.active for w in demo.watched.values()):
                break
    finally:
        loop.stop()
        await ctx.close()
        undo()
        await host.stop()
    out.write(f"{len(demo.events)} events from {len(demo.watched)} domains.\n")
    return 0 if demo.events else 1


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m txlibxl.demo", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    args = parser.parse_args(argv)

    def go(reactor: Any) -> Any:
        d = defer.ensureDeferred(run(reactor, args.duration, sys.stdout))
        d.addCallback(lambda rc: sys.exit(rc) if rc else None)
        return d

    task.react(go)


if __name__ == "__main__":
    main()
