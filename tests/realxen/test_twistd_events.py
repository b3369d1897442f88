"""
``twistd libxl-events`` on real Xen: a real guest's whole lifecycle
streamed over HTTP as Server-Sent Events (``GET /events``).

Runs only in a Xen control domain (see :mod:`tests.realxen.guests`);
skipped with the reason elsewhere.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
from typing import Any, Dict, List

from twisted.internet import defer, protocol, reactor, task
from twisted.trial.unittest import TestCase

from .guests import RealGuestHost, poll, real_xen_unavailable, run
from .scenarios import GuestSpec

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


_UNAVAILABLE = real_xen_unavailable()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _Twistd(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value)


class _EventStream(protocol.Protocol):
    """Collects the JSON records of an SSE body."""

    def __init__(self) -> None:
        self.records: List[Dict[str, Any]] = []
        self._buffer = b""
        self.closed: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                self.records.append(json.loads(line[5:].strip()))

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class TwistdEventStreamTests(TestCase):
    """
    The plugin as an operator runs it in dom0, against the real hypervisor.
    """

    timeout = 420  # twistd's start and a guest's life, under TCG on a loaded machine
    if _UNAVAILABLE:
        skip = _UNAVAILABLE

    #: A command that runs twistd (a sandbox, say); empty: twistd itself.
    launcher: List[str] = []

    async def _start_twistd(self) -> str:
        port = _free_port()
        rundir = tempfile.mkdtemp(prefix="realxen-twistd-")
        proc = _Twistd()
        argv = [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "--nodaemon",
            "--pidfile=",
            "--logfile=" + os.path.join(rundir, "twistd.log"),
            "libxl-events",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
        ]
        argv = self.launcher + argv
        transport = reactor.spawnProcess(proc, argv[0], argv, env=os.environ, path=rundir)
        self.twistd_pid = transport.pid

        async def stop() -> None:
            if proc.ended.called:
                return
            transport.signalProcess(signal.SIGTERM)
            timer = reactor.callLater(30, lambda: proc.ended.called or transport.signalProcess(signal.SIGKILL))
            await proc.ended
            if timer.active():
                timer.cancel()

        self.addCleanup(lambda: defer.ensureDeferred(stop()))
        self.twistd_log = os.path.join(rundir, "twistd.log")
        base = f"http://127.0.0.1:{port}"

        async def healthy() -> bool:
            if proc.ended.called:
                raise AssertionError(f"twistd exited: {proc.output.decode(errors='replace')}\n{self._log()}")
            try:
                from twisted.web.client import Agent, readBody

                response = await Agent(reactor).request(b"GET", (base + "/healthz").encode())
                await readBody(response)
                return response.code == 200
            except Exception:
                return False

        try:
            await poll(reactor, healthy, "twistd libxl-events to answer /healthz", timeout=90)
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{proc.output.decode(errors='replace')}\n{self._log()}")
        return base

    def _log(self) -> str:
        try:
            with open(self.twistd_log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    async def _until(self, check: Any, what: str, stream: _EventStream) -> None:
        try:
            await poll(reactor, check, what, timeout=60)
        except TimeoutError as e:
            raise AssertionError(f"{e}; records so far: {stream.records}\n{self._log()}")

    async def _stream(self, base: str) -> _EventStream:
        from twisted.web.client import Agent
        from twisted.web.http_headers import Headers

        response = await Agent(reactor).request(
            b"GET", (base + "/events").encode(), Headers({b"Accept": [b"text/event-stream"]})
        )
        self.assertEqual(response.code, 200)
        stream = _EventStream()
        response.deliverBody(stream)
        self.addCleanup(lambda: (stream.transport and stream.transport.stopProducing(), stream.closed)[1])
        return stream

    @defer.inlineCallbacks
    def test_a_guests_lifecycle_streams_over_http_in_order(self) -> Any:
        guests = RealGuestHost(reactor, tempfile.mkdtemp(prefix="realxen-"))
        self.addCleanup(lambda: defer.ensureDeferred(guests.cleanup()))
        base = yield defer.ensureDeferred(self._start_twistd())
        stream = yield defer.ensureDeferred(self._stream(base))
        domid = yield defer.ensureDeferred(guests.start(GuestSpec("poweroff")))
        yield run("xl", "unpause", str(domid))

        def mine() -> List[Dict[str, Any]]:
            return [r for r in stream.records if r.get("domid") == domid]

        async def shut_down() -> bool:
            return any(r.get("type") == "shutdown" for r in mine())

        yield defer.ensureDeferred(self._until(shut_down, f"a shutdown record of domain {domid}", stream))
        yield run("xl", "destroy", str(domid))

        async def dead() -> bool:
            return any(r.get("type") == "death" for r in mine())

        yield defer.ensureDeferred(self._until(dead, f"a death record of domain {domid}", stream))
        yield task.deferLater(reactor, 1.0, lambda: None)  # nothing more may follow
        lifecycle = [(r["type"], r.get("reason")) for r in mine()]
        self.assertEqual(
            lifecycle, [("new", None), ("shutdown", "poweroff"), ("death", None)], self._log()
        )
        try:
            from txlibxl.daemon.records import check_record
        except ImportError:
            check_record = None
        for record in mine():
            if record["type"] == "new" and record.get("name") is None:
                # Found while libxl was still building it (the domain exists
                # before its name is written): its later records name it.
                pass
            else:
                self.assertEqual(record.get("name"), guests.names[domid], record)
            if check_record is not None:
                check_record(record)
        seqs = [r["seq"] for r in stream.records]
        self.assertEqual(seqs, sorted(set(seqs)))
