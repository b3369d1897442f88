"""
The simulated xenstored: a Twisted server speaking the real xenstore wire
protocol on a Unix socket, serving a :class:`txlibxl.sim.store.Store`.

Clients are the real libxenstore (``XENSTORED_PATH=<socket>``): libxl, the
``xenstore-*`` tools.  Each connection is domain 0 (privileged), as a
socket connection to the C xenstored is; :func:`listen` can give every
connection of one socket another domid, to play a guest's ring.

As the C xenstored of Xen 4.17:

* every request gets one reply with the request's ``req_id`` and
  ``tx_id``; errors are ``XS_ERROR`` with the errno name; watch events
  have ``req_id`` and ``tx_id`` 0;
* unknown types, and ``WATCH_EVENT``/``ERROR``/the removed ``RESTRICT``
  sent as requests, get ``ENOSYS``; the privileged operations
  (``INTRODUCE``, ``RELEASE``, ``IS_DOMAIN_INTRODUCED``, ``RESUME``,
  ``SET_TARGET``, ``CONTROL``) get ``EACCES`` from an unprivileged domain; an
  unknown ``tx_id`` gets ``ENOENT`` (``WATCH``/``UNWATCH`` ignore it);
* a reply longer than 4096 bytes becomes ``E2BIG``; an event longer than
  that is dropped; an identical event still queued for a client is not
  queued twice (special events excepted);
* a header announcing more than 4096 payload bytes drops the connection;
* payloads are parsed as the C daemon parses them (``onearg``,
  ``get_strings``, ``atoi``).

Not as the C daemon: ``CONTROL`` knows only ``check`` and ``help``
(others get ``EINVAL``); ``INTRODUCE`` maps no ring and binds no event
channel, but asks the store's ``ring_check`` (the hypervisor, on a
simulated host) whether it could: a domain that does not exist, has no
granted xenstore ring or no unbound channel ``port`` for dom0 is refused
(it takes domids 1..0x7fef only); output to a client that stops
reading is bounded (its requests are no longer read, and past
``max_queued`` bytes of queued events the connection is dropped), where
the C daemon buffers without limit for dom0.

Fault injection: :meth:`XenstoredFactory.stall` stops answering (requests
and events are queued) until :meth:`XenstoredFactory.resume` or the
timeout.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Dict, Optional, Set, Tuple, Union

from twisted.internet.interfaces import IDelayedCall, IListeningPort, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from .store import DOMID_SELF, Store, StoreConnection, XenstoreError
from .wire import (
    PAYLOAD_MAX,
    Op,
    Packet,
    PacketDecoder,
    PayloadTooLarge,
    c_atoi,
    count_strings,
    encode,
    error_payload,
    get_strings,
    onearg,
    strings_payload,
)

__all__ = ["handle_request", "XenstoredProtocol", "XenstoredFactory", "listen"]

_OK = b"OK\0"

#: Operations only a privileged connection may use (XS_FLAG_PRIV).
_PRIVILEGED = frozenset({Op.CONTROL, Op.INTRODUCE, Op.RELEASE, Op.IS_DOMAIN_INTRODUCED,
                         Op.RESUME, Op.SET_TARGET})
#: Operations that ignore the header's tx_id (XS_FLAG_NOTID).
_NO_TX = frozenset({Op.WATCH, Op.UNWATCH})

# A handler returns the reply payload, or the payload and an event to
# deliver after the reply.
_Result = Union[bytes, Tuple[bytes, Tuple[str, str]]]
_Handler = Callable[[Store, StoreConnection, int, bytes], _Result]


def _one(payload: bytes) -> str:
    arg = onearg(payload)
    if arg is None:
        raise XenstoreError("EINVAL", "expected one argument")
    return arg


def _unsigned(text: str) -> int:
    return c_atoi(text) & 0xFFFFFFFF


def _read(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    return conn.read(_one(payload), tx)


def _write(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    nul = payload.find(b"\0")
    if nul < 0:
        raise XenstoreError("EINVAL", "no path")
    conn.write(payload[:nul].decode("latin-1"), payload[nul + 1:], tx)
    return _OK


def _mkdir(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    conn.mkdir(_one(payload), tx)
    return _OK


def _rm(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    conn.rm(_one(payload), tx)
    return _OK


def _directory(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    return strings_payload(conn.directory(_one(payload), tx))


def _directory_part(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    if count_strings(payload) != 2:
        raise XenstoreError("EINVAL", "expected path and offset")
    path, offset_text = get_strings(payload)
    generation, children = conn.directory_with_generation(path, tx)
    offset = _unsigned(offset_text)
    blob = strings_payload(children)
    gen = str(generation).encode("ascii") + b"\0"
    if offset >= len(blob):
        return gen + b"\0"
    # send_directory_part: as many whole names as fit, the list ended by
    # an empty string when it is complete.
    length = 0
    maxlen = PAYLOAD_MAX - len(gen) - 1
    position = offset
    while True:
        name_len = blob.find(b"\0", position) - position
        if length + name_len >= maxlen:
            break
        length += name_len + 1
        position += name_len + 1
        if offset + length == len(blob):
            break
    data = gen + blob[offset:offset + length]
    if offset + length == len(blob):
        data += b"\0"
    return data


def _get_perms(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    return strings_payload(conn.get_perms(_one(payload), tx))


def _set_perms(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    count = count_strings(payload)
    if count < 2:
        raise XenstoreError("EINVAL", "expected path and permissions")
    strings = get_strings(payload)
    conn.set_perms(strings[0], strings[1:count], tx)
    return _OK


def _watch(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    strings = get_strings(payload)
    if len(strings) != 2:
        raise XenstoreError("EINVAL", "expected path and token")
    return _OK, conn.add_watch(strings[0], strings[1])


def _unwatch(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    strings = get_strings(payload)
    if len(strings) != 2:
        raise XenstoreError("EINVAL", "expected path and token")
    conn.unwatch(strings[0], strings[1])
    return _OK


def _transaction_start(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    return str(conn.transaction_start(tx)).encode("ascii") + b"\0"


def _transaction_end(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    arg = onearg(payload)
    if arg not in ("T", "F"):
        raise XenstoreError("EINVAL", "expected T or F")
    conn.transaction_end(tx, arg == "T")
    return _OK


def _introduce(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    strings = get_strings(payload)
    if len(strings) < 3:
        raise XenstoreError("EINVAL", "expected domid, gfn, evtchn")
    domid = _unsigned(strings[0])
    # 4.17 ignores the gfn: it maps the ring through the grant table.
    port = _unsigned(strings[2])
    if port == 0:
        raise XenstoreError("EINVAL", "bad event channel")
    store.check_introduce(domid, port)
    store.introduce(domid)
    return _OK


def _domain_arg(store: Store, payload: bytes) -> int:
    """C{onearg_domain}: an introduced domain other than 0."""
    domid = _unsigned(_one(payload))
    if domid == 0:
        raise XenstoreError("EINVAL", "domain 0")
    if not store.is_introduced(domid):
        raise XenstoreError("ENOENT", f"domain {domid} not introduced")
    return domid


def _release(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    store.release(_domain_arg(store, payload))
    return _OK


def _resume(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    # xenstored forgets that it announced the domain's shutdown; the
    # hypervisor model, which decides when @releaseDomain fires, is told.
    store.resume(_domain_arg(store, payload))
    return _OK


def _get_domain_path(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    return store.domain_path(_unsigned(_one(payload))).encode("ascii") + b"\0"


def _is_domain_introduced(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    domid = _unsigned(_one(payload))
    return b"T\0" if domid == DOMID_SELF or store.is_introduced(domid) else b"F\0"


def _set_target(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    strings = get_strings(payload)
    if len(strings) < 2:
        raise XenstoreError("EINVAL", "expected domid and target")
    store.set_target(_unsigned(strings[0]), _unsigned(strings[1]))
    return _OK


def _reset_watches(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    conn.reset_watches()
    return _OK


_CONTROL_COMMANDS = ("check", "help")


def _control(store: Store, conn: StoreConnection, tx: int, payload: bytes) -> _Result:
    strings = get_strings(payload)
    if not strings or strings[0] not in _CONTROL_COMMANDS:
        raise XenstoreError("EINVAL", "unknown control command")
    if strings[0] == "help":
        return "".join(f"{c}\n" for c in _CONTROL_COMMANDS).encode("ascii") + b"\0"
    return _OK


_HANDLERS: Dict[int, _Handler] = {
    Op.CONTROL: _control,
    Op.DIRECTORY: _directory,
    Op.READ: _read,
    Op.GET_PERMS: _get_perms,
    Op.WATCH: _watch,
    Op.UNWATCH: _unwatch,
    Op.TRANSACTION_START: _transaction_start,
    Op.TRANSACTION_END: _transaction_end,
    Op.INTRODUCE: _introduce,
    Op.RELEASE: _release,
    Op.GET_DOMAIN_PATH: _get_domain_path,
    Op.WRITE: _write,
    Op.MKDIR: _mkdir,
    Op.RM: _rm,
    Op.SET_PERMS: _set_perms,
    Op.IS_DOMAIN_INTRODUCED: _is_domain_introduced,
    Op.RESUME: _resume,
    Op.SET_TARGET: _set_target,
    Op.RESET_WATCHES: _reset_watches,
    Op.DIRECTORY_PART: _directory_part,
}


def handle_request(store: Store, conn: StoreConnection,
                   packet: Packet) -> Tuple[Packet, Optional[Tuple[str, str]]]:
    """
    Carry out one request for C{conn}.

    @return: the reply (echoing C{req_id} and C{tx_id}) and an event to
        deliver to C{conn} after the reply, if any.
    @raise XenstoreError: never; errors become C{XS_ERROR} replies.
    """
    op = packet.op
    handler = _HANDLERS.get(op)
    try:
        if handler is None:
            raise XenstoreError("ENOSYS", f"unknown operation {op}")
        if op in _PRIVILEGED and not conn.privileged:
            raise XenstoreError("EACCES", "privileged operation")
        tx_id = 0 if op in _NO_TX else packet.tx_id
        conn.check_transaction(tx_id)
        result = handler(store, conn, tx_id, packet.payload)
        after = None
        if isinstance(result, tuple):
            result, after = result
        if len(result) > PAYLOAD_MAX:
            raise XenstoreError("E2BIG", "reply too long")
        return Packet(op, packet.req_id, packet.tx_id, result), after
    except XenstoreError as e:
        return Packet(Op.ERROR, packet.req_id, packet.tx_id, error_payload(e.errno_name)), None


@implementer(IPushProducer)
class XenstoredProtocol(Protocol):
    """
    One client connection.  Requests are carried out in order, one reply
    each.  When the transport's write buffer is full (the client does not
    read), requests are no longer read and output is queued; queued watch
    events beyond the factory's C{max_queued} bytes drop the connection.
    """

    _log = Logger()

    #: Decoded requests held while stalled or paused before reading stops.
    _MAX_HELD_REQUESTS = 1024

    def __init__(self, factory: "XenstoredFactory") -> None:
        self._factory = factory
        self._decoder = PacketDecoder()
        self._requests: Deque[Packet] = deque()
        self._out: Deque[Tuple[bytes, Optional[bytes]]] = deque()
        self._out_bytes = 0
        self._queued_events: Set[bytes] = set()
        self._out_paused = False
        self._reading_paused = False
        self._dropped = False
        self._processing = False
        self.conn: Optional[StoreConnection] = None

    # -- connection lifecycle -----------------------------------------------

    def connectionMade(self) -> None:
        factory = self._factory
        self.conn = factory.store.connect(factory.domid, self._deliver, self._released)
        factory.protocols.add(self)
        self.transport.registerProducer(self, True)
        self._update_reading()

    def connectionLost(self, reason: object = None) -> None:
        self._dropped = True
        self._factory.protocols.discard(self)
        if self.conn is not None:
            self.conn.close()
        self._requests.clear()
        self._out.clear()
        self._queued_events.clear()

    def _drop(self, why: str) -> None:
        if self._dropped:
            return
        self._dropped = True
        self._log.info("xenstored: dropping connection: {why}", why=why)
        self.transport.abortConnection()

    def _released(self) -> None:
        self._drop(f"domain {self._factory.domid} released")

    # -- input ------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._dropped:
            return
        try:
            packets = self._decoder.feed(data)
        except PayloadTooLarge as e:
            self._requests.clear()
            self._drop(f"payload of {e.args[0]} bytes announced")
            return
        self._requests.extend(packets)
        self.process()

    def process(self) -> None:
        """Carry out held requests while the server is not stalled and the
        client reads its replies."""
        if self._processing:
            return
        self._processing = True
        try:
            store = self._factory.store
            while (self._requests and not self._dropped and not self._out_paused
                   and not self._factory.stalled):
                packet = self._requests.popleft()
                assert self.conn is not None
                reply, after = handle_request(store, self.conn, packet)
                self._send(encode(reply))
                if after is not None:
                    self._deliver(*after)
        except Exception:
            self._log.failure("xenstored: unexpected error; dropping the connection")
            self._drop("internal error")
        finally:
            self._processing = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self._dropped:
            return
        pause = (self._factory.stalled or self._out_paused
                 or len(self._requests) > self._MAX_HELD_REQUESTS)
        if pause and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()

    # -- output -------------------------------------------------------------------

    def _deliver(self, path: str, token: str) -> None:
        payload = path.encode("latin-1") + b"\0" + token.encode("latin-1") + b"\0"
        if len(payload) > PAYLOAD_MAX:
            return
        key = None if path.startswith("@") else payload
        self._send(encode(Packet(Op.WATCH_EVENT, 0, 0, payload)), key)

    def _send(self, data: bytes, event: Optional[bytes] = None) -> None:
        if self._dropped:
            return
        if self._out or self._out_paused or self._factory.stalled:
            if event is not None:
                if event in self._queued_events:
                    return
                self._queued_events.add(event)
            self._out.append((data, event))
            self._out_bytes += len(data)
            if self._out_bytes > self._factory.max_queued:
                self._drop(f"more than {self._factory.max_queued} bytes queued for a client that does not read")
            return
        self.transport.write(data)

    def flush(self) -> None:
        """Write queued output while the client reads and the server is
        not stalled."""
        while self._out and not self._out_paused and not self._factory.stalled and not self._dropped:
            data, event = self._out.popleft()
            self._out_bytes -= len(data)
            if event is not None:
                self._queued_events.discard(event)
            self.transport.write(data)

    # -- IPushProducer: the transport tells us when the client stops reading -------

    def pauseProducing(self) -> None:
        self._out_paused = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self._out_paused = False
        self.flush()
        self.process()

    def stopProducing(self) -> None:
        self._dropped = True


class XenstoredFactory(Factory):
    """
    Serves one L{Store} to every connection of a listening socket.

    @ivar domid: the domain every connection acts as (0: privileged).
    @ivar max_queued: bytes of output queued for a client that does not
        read before it is dropped.
    """

    protocol = XenstoredProtocol  # type: ignore[assignment]
    _log = Logger()

    def __init__(self, store: Store, clock: object, domid: int = 0,
                 max_queued: int = 1 << 20) -> None:
        self.store = store
        self.clock = clock
        self.domid = domid
        self.max_queued = max_queued
        self.stalled = False
        self.protocols: Set[XenstoredProtocol] = set()
        self._stall_call: Optional[IDelayedCall] = None

    def buildProtocol(self, addr: object) -> XenstoredProtocol:
        return XenstoredProtocol(self)

    def stall(self, seconds: Optional[float] = None) -> None:
        """
        Stop answering: requests and events are queued (and clients' input
        no longer read) until L{resume}, or for C{seconds}.
        """
        if self._stall_call is not None and self._stall_call.active():
            self._stall_call.cancel()
        self._stall_call = None
        self.stalled = True
        for proto in list(self.protocols):
            proto._update_reading()
        if seconds is not None:
            self._stall_call = self.clock.callLater(seconds, self.resume)  # type: ignore[attr-defined]

    def resume(self) -> None:
        """Answer again: queued output first, then queued requests."""
        if self._stall_call is not None and self._stall_call.active():
            self._stall_call.cancel()
        self._stall_call = None
        self.stalled = False
        for proto in list(self.protocols):
            proto.flush()
            proto.process()

    def stopFactory(self) -> None:
        if self._stall_call is not None and self._stall_call.active():
            self._stall_call.cancel()
        self._stall_call = None


def listen(reactor: object, store: Store, socket_path: str, domid: int = 0,
           max_queued: int = 1 << 20) -> IListeningPort:
    """
    Serve C{store} on the Unix socket C{socket_path}.

    @param domid: the domain every connection on this socket acts as;
        0 (privileged) like a real xenstored socket.
    @return: the listening port; its C{factory} (a L{XenstoredFactory})
        has the C{stall}/C{resume} hooks.
    """
    factory = XenstoredFactory(store, reactor, domid=domid, max_queued=max_queued)
    return reactor.listenUNIX(socket_path, factory)  # type: ignore[attr-defined,no-any-return]
