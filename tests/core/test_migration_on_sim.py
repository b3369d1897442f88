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
from tests.core.tlscerts import Authority

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
        reply = yield self.peer.call("listen", **self.peer_listener())
        self.assertEqual(reply.get("ok"), "listening", reply)
        self.peer_port = reply.get("port")

    def peer_listener(self) -> Dict[str, Any]:
        """How the peer listens: the listen command's arguments."""
        return {"unix": self.peer_socket}

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


class TLSTests(MigrationTestCase):
    """The peer listens with TLS that requires a client certificate from
    its authority; the source checks the peer's certificate too."""

    def peer_listener(self) -> Dict[str, Any]:
        self.certs = os.path.join(self.sockets, "certs")
        for sub in ("ca", "other-ca", "keys"):
            os.makedirs(os.path.join(self.certs, sub))
        self.ca = Authority(os.path.join(self.certs, "ca"), "ca")
        self.other_ca = Authority(os.path.join(self.certs, "other-ca"), "other-ca")
        keys = os.path.join(self.certs, "keys")
        self.good = self.ca.issue("source", keys)
        self.bad = self.other_ca.issue("stranger", keys)
        server = self.ca.issue("target", keys, host="localhost")
        return {"tls": [server[0], server[1], self.ca.path]}

    def endpoint(self, client: Any = None, ca_dir: str = "ca") -> str:
        point = f"ssl:host=localhost:port={self.peer_port}:caCertsDir={os.path.join(self.certs, ca_dir)}"
        if client is not None:
            point += f":certKey={client[0]}:privateKey={client[1]}"
        return point

    @defer.inlineCallbacks
    def test_a_client_certificate_from_the_authority_migrates(self) -> Any:
        domid, config = yield self.guest("over tls")
        there = yield self.ctx.migrate(domid, self.endpoint(self.good))
        self.assertEqual(self.guests(), [])
        [guest] = yield self.peer_guests()
        self.assertEqual((guest["domid"], guest["uuid"], guest["marker"]),
                         (there, config["c_info"]["uuid"], "over tls"))
        yield self.assertQuiet()

    @defer.inlineCallbacks
    def assertRefused(self, endpoint: str) -> Any:
        domid, _ = yield self.guest()
        e = yield self.assertFailure(self.ctx.migrate(domid, endpoint), MigrationFailed)
        self.assertEqual(e.side, "target")
        self.assertEqual([ev for ev in self.peer.events if ev["event"] == "arrived"], [])
        yield self.until(lambda: self.state(domid) == "running", 20)
        yield self.assertPeerQuiet()
        yield self.assertQuiet()

    def test_a_client_certificate_from_another_authority_is_refused(self) -> Any:
        return self.assertRefused(self.endpoint(self.bad))

    def test_no_client_certificate_is_refused(self) -> Any:
        return self.assertRefused(self.endpoint())

    def test_a_target_the_source_does_not_trust_is_refused(self) -> Any:
        return self.assertRefused(self.endpoint(self.good, ca_dir="other-ca"))


class PlainTCPTests(MigrationTestCase):
    def peer_listener(self) -> Dict[str, Any]:
        return {}  # plain TCP, asked for by name

    @defer.inlineCallbacks
    def test_a_domain_migrates_over_plain_tcp(self) -> Any:
        domid, config = yield self.guest("over tcp", image_kb=4096)
        there = yield self.ctx.migrate(domid, f"tcp:host=127.0.0.1:port={self.peer_port}")
        [guest] = yield self.peer_guests()
        self.assertEqual((guest["domid"], guest["uuid"], guest["marker"], guest["state"]),
                         (there, config["c_info"]["uuid"], "over tcp", "running"))
        self.assertEqual(self.guests(), [])
        yield self.assertQuiet()


class ConcurrentTests(MigrationTestCase):
    COUNT = 20

    @defer.inlineCallbacks
    def test_twenty_domains_migrate_at_once(self) -> Any:
        domids = {}
        for i in range(self.COUNT):
            config = self.config(name=f"g{i}", memory_kb=16384)
            domid = yield self.running(config)
            yield self.host.control.guest_image(domid, 1024)
            yield self.host.control.guest_marker(domid, f"guest {i}")
            saved = yield self.ctx.domain_config(domid)
            domids[domid] = saved["c_info"]["uuid"]
        point = f"unix:path={self.peer_socket}"
        there = yield defer.gatherResults([self.ctx.migrate(d, point) for d in domids], consumeErrors=True)
        self.assertEqual(self.guests(), [])
        guests = yield self.peer_guests()
        self.assertEqual(sorted((g["uuid"], g["marker"], g["state"]) for g in guests),
                         sorted((uuid, f"guest {i}", "running") for i, uuid in enumerate(domids.values())))
        self.assertEqual(sorted(g["domid"] for g in guests), sorted(there))
        self.assertEqual(sorted(e["domid"] for e in self.peer.events if e["event"] == "arrived"), sorted(there))
        yield self.assertQuiet()
        # And back, all at once: neither host keeps an fd, timer or child.
        back = f"unix:path={os.path.join(self.sockets, 'a.sock')}"
        listener = yield listen_for_migrations(self.ctx, unix=os.path.join(self.sockets, "a.sock"))
        self.addCleanup(listener.stop)
        replies = yield defer.gatherResults([self.peer.call("migrate", domid=d, endpoint=back) for d in there],
                                            consumeErrors=True)
        self.assertEqual([r.get("ok") for r in replies], ["migrated"] * self.COUNT, replies)
        self.assertEqual(sorted(g.uuid for g in self.guests()), sorted(domids.values()))
        yield self.assertPeerQuiet()
        yield defer.gatherResults([self.ctx.destroy(g.domid) for g in self.guests()], consumeErrors=True)
        yield self.assertNothingLeft()
        yield self.assertQuiet()


class SameHostTests(MovingTestCase):
    """A migration to the source's own host (as ``xl migrate localhost``):
    the domain is restored as NAME--incoming beside its source and takes
    its name once the source's copy is gone."""

    @defer.inlineCallbacks
    def test_a_domain_migrates_to_its_own_host_and_keeps_its_name(self) -> Any:
        sockets = tempfile.mkdtemp(prefix="txm", dir="/tmp")
        self.addCleanup(shutil.rmtree, sockets, True)
        path = os.path.join(sockets, "self.sock")
        arrived: List[Any] = []
        listener = yield listen_for_migrations(self.ctx, unix=path, on_arrival=lambda d, c: arrived.append(d))
        self.addCleanup(listener.stop)
        domid, config = yield self.guest("at home", image_kb=2048)
        name = config["c_info"]["name"]
        fired: List[int] = []
        d = self.ctx.migrate(domid, f"unix:path={path}")
        d.addCallback(lambda there: fired.append(there) or there)
        there = yield d
        yield self.until(lambda: arrived == [there])
        self.assertEqual(fired, [there])
        self.assertNotEqual(there, domid)
        [guest] = self.guests()
        self.assertEqual((guest.domid, guest.name, guest.uuid), (there, name, config["c_info"]["uuid"]))
        info = yield self.host.control.info(there)
        self.assertEqual((info["marker"], info["state"]), ("at home", "running"))
        yield self.ctx.destroy(there)
        yield self.assertQuiet()

    @defer.inlineCallbacks
    def test_a_migration_that_is_not_live_arrives_the_same(self) -> Any:
        sockets = tempfile.mkdtemp(prefix="txm", dir="/tmp")
        self.addCleanup(shutil.rmtree, sockets, True)
        path = os.path.join(sockets, "self.sock")
        listener = yield listen_for_migrations(self.ctx, unix=path)
        self.addCleanup(listener.stop)
        domid, config = yield self.guest("suspended first", image_kb=2048)
        there = yield self.ctx.migrate(domid, f"unix:path={path}", live=False)
        info = yield self.host.control.info(there)
        self.assertEqual((info["marker"], info["state"], info["uuid"]),
                         ("suspended first", "running", config["c_info"]["uuid"]))
        yield self.until(lambda: [g.domid for g in self.guests()] == [there])
        yield self.ctx.destroy(there)
        yield self.assertQuiet()
