"""
The simulated xenstored on the wire: a raw client speaks the xs_wire.h
protocol to a server listening on a Unix socket in the test's reactor.
"""
from typing import Dict, List, Optional

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import TestCase

from txlibxl.sim.store import Quotas, Store
from txlibxl.sim.wire import HEADER, Op, Packet, PacketDecoder, encode
from txlibxl.sim.xenstored import XenstoredFactory, listen


class RawClient(Protocol):
    """Sends packets, matches replies by req_id, collects watch events."""

    def __init__(self) -> None:
        self.decoder = PacketDecoder()
        self.replies: Dict[int, defer.Deferred] = {}
        self.arrivals: List[Packet] = []
        self.events: List[Packet] = []
        self.event_waiters: List[defer.Deferred] = []
        self.lost = defer.Deferred()
        self.next_id = 100

    def dataReceived(self, data: bytes) -> None:
        for packet in self.decoder.feed(data):
            self.arrivals.append(packet)
            if packet.op == Op.WATCH_EVENT:
                self.events.append(packet)
                waiters, self.event_waiters = self.event_waiters, []
                for d in waiters:
                    d.callback(None)
            else:
                self.replies.pop(packet.req_id).callback(packet)

    def connectionLost(self, reason: object = None) -> None:
        for d in self.replies.values():
            d.errback(reason)
        self.replies.clear()
        self.lost.callback(None)

    def send(self, op: int, payload: bytes = b"", tx_id: int = 0,
             req_id: Optional[int] = None) -> defer.Deferred:
        if req_id is None:
            self.next_id += 1
            req_id = self.next_id
        d = defer.Deferred()
        self.replies[req_id] = d
        self.transport.write(encode(Packet(op, req_id, tx_id, payload)))
        return d

    async def event(self, count: int = 1) -> List[Packet]:
        while len(self.events) < count:
            d = defer.Deferred()
            self.event_waiters.append(d)
            await d
        return self.events[:count]


def ok(packet: Packet) -> bytes:
    if packet.op == Op.ERROR:
        raise AssertionError(f"error reply {packet.payload!r}")
    return packet.payload


class _ServerCase(TestCase):
    domid = 0
    quotas = Quotas()

    def setUp(self) -> defer.Deferred:
        self.store = Store(lambda f: reactor.callLater(0, f), quotas=self.quotas)
        self.path = self.mktemp()
        self.port = listen(reactor, self.store, self.path, domid=self.domid)
        self.addCleanup(self.port.stopListening)
        return self.connect().addCallback(lambda c: setattr(self, "client", c))

    def connect(self) -> defer.Deferred:
        connected = defer.Deferred()

        class F(ClientFactory):
            def buildProtocol(self, addr: object) -> RawClient:
                proto = RawClient()
                reactor.callLater(0, connected.callback, proto)
                return proto

        connector = reactor.connectUNIX(self.path, F())

        def cleanup(proto: RawClient) -> defer.Deferred:
            if not proto.lost.called:
                connector.disconnect()
            return proto.lost

        connected.addCallback(lambda proto: (self.addCleanup(cleanup, proto), proto)[1])
        return connected

    async def request(self, op: int, payload: bytes = b"", tx_id: int = 0) -> Packet:
        return await self.client.send(op, payload, tx_id)

    async def expect_error(self, errno_name: str, op: int, payload: bytes = b"", tx_id: int = 0) -> None:
        reply = await self.request(op, payload, tx_id)
        self.assertEqual((reply.op, reply.payload), (Op.ERROR, errno_name.encode() + b"\0"))


class OperationTests(_ServerCase):
    async def test_write_then_read(self) -> None:
        self.assertEqual(ok(await self.request(Op.WRITE, b"/a/b\0value\0with nul")), b"OK\0")
        self.assertEqual(ok(await self.request(Op.READ, b"/a/b\0")), b"value\0with nul")

    async def test_mkdir_and_directory(self) -> None:
        ok(await self.request(Op.MKDIR, b"/d/x\0"))
        ok(await self.request(Op.MKDIR, b"/d/y\0"))
        self.assertEqual(ok(await self.request(Op.DIRECTORY, b"/d\0")), b"x\0y\0")
        self.assertEqual(ok(await self.request(Op.DIRECTORY, b"/d/x\0")), b"")

    async def test_rm(self) -> None:
        ok(await self.request(Op.WRITE, b"/r/x\0"))
        self.assertEqual(ok(await self.request(Op.RM, b"/r\0")), b"OK\0")
        await self.expect_error("ENOENT", Op.READ, b"/r\0")

    async def test_directory_part_pages_a_long_list(self) -> None:
        names = [f"child-{i:04d}-{'x' * 40}" for i in range(200)]
        for name in names:
            self.store.write(f"/big/{name}", b"")
        await self.expect_error("E2BIG", Op.DIRECTORY, b"/big\0")
        collected: List[bytes] = []
        offset = 0
        generations = set()
        while True:
            payload = ok(await self.request(Op.DIRECTORY_PART, b"/big\0%d\0" % offset))
            gen, _, rest = payload.partition(b"\0")
            generations.add(gen)
            self.assertLessEqual(len(payload), 4096)
            if rest.endswith(b"\0\0") or rest == b"\0":
                collected.append(rest[:-1])
                break
            collected.append(rest)
            offset += len(rest)
        self.assertEqual(b"".join(collected).split(b"\0")[:-1], [n.encode() for n in names])
        self.assertEqual(len(generations), 1)

    async def test_get_and_set_perms(self) -> None:
        ok(await self.request(Op.WRITE, b"/p\0"))
        self.assertEqual(ok(await self.request(Op.SET_PERMS, b"/p\0n0\0r5\0")), b"OK\0")
        self.assertEqual(ok(await self.request(Op.GET_PERMS, b"/p\0")), b"n0\0r5\0")

    async def test_watch_acks_then_fires_at_once_then_on_changes(self) -> None:
        reply = await self.request(Op.WATCH, b"/w\0tok\0")
        self.assertEqual(reply.payload, b"OK\0")
        await self.client.event(1)
        self.assertEqual([p.op for p in self.client.arrivals], [Op.WATCH, Op.WATCH_EVENT])
        self.assertEqual(self.client.events[0], Packet(Op.WATCH_EVENT, 0, 0, b"/w\0tok\0"))
        ok(await self.request(Op.WRITE, b"/w/x\0v"))
        events = await self.client.event(2)
        self.assertEqual(events[1].payload, b"/w/x\0tok\0")

    async def test_unwatch(self) -> None:
        ok(await self.request(Op.WATCH, b"/w\0tok\0"))
        self.assertEqual(ok(await self.request(Op.UNWATCH, b"/w\0tok\0")), b"OK\0")
        await self.expect_error("ENOENT", Op.UNWATCH, b"/w\0tok\0")

    async def test_transaction_start_and_end(self) -> None:
        tx = int(ok(await self.request(Op.TRANSACTION_START, b"\0")).rstrip(b"\0"))
        ok(await self.request(Op.WRITE, b"/t\0in-tx", tx_id=tx))
        self.assertFalse(self.store.exists("/t"))
        reply = await self.request(Op.TRANSACTION_END, b"T\0", tx_id=tx)
        self.assertEqual((reply.op, reply.tx_id, reply.payload), (Op.TRANSACTION_END, tx, b"OK\0"))
        self.assertEqual(self.store.read("/t"), b"in-tx")

    async def test_conflicting_transaction_ends_with_eagain(self) -> None:
        self.store.write("/c", b"0")
        tx = int(ok(await self.request(Op.TRANSACTION_START, b"\0")).rstrip(b"\0"))
        ok(await self.request(Op.READ, b"/c\0", tx_id=tx))
        self.store.write("/c", b"1")
        await self.expect_error("EAGAIN", Op.TRANSACTION_END, b"T\0", tx_id=tx)

    async def test_get_domain_path(self) -> None:
        self.assertEqual(ok(await self.request(Op.GET_DOMAIN_PATH, b"7\0")), b"/local/domain/7\0")

    async def test_introduce_release_and_is_domain_introduced(self) -> None:
        self.assertEqual(ok(await self.request(Op.IS_DOMAIN_INTRODUCED, b"3\0")), b"F\0")
        ok(await self.request(Op.WATCH, b"@introduceDomain\0i\0"))
        ok(await self.request(Op.WATCH, b"@releaseDomain\0r\0"))
        self.assertEqual(ok(await self.request(Op.INTRODUCE, b"3\0" b"1234\0" b"5\0")), b"OK\0")
        self.assertEqual(ok(await self.request(Op.IS_DOMAIN_INTRODUCED, b"3\0")), b"T\0")
        self.assertEqual(ok(await self.request(Op.RESUME, b"3\0")), b"OK\0")
        self.assertEqual(ok(await self.request(Op.RELEASE, b"3\0")), b"OK\0")
        self.assertEqual(ok(await self.request(Op.IS_DOMAIN_INTRODUCED, b"3\0")), b"F\0")
        events = await self.client.event(4)
        self.assertEqual([e.payload for e in events[2:]], [b"@introduceDomain\0i\0", b"@releaseDomain\0r\0"])
        await self.expect_error("ENOENT", Op.RELEASE, b"3\0")
        await self.expect_error("EINVAL", Op.RELEASE, b"0\0")

    async def test_introduce_is_refused_when_the_ring_cannot_be_mapped(self) -> None:
        from txlibxl.sim.store import XenstoreError

        asked = []

        def ring_check(domid: int, port: int) -> None:
            asked.append((domid, port))
            if domid == 4:
                raise XenstoreError("ENOENT", "no such domain")

        self.store._ring_check = ring_check
        await self.expect_error("ENOENT", Op.INTRODUCE, b"4\0" b"1234\0" b"5\0")
        self.assertEqual(ok(await self.request(Op.IS_DOMAIN_INTRODUCED, b"4\0")), b"F\0")
        self.assertEqual(ok(await self.request(Op.INTRODUCE, b"3\0" b"1234\0" b"6\0")), b"OK\0")
        self.assertEqual(asked, [(4, 5), (3, 6)])

    async def test_is_domain_introduced_knows_domid_self(self) -> None:
        self.assertEqual(ok(await self.request(Op.IS_DOMAIN_INTRODUCED, b"32752\0")), b"T\0")

    async def test_set_target(self) -> None:
        self.store.introduce(3)
        self.store.introduce(4)
        self.assertEqual(ok(await self.request(Op.SET_TARGET, b"3\0" b"4\0")), b"OK\0")
        await self.expect_error("ENOENT", Op.SET_TARGET, b"3\0" b"9\0")

    async def test_reset_watches(self) -> None:
        ok(await self.request(Op.WATCH, b"/w\0tok\0"))
        self.assertEqual(ok(await self.request(Op.RESET_WATCHES, b"")), b"OK\0")
        await self.expect_error("ENOENT", Op.UNWATCH, b"/w\0tok\0")

    async def test_control_check_and_unknown_commands(self) -> None:
        self.assertEqual(ok(await self.request(Op.CONTROL, b"check\0")), b"OK\0")
        await self.expect_error("EINVAL", Op.CONTROL, b"live-update\0")

    async def test_relative_paths_resolve_against_local_domain_0(self) -> None:
        ok(await self.request(Op.WRITE, b"domid\0" b"0"))
        self.assertEqual(self.store.read("/local/domain/0/domid"), b"0")


class EchoTests(_ServerCase):
    async def test_replies_echo_req_id_and_tx_id(self) -> None:
        tx = int(ok(await self.request(Op.TRANSACTION_START, b"\0")).rstrip(b"\0"))
        reply = await self.client.send(Op.WRITE, b"/e\0", tx_id=tx, req_id=0xDEADBEEF)
        self.assertEqual((reply.op, reply.req_id, reply.tx_id), (Op.WRITE, 0xDEADBEEF, tx))

    async def test_errors_echo_req_id_and_tx_id(self) -> None:
        reply = await self.client.send(Op.READ, b"/missing\0", tx_id=0, req_id=77)
        self.assertEqual(reply, Packet(Op.ERROR, 77, 0, b"ENOENT\0"))

    async def test_transaction_start_reply_carries_the_requests_tx_id_zero(self) -> None:
        reply = await self.request(Op.TRANSACTION_START, b"\0")
        self.assertEqual((reply.op, reply.tx_id), (Op.TRANSACTION_START, 0))


class ErrorTests(_ServerCase):
    async def test_unknown_operations_are_enosys(self) -> None:
        for op in (20, 23, 0xFFFF, 0xFFFFFFFF, Op.WATCH_EVENT, Op.ERROR):
            await self.expect_error("ENOSYS", op, b"/\0")

    async def test_an_unknown_transaction_id_is_enoent(self) -> None:
        await self.expect_error("ENOENT", Op.READ, b"/\0", tx_id=99)
        await self.expect_error("ENOENT", Op.TRANSACTION_END, b"T\0", tx_id=0)

    async def test_watch_ignores_the_transaction_id(self) -> None:
        ok(await self.request(Op.WATCH, b"/w\0t\0", tx_id=99))

    async def test_a_path_without_its_nul_is_einval(self) -> None:
        await self.expect_error("EINVAL", Op.READ, b"/tool")
        await self.expect_error("EINVAL", Op.READ, b"/tool\0extra\0")
        await self.expect_error("EINVAL", Op.WRITE, b"/tool")
        await self.expect_error("EINVAL", Op.WATCH, b"/tool\0")

    async def test_bad_transaction_end_argument_is_einval(self) -> None:
        tx = int(ok(await self.request(Op.TRANSACTION_START, b"\0")).rstrip(b"\0"))
        await self.expect_error("EINVAL", Op.TRANSACTION_END, b"X\0", tx_id=tx)

    async def test_nested_transaction_start_is_ebusy(self) -> None:
        tx = int(ok(await self.request(Op.TRANSACTION_START, b"\0")).rstrip(b"\0"))
        await self.expect_error("EBUSY", Op.TRANSACTION_START, b"\0", tx_id=tx)

    async def test_introduce_needs_an_event_channel(self) -> None:
        await self.expect_error("EINVAL", Op.INTRODUCE, b"3\0" b"1\0" b"0\0")
        await self.expect_error("EINVAL", Op.INTRODUCE, b"3\0" b"1\0")

    async def test_an_oversized_payload_drops_only_that_connection(self) -> None:
        other = await self.connect()
        self.client.transport.write(HEADER.pack(Op.READ, 1, 0, 4097))
        await self.client.lost
        self.assertEqual(ok(await other.send(Op.READ, b"/tool\0")), b"")

    async def test_a_short_header_waits_for_the_rest(self) -> None:
        data = encode(Packet(Op.READ, 5, 0, b"/tool\0"))
        d = self.client.send(Op.READ, b"", req_id=4)  # answered before the split one
        second = self.client.replies[5] = defer.Deferred()
        self.client.transport.write(data[:7])
        await task.deferLater(reactor, 0.05, lambda: None)
        self.client.transport.write(data[7:])
        self.assertEqual((await d).payload, b"EINVAL\0")
        self.assertEqual((await second).payload, b"")


class LimitTests(_ServerCase):
    async def test_a_reply_over_the_payload_limit_is_e2big(self) -> None:
        for i in range(300):
            self.store.write(f"/many/node-with-a-long-name-{i:05d}", b"")
        await self.expect_error("E2BIG", Op.DIRECTORY, b"/many\0")

    async def test_a_path_over_the_limit_is_einval(self) -> None:
        await self.expect_error("EINVAL", Op.WRITE, b"/" + b"a" * 2048 + b"\0")


class GuestSocketTests(_ServerCase):
    domid = 5
    quotas = Quotas(watches_per_domain=1)

    async def test_privileged_operations_are_eacces(self) -> None:
        for op, payload in ((Op.INTRODUCE, b"3\0" b"1\0" b"1\0"), (Op.RELEASE, b"3\0"),
                            (Op.IS_DOMAIN_INTRODUCED, b"3\0"), (Op.CONTROL, b"check\0")):
            await self.expect_error("EACCES", op, payload)

    async def test_relative_paths_resolve_against_the_guests_home(self) -> None:
        self.store.mkdir("/local/domain/5")
        self.store.set_perms("/local/domain/5", ["n5"])
        ok(await self.request(Op.WRITE, b"data\0" b"x"))
        self.assertEqual(self.store.read("/local/domain/5/data"), b"x")
        self.assertEqual(self.store.get_perms("/local/domain/5/data"), ["n5"])

    async def test_watch_quota_is_e2big(self) -> None:
        ok(await self.request(Op.WATCH, b"/a\0" b"1\0"))
        ok(await self.request(Op.WATCH, b"/a\0" b"2\0"))
        await self.expect_error("E2BIG", Op.WATCH, b"/a\0" b"3\0")

    async def test_release_of_the_domain_drops_its_connections(self) -> None:
        self.store.introduce(5)
        self.store.release(5)
        await self.client.lost


class FlowControlTests(_ServerCase):
    async def test_a_client_that_stops_reading_is_dropped_and_others_served(self) -> None:
        factory: XenstoredFactory = self.port.factory
        factory.max_queued = 64 * 1024
        ok(await self.request(Op.WATCH, b"/\0" + b"t" * 3000 + b"\0"))
        await self.client.event(1)
        self.client.transport.pauseProducing()
        other = await self.connect()
        for i in range(2000):
            reply = await other.send(Op.WRITE, b"/spam/%d\0" % i)
            self.assertEqual(reply.payload, b"OK\0")
            if self.client.lost.called:
                break
        self.client.transport.resumeProducing()
        await self.client.lost
        self.assertEqual(ok(await other.send(Op.READ, b"/spam/0\0")), b"")

    async def test_stall_queues_requests_until_resume(self) -> None:
        factory: XenstoredFactory = self.port.factory
        factory.stall()
        reply = self.client.send(Op.READ, b"/tool\0")
        await task.deferLater(reactor, 0.05, lambda: None)
        self.assertFalse(reply.called)
        factory.resume()
        self.assertEqual((await reply).payload, b"")

    def test_stall_with_a_timeout_resumes_by_itself(self) -> None:
        clock = task.Clock()
        factory = XenstoredFactory(self.store, clock)
        factory.stall(2.0)
        self.assertTrue(factory.stalled)
        clock.advance(2.0)
        self.assertFalse(factory.stalled)
        factory.stall(5.0)
        factory.stopFactory()
        self.assertEqual(clock.getDelayedCalls(), [])
