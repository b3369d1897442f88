"""
``python -m tests.core.migration_peer``: a second host for migration
tests.  It starts a simulated host of its own, points its libxenlight at
it, opens a Context, and answers JSON commands, one a line on stdin, with
one JSON line each on stdout (``{"id": N, ...}``); what happens on its
own (a domain arrived, a migration failed here) comes as ``{"event": ...}``.

Commands: ``listen`` (``unix``: a socket path; or ``tls``: the server's
certificate, its key and the clients' CA, PEM paths; or neither: plain
TCP; the reply has the TCP port), ``migrate`` (``domid``,
``endpoint``), ``cancel_incoming``, ``guests`` (each guest's domid, uuid,
state and marker), ``quiet`` (libxl's fds, timers, children and
operations), ``stop``.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Dict

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver

from txlibxl.migration import listen_for_migrations, tls_server_options
from txlibxl.testing.inprocess import use_simulated_host
from txlibxl.testing.simhost import start_simulated_host


class Peer(LineReceiver):
    delimiter = b"\n"

    def __init__(self, ctx: Any, host: Any, finished: defer.Deferred) -> None:
        self.ctx = ctx
        self.host = host
        self.finished = finished
        self.listener: Any = None

    def say(self, **fields: Any) -> None:
        self.transport.write(json.dumps(fields).encode() + b"\n")

    def lineReceived(self, line: bytes) -> None:
        request = json.loads(line)
        d = defer.ensureDeferred(self.handle(request))

        def failed(f: Any) -> None:
            e = f.value
            self.say(id=request.get("id"), error=type(e).__name__, code=getattr(e, "code", None),
                     side=getattr(e, "side", None), message=str(e))

        d.addCallbacks(lambda reply: self.say(id=request.get("id"), **reply), failed)

    async def handle(self, request: Dict[str, Any]) -> Dict[str, Any]:
        cmd = request["cmd"]
        if cmd == "listen":
            kind: Dict[str, Any] = {}
            if "unix" in request:
                kind["unix"] = request["unix"]
            elif "tls" in request:
                cert, key, ca = request["tls"]
                kind["tls"] = tls_server_options(cert, key, ca)
            else:
                kind["allow_plain_tcp"] = True
            self.listener = await listen_for_migrations(
                self.ctx, **kind,
                on_arrival=lambda domid, config: self.say(event="arrived", domid=domid),
                on_failure=lambda e: self.say(event="failed", error=type(e).__name__, message=str(e)))
            host = self.listener.port.getHost()
            return {"ok": "listening", "port": getattr(host, "port", None)}
        if cmd == "migrate":
            domid = await self.ctx.migrate(request["domid"], request["endpoint"])
            return {"ok": "migrated", "domid": domid}
        if cmd == "cancel_incoming":
            self.listener.cancel_incoming()
            return {"ok": "cancelled"}
        if cmd == "guests":
            guests = []
            for d in self.ctx.list_domains():
                if d.domid == 0:
                    continue
                info = await self.host.control.info(d.domid)
                guests.append({"domid": d.domid, "uuid": info["uuid"], "state": info["state"],
                               "marker": info.get("marker")})
            return {"guests": guests}
        if cmd == "quiet":
            stats = self.ctx.osevents.stats()
            return {"fds": stats.fds, "timers": stats.timers, "children": len(self.ctx.running_children),
                    "operations": self.ctx.operations_in_flight,
                    "incoming": self.listener.incoming if self.listener else 0}
        if cmd == "stop":
            from twisted.internet import reactor

            try:
                if self.listener is not None:
                    await self.listener.stop()
                await self.ctx.close()
            finally:
                # The process ends even if stopping failed (the reply says how).
                reactor.callLater(0.1, self.finished.callback, None)
            return {"ok": "stopped"}
        raise ValueError(f"unknown command {cmd!r}")


async def main(reactor: Any) -> None:
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    host = await start_simulated_host()
    try:
        use_simulated_host(host)
        from txlibxl.context import Context

        ctx = Context(reactor)
        finished: defer.Deferred = defer.Deferred()
        peer = Peer(ctx, host, finished)
        stdio.StandardIO(peer, reactor=reactor)
        peer.say(event="ready")
        await finished
    finally:
        await host.stop()



if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    sys.exit(0)
