"""
Live migration between two simulated hosts, each with its own libxl and
Context: this process (host A) and a peer process (host B,
``tests.core.migration_peer``), over unix sockets.  A domain goes A -> B
-> A with its state; a failure on either side (a cancel, the target
killed mid-stream, a peer that does not speak the protocol) ends with a
typed error, the domain running on the source and nothing on the target.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import sys
from typing import Any, Dict, List

from twisted.internet import defer, protocol, reactor, task

from txlibxl import errors
from txlibxl.migration import MigrationCancelled, MigrationFailed, listen_for_migrations

from tests.core.test_moving_on_sim import MovingTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PeerProcess(protocol.ProcessProtocol):
    """The peer host: requests answered in order, events collected."""

    def __init__(self) -> None:
        self.buffer = b""
        self.waiting: Dict[int, defer.Deferred] = {}
        self.events: List[Dict[str, Any]] = []
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()
        self.next_id = 0
        self.stderr = b""

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            message = json.loads(line)
            if "event" in message:
                self.events.append(message)
                if message["event"] == "ready" and not self.ready.called:
                    self.ready.callback(None)
            else:
                self.waiting.pop(message["id"]).callback(message)

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-20000:]

    def processEnded(self, reason: Any) -> None:
        # Ended first: what the failures below start (a test's cleanups)
        # must see the peer gone.
        self.end_reason = reason.value
        self.ended.callback(None)
        waiting, self.waiting = self.waiting, {}
        for d in waiting.values():
            d.errback(RuntimeError(f"the peer ended ({reason.value}): "
                                   + self.stderr.decode(errors="replace")[-3000:]))
        if not self.ready.called:
            self.ready.errback(RuntimeError("the peer ended: " + self.stderr.decode(errors="replace")))

    def call(self, cmd: str, **args: Any) -> defer.Deferred:
        if self.ended.called:
            return defer.fail(RuntimeError("the peer ended: " + self.stderr.decode(errors="replace")[-3000:]))
        self.next_id += 1
        d = self.waiting[self.next_id] = defer.Deferred()
        self.transport.write(json.dumps(dict(args, cmd=cmd, id=self.next_id)).encode() + b"\n")
        return d


class MigrationTestCase(MovingTestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        # AF_UNIX paths are short: the sockets live in a short directory,
        # removed after the peer stopped (its listener unlinks its socket).
        self.sockets = tempfile.mkdtemp(prefix="txm", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.sockets, True)
        self.peer = PeerProcess()
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONFAULTHANDLER="1")
        for name in ("XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT", "LD_PRELOAD"):
            env.pop(name, None)
        reactor.spawnProcess(self.peer, sys.executable, [sys.executable, "-m", "tests.core.migration_peer"],
                             env=env, path=ROOT)
        self.addCleanup(self.stop_peer)
        yield self.peer.ready
        self.peer_socket = os.path.join(self.sockets, "b.sock")
        reply = yield self.peer.call("listen", unix=self.peer_socket)
        self.assertEqual(reply.get("ok"), "listening", reply)

    @defer.inlineCallbacks
    def stop_peer(self) -> Any:
        if not self.peer.ended.called:
            kill = reactor.callLater(20, self.kill_peer)
            reply: Dict[str, Any] = {}
            try:
                reply = yield self.peer.call("stop")
            except RuntimeError:
                pass
            yield self.peer.ended
            if kill.active():
                kill.cancel()
            with open(os.path.join(self.files, "peer.stderr"), "wb") as f:
                f.write(self.peer.stderr)
            self.assertNotIn("error", reply, reply)
            self.assertTrue(kill.active() or kill.cancelled, "the peer had to be killed")
        else:
            with open(os.path.join(self.files, "peer.stderr"), "wb") as f:
                f.write(self.peer.stderr)

    def kill_peer(self) -> None:
        try:
            self.peer.transport.signalProcess("KILL")
        except Exception:
            pass

    @defer.inlineCallbacks
    def peer_guests(self) -> Any:
        reply = yield self.peer.call("guests")
        return reply["guests"]

    @defer.inlineCallbacks
    def assertPeerQuiet(self) -> Any:
        for _ in range(250):
            quiet = yield self.peer.call("quiet")
            quiet.pop("id")
            if not any(quiet.values()):
                break
            yield task.deferLater(reactor, 0.04, lambda: None)
        self.assertEqual(quiet, {"fds": 0, "timers": 0, "children": 0, "operations": 0, "incoming": 0})
        self.assertEqual((yield self.peer_guests()), [])


class RoundTripTests(MigrationTestCase):
    @defer.inlineCallbacks
    def test_a_domain_goes_to_the_other_host_and_back_with_its_state(self) -> Any:
        domid, config = yield self.guest("travels", image_kb=8192)
        there = yield self.ctx.migrate(domid, f"unix:path={self.peer_socket}")
        self.assertEqual(self.guests(), [])
        [guest] = yield self.peer_guests()
        self.assertEqual((guest["domid"], guest["uuid"], guest["state"], guest["marker"]),
                         (there, config["c_info"]["uuid"], "running", "travels"))
        self.assertEqual([e["domid"] for e in self.peer.events if e["event"] == "arrived"], [there])
        # And back, into a listener here.
        arrived: List[int] = []
        here = os.path.join(self.sockets, "a.sock")
        listener = yield listen_for_migrations(self.ctx, unix=here, on_arrival=lambda d, c: arrived.append(d))
        self.addCleanup(listener.stop)
        self.assertEqual(os.stat(here).st_mode & 0o777, 0o600)
        reply = yield self.peer.call("migrate", domid=there, endpoint=f"unix:path={here}")
        self.assertEqual(reply.get("ok"), "migrated", reply)
        self.assertEqual(arrived, [reply["domid"]])
        info = yield self.host.control.info(reply["domid"])
        self.assertEqual((info["marker"], info["state"], info["uuid"]),
                         ("travels", "running", config["c_info"]["uuid"]))
        yield self.assertPeerQuiet()
        yield self.assertQuiet()


class FailureTests(MigrationTestCase):
    @defer.inlineCallbacks
    def assertRunningHereOnly(self, domid: int) -> Any:
        yield self.until(lambda: self.state(domid) == "running", 20)
        yield self.assertPeerQuiet()
        yield self.assertQuiet()

    @defer.inlineCallbacks
    def test_cancelled_on_the_source_mid_stream(self) -> Any:
        domid, _ = yield self.guest(image_kb=262144)
        d = self.ctx.migrate(domid, f"unix:path={self.peer_socket}")
        yield self.until(lambda: len(self.ctx.running_children) > 0)
        yield task.deferLater(reactor, 0.3, lambda: None)
        d.cancel()
        e = yield self.assertFailure(d, MigrationCancelled)
        self.assertEqual((e.side, e.code), ("source", errors.ERROR_ABORTED))
        yield e.settled
        yield self.assertRunningHereOnly(domid)


    @defer.inlineCallbacks
    def test_cancelled_on_the_target_mid_stream(self) -> Any:
        domid, _ = yield self.guest(image_kb=262144)
        d = self.ctx.migrate(domid, f"unix:path={self.peer_socket}")
        yield self.until(lambda: len(self.ctx.running_children) > 0)
        yield task.deferLater(reactor, 0.3, lambda: None)
        yield self.peer.call("cancel_incoming")
        e = yield self.assertFailure(d, MigrationFailed)
        self.assertEqual(e.side, "target")
        self.assertIn("cancelled on the target", e.message)
        yield self.assertRunningHereOnly(domid)


    @defer.inlineCallbacks
    def test_the_target_killed_mid_stream(self) -> Any:
        domid, _ = yield self.guest(image_kb=262144)
        d = self.ctx.migrate(domid, f"unix:path={self.peer_socket}")
        yield self.until(lambda: len(self.ctx.running_children) > 0)
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.peer.transport.signalProcess("KILL")
        e = yield self.assertFailure(d, MigrationFailed)
        self.assertEqual(e.side, "target")
        yield self.peer.ended
        yield self.until(lambda: self.state(domid) == "running", 20)
        yield self.assertQuiet()

    @defer.inlineCallbacks
    def test_a_listener_that_is_not_a_migration_target(self) -> Any:
        domid, _ = yield self.guest()
        elsewhere = os.path.join(self.sockets, "echo.sock")

        class Garbage(protocol.Protocol):
            def connectionMade(self) -> None:
                self.transport.write(b"SSH-2.0-OpenSSH\r\n")

        port = reactor.listenUNIX(elsewhere, protocol.Factory.forProtocol(Garbage))
        self.addCleanup(port.stopListening)
        yield self.assertFailure(self.ctx.migrate(domid, f"unix:path={elsewhere}"), MigrationFailed)
        yield self.assertRunningHereOnly(domid)

    @defer.inlineCallbacks
    def test_no_listener_is_a_typed_error_and_the_domain_never_stops(self) -> Any:
        domid, _ = yield self.guest()
        e = yield self.assertFailure(
            self.ctx.migrate(domid, f"unix:path={os.path.join(self.sockets, 'nobody.sock')}"), MigrationFailed)
        self.assertEqual(e.side, "target")
        self.assertEqual(self.state(domid), "running")

    def test_a_listener_needs_exactly_one_kind_and_never_plain_tcp_by_default(self) -> None:
        self.assertRaises(ValueError, listen_for_migrations, self.ctx)
        self.assertRaises(ValueError, listen_for_migrations, self.ctx, unix="/x", allow_plain_tcp=True)
