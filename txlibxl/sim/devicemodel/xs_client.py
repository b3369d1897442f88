"""
The little xenstore client the device model stand-in needs (QEMU uses
libxenstore): READ, WRITE, RM, WATCH and UNWATCH as dom0, over the wire
protocol (:mod:`txlibxl.sim.wire`) on xenstored's Unix socket.

Requests are answered in order, each by a Deferred; watch events go to
the callback the watch was set with (the path that fired).  When the
connection ends, :attr:`XenstoreClient.lost` fires and every request still
waiting fails with :class:`XenstoreLost`.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from twisted.internet import defer
from twisted.internet.protocol import ClientFactory, Protocol

from ..wire import Op, Packet, PacketDecoder, PayloadTooLarge, encode, get_strings

__all__ = ["XenstoreClient", "XenstoreError", "XenstoreLost", "connect"]


class XenstoreError(Exception):
    """xenstored refused a request: C{errno_name} is its answer."""

    def __init__(self, errno_name: str, op: str, path: str) -> None:
        super().__init__("%s %s: %s" % (op, path, errno_name))
        self.errno_name = errno_name


class XenstoreLost(Exception):
    """The connection to xenstored ended."""


class XenstoreClient(Protocol):
    def __init__(self) -> None:
        self._decoder = PacketDecoder()
        self._waiting: Dict[int, Any] = {}
        self._watches: Dict[str, Callable[[str], Any]] = {}
        self._next = 1
        self.lost: defer.Deferred = defer.Deferred()
        self.connected_ = False
        self._ready: Optional[defer.Deferred] = None

    def connectionMade(self) -> None:
        self.connected_ = True
        ready, self._ready = self._ready, None
        if ready is not None:
            ready.callback(self)

    def dataReceived(self, data: bytes) -> None:
        try:
            packets = self._decoder.feed(data)
        except PayloadTooLarge:
            self.transport.abortConnection()
            return
        for packet in packets:
            if packet.op == Op.WATCH_EVENT:
                strings = get_strings(packet.payload)
                if len(strings) >= 2 and strings[1] in self._watches:
                    self._watches[strings[1]](strings[0])
                continue
            waiting = self._waiting.pop(packet.req_id, None)
            if waiting is None:
                continue
            d, op, path = waiting
            if packet.op == Op.ERROR:
                d.errback(XenstoreError(packet.payload.rstrip(b"\0").decode("ascii", "replace"), op, path))
            else:
                d.callback(packet.payload)

    def connectionLost(self, reason: object = None) -> None:
        self.connected_ = False
        waiting, self._waiting = self._waiting, {}
        for d, _, _ in waiting.values():
            d.errback(XenstoreLost())
        if not self.lost.called:
            self.lost.callback(None)

    def _request(self, op: Op, payload: bytes, path: str) -> defer.Deferred:
        if not self.connected_:
            return defer.fail(XenstoreLost())
        req_id = self._next
        self._next = (self._next + 1) & 0xFFFFFFFF or 1
        d: defer.Deferred = defer.Deferred()
        self._waiting[req_id] = (d, op.name, path)
        self.transport.write(encode(Packet(op, req_id, 0, payload)))
        return d

    def read(self, path: str) -> defer.Deferred:
        """Fires with the value (bytes)."""
        return self._request(Op.READ, path.encode("latin-1") + b"\0", path)

    def write(self, path: str, value: bytes) -> defer.Deferred:
        return self._request(Op.WRITE, path.encode("latin-1") + b"\0" + value, path)

    def rm(self, path: str) -> defer.Deferred:
        return self._request(Op.RM, path.encode("latin-1") + b"\0", path)

    def watch(self, path: str, token: str, callback: Callable[[str], Any]) -> defer.Deferred:
        """Call C{callback(path)} for each event (the first one at once)."""
        self._watches[token] = callback
        return self._request(Op.WATCH, path.encode("latin-1") + b"\0" + token.encode("latin-1") + b"\0", path)

    def unwatch(self, path: str, token: str) -> defer.Deferred:
        self._watches.pop(token, None)
        return self._request(Op.UNWATCH, path.encode("latin-1") + b"\0" + token.encode("latin-1") + b"\0", path)

    def disconnect(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


class _Factory(ClientFactory):
    def __init__(self, client: XenstoreClient) -> None:
        self.client = client

    def buildProtocol(self, addr: object) -> XenstoreClient:
        self.client.factory = self
        return self.client

    def clientConnectionFailed(self, connector: object, reason: Any) -> None:
        ready, self.client._ready = self.client._ready, None
        if ready is not None:
            ready.errback(reason)


def connect(reactor: Any, path: str, timeout: float = 10) -> defer.Deferred:
    """Connect to the xenstored listening on C{path}: fires with the
    L{XenstoreClient}."""
    client = XenstoreClient()
    ready: defer.Deferred = defer.Deferred()
    client._ready = ready
    reactor.connectUNIX(path, _Factory(client), timeout=timeout)
    return ready
