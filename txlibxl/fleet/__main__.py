"""
``python -m txlibxl.fleet``: read a fleet's stream, print its records once
each as JSON lines, and serve the live page.  ``--help`` lists the options;
``docs/fleet.rst`` explains them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, List, Optional

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m txlibxl.fleet", description=__doc__.strip().splitlines()[0])
    p.add_argument("--amqp", required=True, help="amqp://user:password@node1:5672,node2:5672/vhost")
    p.add_argument("--stream", default="txlibxl.events", help="the stream queue (txlibxl.events)")
    p.add_argument("--state-dir", required=True, help="where the checkpoint (offset and chains) is kept")
    p.add_argument("--from", dest="start", default="first",
                   help="without a checkpoint: first, last, next, an offset, an age (10m) or an ISO time (first)")
    p.add_argument("--reset", action="store_true", help="ignore the stored checkpoint and read from --from")
    p.add_argument("--output", "-o", default="-", help="JSON lines to this file, '-' for standard output (-)")
    p.add_argument("--listen", default="tcp:8090:interface=127.0.0.1",
                   help="the live page's Twisted endpoint (tcp:8090:interface=127.0.0.1); 'none' for no page")
    p.add_argument("--ready-file", help="write {pid, listen} as JSON here once listening")
    p.add_argument("--hold-seconds", type=float, default=30.0,
                   help="longest wait for a host's missing message before going on without it (30)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error"))
    p.add_argument("--reactor", help="a Twisted reactor name (epoll, poll, select, asyncio); the default one otherwise")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.reactor:
        from twisted.application.reactors import NoSuchReactor, installReactor

        try:
            installReactor(args.reactor)
        except NoSuchReactor:
            print(f"txlibxl.fleet: no reactor named {args.reactor!r}", file=sys.stderr)
            return 2
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner,
                                textFileLogObserver)

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(args.log_level))
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])],
                                     redirectStandardIO=False)
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    from txlibxl.amqp.topology import StreamTopology
    from txlibxl.amqp.url import parse_broker_url

    from .app import FleetConsumer
    from .checkpoint import CheckpointError
    from .output import LinesOutput
    from .reader import parse_start
    from .web import FleetSite

    try:
        url = parse_broker_url(args.amqp)
        start = parse_start(args.start)
        topology = StreamTopology(stream=args.stream)
        endpoint = None if args.listen == "none" else serverFromString(reactor, args.listen)
        output = LinesOutput(args.output)
        consumer = FleetConsumer(reactor, url, topology, os.path.abspath(args.state_dir), output, start,
                                 reset=args.reset, hold_seconds=args.hold_seconds)
    except (ValueError, OSError, CheckpointError) as e:
        print(f"txlibxl.fleet: {e}", file=sys.stderr)
        return 2
    site = FleetSite(reactor, consumer.state)
    failed: List[str] = []

    def listening(port: Any) -> None:
        host = port.getHost()
        address = f"tcp:{host.host}:{host.port}" if getattr(host, "type", "") in ("TCP", "TCP6") else f"unix:{host.name}"
        print(f"txlibxl.fleet: the live page is on {address}", file=sys.stderr)
        write_ready(address)

    def write_ready(address: Optional[str]) -> None:
        if args.ready_file:
            temporary = args.ready_file + ".tmp"
            with open(temporary, "w") as f:
                json.dump({"pid": os.getpid(), "listen": address}, f)
            os.replace(temporary, args.ready_file)

    def cannot_listen(failure: Any) -> None:
        failed.append(f"cannot listen on {args.listen}: {failure.getErrorMessage()}")
        reactor.stop()

    def run() -> None:
        consumer.start()
        site.start()
        if endpoint is not None:
            endpoint.listen(site).addCallbacks(listening, cannot_listen)
        else:
            write_ready(None)

    async def shutdown() -> None:
        site.stop()
        await consumer.stop()

    from twisted.internet import defer

    reactor.callWhenRunning(run)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(shutdown()))
    reactor.run()
    if failed:
        print(f"txlibxl.fleet: {failed[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
