"""
Fuzzing the simulated xenstored: several connections send thousands of
malformed and random messages (seeded, so a failure replays) while a
well-behaved client keeps writing, reading and watching.  The server must
answer the good client correctly throughout, keep its tree consistent, and
never log an error.
"""
import random
from typing import List, Optional

from twisted.internet import defer, reactor
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import TestCase

from txlibxl.sim.store import Store
from txlibxl.sim.wire import HEADER, Op, Packet, encode
from txlibxl.sim.xenstored import listen

from .test_xenstored import RawClient


class _Sink(Protocol):
    """A fuzzing connection: reads and discards whatever comes back."""

    def __init__(self) -> None:
        self.lost = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)


def _random_path(rng: random.Random) -> bytes:
    depth = rng.randint(0, 4)
    parts = [rng.choice(["a", "b", "c", "dev", "x" * rng.randint(1, 30), "@", "-_"]) for _ in range(depth)]
    path = "/fuzz" + "".join("/" + p for p in parts)
    roll = rng.random()
    if roll < 0.05:
        path += "/"
    elif roll < 0.1:
        path = path.replace("/fuzz", "/fuzz//")
    elif roll < 0.15:
        path = path[1:]  # relative
    elif roll < 0.2:
        path += "\u00e9 bad"
    return path.encode("latin-1")


def _random_payload(rng: random.Random) -> bytes:
    kind = rng.randrange(11)
    if kind >= 8:  # well formed: a path, or a path and a token or value
        return _random_path(rng) + b"\0" + (b"" if kind == 8 else b"tok\0" if kind == 9 else b"v")
    if kind == 0:
        return b""
    if kind == 1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    if kind == 2:
        return _random_path(rng)  # no NUL
    if kind == 3:
        return _random_path(rng) + b"\0" + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 20)))
    if kind == 4:
        return b"\0".join(_random_path(rng) for _ in range(rng.randint(1, 4))) + b"\0"
    if kind == 5:
        perms = [rng.choice("nrwbxz") + str(rng.choice([0, 1, 5, -1, 70000, "0x3", "", "q"]))
                 for _ in range(rng.randint(1, 7))]
        return _random_path(rng) + b"\0" + "\0".join(perms).encode() + b"\0"
    if kind == 6:
        return str(rng.choice([0, 1, 3, 7, -1, 32752, 99999, "x"])).encode() + b"\0" + b"1\0" * rng.randint(0, 3)
    return rng.choice([b"T\0", b"F\0", b"X\0", b"T", b"0\0"])


def _random_message(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.05:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))  # garbage
    if roll < 0.08:
        # a header announcing more than the payload limit: drops the connection
        return HEADER.pack(rng.randrange(30), 1, 0, rng.randint(4097, (1 << 32) - 1))
    op = rng.choice(list(range(0, 24)) + [0xFFFF, rng.getrandbits(32)])
    roll = rng.random()
    tx_id = 0 if roll < 0.75 else (rng.randint(1, 3) if roll < 0.95 else rng.getrandbits(32))
    payload = _random_payload(rng)
    return encode(Packet(op, rng.getrandbits(32), tx_id, payload))


class FuzzTests(TestCase):
    timeout = 300

    def setUp(self) -> None:
        self.store = Store(lambda f: reactor.callLater(0, f))
        self.store.write("/fuzz", b"")
        self.path = self.mktemp()
        port = listen(reactor, self.store, self.path)
        self.addCleanup(port.stopListening)
        self.connections: List[Protocol] = []
        self.addCleanup(self._disconnect_all)

    def _disconnect_all(self) -> defer.Deferred:
        waits = []
        for proto in self.connections:
            if not proto.lost.called:
                proto.transport.loseConnection()
                waits.append(proto.lost)
        return defer.gatherResults(waits)

    def connect(self, make) -> defer.Deferred:
        connected = defer.Deferred()
        connections = self.connections

        class F(ClientFactory):
            def buildProtocol(self, addr: object) -> Protocol:
                proto = make()
                connections.append(proto)
                reactor.callLater(0, connected.callback, proto)
                return proto

        reactor.connectUNIX(self.path, F())
        return connected

    async def _fuzz(self, seed: int, rounds: int = 250, fuzzers: int = 4, burst: int = 4) -> None:
        rng = random.Random(seed)
        good: RawClient = await self.connect(RawClient)
        reply = await good.send(Op.WATCH, b"/good\0g\0")
        self.assertEqual(reply.payload, b"OK\0")
        sinks: List[Optional[_Sink]] = [None] * fuzzers
        reconnects = 0
        sent = 0
        for i in range(rounds):
            for k in range(fuzzers):
                sink = sinks[k]
                if sink is None or sink.lost.called:
                    sink = sinks[k] = await self.connect(_Sink)
                    reconnects += 1
                sink.transport.write(b"".join(_random_message(rng) for _ in range(burst)))
                sent += burst
            value = b"value-%d-%d" % (seed, i)
            reply = await good.send(Op.WRITE, b"/good/%d\0" % (i % 17) + value)
            self.assertEqual(reply, Packet(Op.WRITE, good.next_id, 0, b"OK\0"))
            reply = await good.send(Op.READ, b"/good/%d\0" % (i % 17))
            self.assertEqual(reply.payload, value)
            if i % 25 == 0:
                tx = int((await good.send(Op.TRANSACTION_START, b"\0")).payload[:-1])
                await good.send(Op.WRITE, b"/good/tx\0%d" % i, tx_id=tx)
                reply = await good.send(Op.TRANSACTION_END, b"T\0", tx_id=tx)
                self.assertEqual(reply.payload, b"OK\0")
        # the good client saw an event for each of its writes
        paths = {e.payload.split(b"\0")[0] for e in good.events}
        self.assertEqual(paths, {b"/good"} | {b"/good/%d" % n for n in range(17)} | {b"/good/tx"})
        self.assertGreaterEqual(sent, 4000)
        self.assertGreater(reconnects, fuzzers)  # oversized headers did drop fuzzers
        self.assertEqual(self.store.check(), [])
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_seed_1(self) -> None:
        await self._fuzz(1)

    async def test_seed_2(self) -> None:
        await self._fuzz(2)

    async def test_seed_3(self) -> None:
        await self._fuzz(3)
