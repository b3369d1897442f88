"""
``python -m benchmarks.movingclient RUNDIR``: txlibxl's side of the
moving benchmark, on the simulated host whose run directory is RUNDIR.
One JSON command a line on stdin, one JSON reply a line on stdout
(``{"id": N, ...}``); an operation's reply has its wall time ``t`` (from
the call to its Deferred firing, on the epoll reactor).

Commands: ``create`` (``config``, ``image_kb``: a running guest with a
memory image of that size), ``config`` (``domid``), ``save`` (``domid``,
``path``; ``live``, ``then`` as :meth:`~txlibxl.context.Context.save`'s), ``save_to_pipe`` (``domid``: a live checkpoint into a pipe a thread
drains; its ``t`` and ``bytes``), ``restore`` (``config``, ``path``; unpaused), ``listen``
(``unix``), ``migrate`` (``domid``, ``endpoint``), ``destroy``
(``domid``), ``stop``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver


class Client(LineReceiver):
    delimiter = b"\n"

    def __init__(self, ctx: Any, host: Any, finished: defer.Deferred) -> None:
        self.ctx = ctx
        self.host = host
        self.finished = finished
        self.listener: Any = None

    def lineReceived(self, line: bytes) -> None:
        request = json.loads(line)
        d = defer.ensureDeferred(self.handle(request))
        d.addCallbacks(lambda reply: self.say(id=request["id"], **reply),
                       lambda f: self.say(id=request["id"], error=f"{type(f.value).__name__}: {f.value}"))

    async def save_to_pipe(self, domid: int) -> float:
        """A live checkpoint of C{domid} into a pipe that a thread drains
        (what libxl and its helper manage alone): its seconds."""
        import threading

        from txlibxl.migration.protocol import PIPE_SIZE, enlarge_pipe

        r, w = os.pipe2(os.O_CLOEXEC)
        enlarge_pipe(w)
        self.drained = 0

        def drain() -> None:
            while True:
                data = os.read(r, PIPE_SIZE)
                if not data:
                    break
                self.drained += len(data)

        reader = threading.Thread(target=drain)
        reader.start()
        started = time.monotonic()
        try:
            await self.ctx.save(domid, w, live=True, then="resume")
        finally:
            os.close(w)
            reader.join()
            os.close(r)
        return time.monotonic() - started

    def say(self, **fields: Any) -> None:
        self.transport.write(json.dumps(fields).encode() + b"\n")

    async def handle(self, r: Dict[str, Any]) -> Dict[str, Any]:
        cmd = r["cmd"]
        if cmd == "create":
            domid = await self.ctx.create(r["config"])
            await self.ctx.unpause(domid)
            await self.host.guest_image(domid, r["image_kb"])
            return {"domid": domid}
        if cmd == "config":
            return {"config": await self.ctx.domain_config(r["domid"])}
        started = time.monotonic()
        if cmd == "save":
            await self.ctx.save(r["domid"], r["path"], live=r.get("live", False), then=r.get("then", "destroy"))
            return {"t": time.monotonic() - started}
        if cmd == "save_to_pipe":
            return {"t": await self.save_to_pipe(r["domid"]), "bytes": self.drained}
        if cmd == "restore":
            domid = await self.ctx.restore(r["config"], r["path"])
            t = time.monotonic() - started
            await self.ctx.unpause(domid)
            return {"domid": domid, "t": t}
        if cmd == "listen":
            from txlibxl.migration import listen_for_migrations

            self.listener = await listen_for_migrations(self.ctx, unix=r["unix"])
            return {}
        if cmd == "migrate":
            domid = await self.ctx.migrate(r["domid"], r["endpoint"])
            return {"domid": domid, "t": time.monotonic() - started}
        if cmd == "destroy":
            await self.ctx.destroy(r["domid"])
            return {}
        if cmd == "stop":
            from twisted.internet import reactor

            if self.listener is not None:
                await self.listener.stop()
            await self.ctx.close()
            reactor.callLater(0.1, self.finished.callback, None)
            return {}
        raise ValueError(f"unknown command {cmd!r}")


async def main(reactor: Any, rundir: str) -> None:
    from txlibxl.testing.inprocess import use_simulated_host
    from txlibxl.testing.simhost import read_host_json
    from txlibxl.sim.control import ControlClient

    use_simulated_host(rundir)
    from txlibxl.context import Context

    info = read_host_json(os.path.join(rundir, "host.json"))
    control = await ControlClient.connect(reactor, info["control"])
    ctx = Context(reactor)
    finished: defer.Deferred = defer.Deferred()
    stdio.StandardIO(Client(ctx, control, finished), reactor=reactor)
    await finished
    await control.disconnect()


if __name__ == "__main__":
    from twisted.internet import epollreactor

    epollreactor.install()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1])))
