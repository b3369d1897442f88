"""The hypercall server: answers the libxenctrl shim (``_xcshim``) from a
``Hypervisor`` (``txlibxl.sim.hypervisor``).

Wire protocol
=============

A Unix stream socket (path in the shim's ``TXLIBXL_SIM_HYPERCALL``).  Each
process using the shim holds one connection, reopened after ``fork``, and
makes one request at a time; the server answers requests on a connection
in order.  All integers are little-endian.

Requests come in two forms; both may be mixed on one connection.

*Classic*, 16 bytes: ``uint32 op, uint32 a, uint32 b, uint32 c`` with
``op < 0x80000000``.

*Extended* (protocol version 1), for requests whose arguments do not fit
in three words: a 16-byte header ``uint32 op | 0x80000000, uint32
version, uint32 length, uint32 reserved`` followed by ``length`` bytes of
arguments (at most ``MAX_PAYLOAD``, 65536: a header announcing more drops
the connection, since the stream cannot be resynchronised).  A version
the server does not know gets ``-EPROTO`` and arguments of the wrong size
``-EINVAL``; the arguments are consumed either way, so the connection
stays usable.  The classic ops are not available in the extended form.

Reply (both forms): ``int32 status, uint32 length`` followed by
``length`` payload bytes.  A negative ``status`` is ``-errno`` (the
payload is then empty); otherwise its meaning depends on the op.

======  ==================  =====================  ============================
op      name                arguments              success reply
======  ==================  =====================  ============================
1       GETINFOLIST         a=first, b=max         status = n rows, payload n
                                                   rows of ``ROW`` (below),
                                                   ascending domid >= first
2       PAUSE               a=domid                status 0
3       UNPAUSE             a=domid                status 0
4       SHUTDOWN            a=domid, b=reason      status 0
5       DESTROY             a=domid                status 0
6       HVM_PARAM_GET       a=domid, b=index       payload ``uint64 value``
7       PHYSINFO            -                      payload ``PHYSINFO`` (below)
8       VCPU_GETINFO        a=domid, b=vcpu        payload ``VCPU`` (below)
9       MAX_VCPUS           a=domid, b=count       status 0
10      EVTCHN_ALLOC        a=domid, b=remote      status = the new port
        _UNBOUND
======  ==================  =====================  ============================

Extended ops (version 1; the op number is shown without the high bit):

======  ==================  ===============================  ==================
op      name                arguments                        success reply
======  ==================  ===============================  ==================
1       CREATEDOMAIN        ``CREATE`` (below)               status = domid
2       SETMAXMEM           ``<IQ>`` domid, max KiB          status 0
3       POPULATE            ``<IQ>`` domid, pages            payload ``uint64``
                                                             first mfn of the
                                                             domain's memory
4       GNTTAB_SEED         ``<IQQ>`` domid, console gfn,    status 0
                            xenstore gfn
5       HVM_PARAM_SET       ``<IIQ>`` domid, index, value    status 0
======  ==================  ===============================  ==================

The save and restore ops (classic 16, extended 16 to 19) are in
:mod:`txlibxl.sim.hypercalls_save`.

``CREATE`` (``<II16sIIIII>``): requested domid (any value outside 1..0x7fef
lets the hypervisor choose), ``XEN_DOMCTL_CDF_*`` flags, handle (the
UUID), max_vcpus, x86 emulation flags, ssidref, cpupool, and a reserved
word.

``ROW`` (72 bytes, ``<IIQQQIIII16sI4x``): domid, flags (``XEN_DOMINF_*``
with the shutdown code in bits 16-23, exactly as Xen's ``getdomaininfo``),
tot_pages, max_pages, cpu_time (ns), nr_online_vcpus, max_vcpu_id, ssidref,
cpupool, handle (the domain's UUID, 16 bytes), gpaddr_bits.

``PHYSINFO`` (``<IIIIIIIIQQQ``): threads_per_core, cores_per_socket,
nr_cpus, max_cpu_id, nr_nodes, max_node_id, cpu_khz, capabilities,
total_pages, free_pages, max_mfn.

``VCPU`` (``<BBB5xIQ``): online, blocked, running, cpu, cpu_time (ns).

Errors: an unknown op gets ``-ENOSYS``; a hypervisor refusal gets its
errno (``ESRCH`` for a missing domain, ``EINVAL``...); an unexpected
failure is logged and gets ``-EIO``.  A client that sends garbage only
gets error replies; a client that disconnects mid-request affects nobody
else.

Performance: rows are encoded once per domain state and cached; the
hypervisor keeps its domids sorted, so a GETINFOLIST is a bisection, a
slice and a ``bytes.join``.  Nothing is logged per request unless the
server was made with ``debug=True``.
"""
from __future__ import annotations

import errno
import struct
from typing import Callable, Dict, Optional, Set

from twisted.internet.defer import Deferred, DeferredList

from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from txlibxl.sim.hypercalls_build import _BuildOpsMixin, _WrongSize, wrong_size_error
from txlibxl.sim.hypercalls_save import _SaveOpsMixin
from txlibxl.sim.hypervisor import (
    Domain,
    DomainChange,
    Hypervisor,
    HypervisorError,
    ShutdownReason,
)

__all__ = [
    "OP_DESTROY",
    "OP_GETINFOLIST",
    "OP_HVM_PARAM_GET",
    "OP_PAUSE",
    "OP_PHYSINFO",
    "OP_SHUTDOWN",
    "OP_UNPAUSE",
    "OP_VCPU_GETINFO",
    "EXTENDED",
    "EXTENDED_VERSION",
    "MAX_PAYLOAD",
    "HypercallFactory",
    "HypercallProtocol",
    "REQUEST",
    "REPLY",
    "ROW",
    "encode_row",
    "listen",
]

_log = Logger()

OP_GETINFOLIST = 1
OP_PAUSE = 2
OP_UNPAUSE = 3
OP_SHUTDOWN = 4
OP_DESTROY = 5
OP_HVM_PARAM_GET = 6
OP_PHYSINFO = 7
OP_VCPU_GETINFO = 8

#: The high bit of an extended request's op, its version, and the largest
#: argument block it may carry.
EXTENDED = 0x80000000
EXTENDED_VERSION = 1
MAX_PAYLOAD = 65536

REQUEST = struct.Struct("<IIII")
REPLY = struct.Struct("<iI")
ROW = struct.Struct("<IIQQQIIII16sI4x")
PHYSINFO = struct.Struct("<IIIIIIIIQQQ")
VCPU = struct.Struct("<BBB5xIQ")
U64 = struct.Struct("<Q")

_XEN_INVALID_MAX_VCPU_ID = 0xFFFFFFFF
_OK_EMPTY = REPLY.pack(0, 0)


def encode_row(domain: Domain) -> bytes:
    """One GETINFOLIST row for C{domain}."""
    return ROW.pack(
        domain.domid,
        domain.flags,
        domain.tot_pages,
        domain.max_pages,
        domain.cpu_time_ns,
        0 if domain.dying else domain.online_vcpus,
        domain.vcpus - 1 if domain.vcpus else _XEN_INVALID_MAX_VCPU_ID,
        domain.ssidref,
        domain.cpupool,
        domain.uuid.bytes,
        domain.gpaddr_bits,
    )


def _error(code: int) -> bytes:
    return REPLY.pack(-code, 0)


class HypercallFactory(Factory, _BuildOpsMixin, _SaveOpsMixin):
    """
    Serves the shim's protocol for one hypervisor, with a per-domain cache
    of encoded rows kept fresh through :meth:`Hypervisor.subscribe`.
    Call :meth:`close` to drop every connection and stop following the
    hypervisor.

    @param on_created: called with each domain a client creates
        (``CREATEDOMAIN``), after the hypervisor made it: the host starts
        the agents of a domain some toolstack builds there.
    """

    def __init__(self, hypervisor: Hypervisor, debug: bool = False,
                 on_created: Optional[Callable[[Domain], object]] = None) -> None:
        self.hypervisor = hypervisor
        self.debug = debug
        self.on_created = on_created
        self._rows: Dict[int, bytes] = {}
        self.protocols: Set["HypercallProtocol"] = set()
        self._subscription: Optional[int] = hypervisor.subscribe(self._changed)
        self._ops: Dict[int, Callable[[int, int, int], bytes]] = {
            OP_GETINFOLIST: self._getinfolist,
            OP_PAUSE: self._pause,
            OP_UNPAUSE: self._unpause,
            OP_SHUTDOWN: self._shutdown,
            OP_DESTROY: self._destroy,
            OP_HVM_PARAM_GET: self._hvm_param_get,
            OP_PHYSINFO: self._physinfo,
            OP_VCPU_GETINFO: self._vcpu_getinfo,
        }
        self._ops.update(self._build_ops())
        self._ext: Dict[int, Callable[[bytes], bytes]] = self._extended_ops()
        for table, more in ((self._ops, self._save_ops()), (self._ext, self._save_extended_ops())):
            if set(table) & set(more):
                raise ValueError("hypercall ops %s defined twice" % sorted(set(table) & set(more)))
            table.update(more)

    def buildProtocol(self, addr: object) -> "HypercallProtocol":
        protocol = HypercallProtocol()
        protocol.factory = self
        return protocol

    def close(self) -> Deferred:
        """
        Stop following the hypervisor and abort every open connection (the
        shims reconnect on their next call, to whatever then listens).

        @return: a Deferred that fires once every connection is closed.
        """
        if self._subscription is not None:
            self.hypervisor.unsubscribe(self._subscription)
            self._subscription = None
        self._rows.clear()
        lost = []
        for protocol in list(self.protocols):
            d: Deferred = Deferred()
            protocol.on_lost.append(d)
            lost.append(d)
            protocol.transport.abortConnection()
        return DeferredList(lost).addCallback(lambda _: None)

    def _changed(self, domain: Domain, what: DomainChange) -> None:
        self._rows.pop(domain.domid, None)

    # -- requests ---------------------------------------------------------

    def handle(self, op: int, a: int, b: int, c: int) -> bytes:
        """The complete reply (header and payload) to one request."""
        handler = self._ops.get(op)
        if handler is None:
            return _error(errno.ENOSYS)
        try:
            reply = handler(a, b, c)
        except HypervisorError as e:
            reply = _error(e.errno)
        except Exception:
            _log.failure("hypercall op {op} ({a}, {b}, {c}) failed", op=op, a=a, b=b, c=c)
            reply = _error(errno.EIO)
        if self.debug:
            _log.debug(
                "hypercall op {op} ({a}, {b}, {c}) -> {status}",
                op=op, a=a, b=b, c=c, status=REPLY.unpack_from(reply)[0],
            )
        return reply

    def handle_extended(self, op: int, version: int, payload: bytes) -> bytes:
        """The complete reply to one extended request (C{op} without the
        high bit)."""
        handler = self._ext.get(op)
        if handler is None:
            return _error(errno.ENOSYS)
        if version != EXTENDED_VERSION:
            return _error(errno.EPROTO)
        try:
            reply = handler(payload)
        except _WrongSize:
            reply = wrong_size_error()
        except HypervisorError as e:
            reply = _error(e.errno)
        except Exception:
            _log.failure("extended hypercall op {op} failed", op=op)
            reply = _error(errno.EIO)
        if self.debug:
            _log.debug(
                "hypercall extended op {op} ({n} bytes) -> {status}",
                op=op, n=len(payload), status=REPLY.unpack_from(reply)[0],
            )
        return reply

    def _getinfolist(self, first: int, max_domains: int, _c: int) -> bytes:
        hv = self.hypervisor
        rows = self._rows
        domids = hv.domids_from(first, max_domains)
        try:
            payload = b"".join(map(rows.__getitem__, domids))
        except KeyError:
            for domid in domids:
                if domid not in rows:
                    rows[domid] = encode_row(hv.get(domid))
            payload = b"".join(map(rows.__getitem__, domids))
        return REPLY.pack(len(domids), len(payload)) + payload

    def _pause(self, domid: int, _b: int, _c: int) -> bytes:
        self.hypervisor.pause(domid)
        return _OK_EMPTY

    def _unpause(self, domid: int, _b: int, _c: int) -> bytes:
        self.hypervisor.unpause(domid)
        return _OK_EMPTY

    def _shutdown(self, domid: int, reason: int, _c: int) -> bytes:
        try:
            reason = ShutdownReason(reason)
        except ValueError:
            return _error(errno.EINVAL)
        self.hypervisor.shutdown(domid, reason)
        return _OK_EMPTY

    def _destroy(self, domid: int, _b: int, _c: int) -> bytes:
        self.hypervisor.destroy(domid)
        return _OK_EMPTY

    def _hvm_param_get(self, domid: int, index: int, _c: int) -> bytes:
        value = self.hypervisor.hvm_param_get(domid, index)
        return REPLY.pack(0, U64.size) + U64.pack(value)

    def _physinfo(self, _a: int, _b: int, _c: int) -> bytes:
        host = self.hypervisor.host
        total_pages = host.total_memory_kb // 4
        payload = PHYSINFO.pack(
            host.threads_per_core,
            host.cores_per_socket,
            host.nr_cpus,
            host.nr_cpus - 1,
            host.nr_nodes,
            host.nr_nodes - 1,
            host.cpu_khz,
            host.capabilities,
            total_pages,
            self.hypervisor.free_memory_kb() // 4,
            total_pages - 1,
        )
        return REPLY.pack(0, len(payload)) + payload

    def _vcpu_getinfo(self, domid: int, vcpu: int, _c: int) -> bytes:
        domain = self.hypervisor.get(domid)
        if vcpu >= domain.vcpus:
            return _error(errno.EINVAL)
        up = not domain.dying and vcpu not in domain.offline_vcpus
        running = up and domain.running
        payload = VCPU.pack(
            1 if up else 0,
            1 if up and domain.blocked and not running else 0,
            1 if running else 0,
            vcpu % self.hypervisor.host.nr_cpus,
            domain.cpu_time_ns // max(1, domain.vcpus),
        )
        return REPLY.pack(0, len(payload)) + payload


class HypercallProtocol(Protocol):
    """One shim connection: requests in, replies out, in order."""

    factory: HypercallFactory

    def connectionMade(self) -> None:
        self._buffer = b""
        self.on_lost: list = []
        self.factory.protocols.add(self)

    def connectionLost(self, reason: object = None) -> None:
        self.factory.protocols.discard(self)
        waiting, self.on_lost = self.on_lost, []
        for d in waiting:
            d.callback(None)

    def dataReceived(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        size = REQUEST.size
        total = len(buf)
        handle = self.factory.handle
        unpack = REQUEST.unpack_from
        replies = []
        offset = 0
        while total - offset >= size:
            op, a, b, c = unpack(buf, offset)
            if op & EXTENDED:
                if b > MAX_PAYLOAD:
                    self.transport.loseConnection()
                    self._buffer = b""
                    return
                end = offset + size + b
                if end > total:
                    break
                replies.append(self.factory.handle_extended(op & ~EXTENDED, a, buf[offset + size:end]))
                offset = end
            else:
                replies.append(handle(op, a, b, c))
                offset += size
        if replies:
            self._send(replies[0] if len(replies) == 1 else b"".join(replies))
        self._buffer = buf[offset:]

    def _send(self, data: bytes) -> None:
        """
        Write C{data}, straight to the socket when nothing is queued in
        the transport (saving a reactor turn and its poller updates per
        reply); whatever the socket does not take goes through the
        transport as usual, so order is kept.
        """
        transport = self.transport
        sock = getattr(transport, "socket", None)
        if (
            sock is not None
            and not getattr(transport, "_tempDataBuffer", True)
            and not getattr(transport, "dataBuffer", True)
            and getattr(transport, "connected", False)
        ):
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0  # the transport will find the error itself
            data = data[sent:]
            if not data:
                return
        transport.write(data)


def listen(reactor: object, hypervisor: Hypervisor, socket_path: str,
           debug: bool = False,
           on_created: Optional[Callable[[Domain], object]] = None) -> IListeningPort:
    """
    Serve C{hypervisor} to shims on the Unix socket C{socket_path}.

    Stopping the returned port stops accepting; ``port.factory.close()``
    (a :class:`HypercallFactory`) then closes the open connections and
    detaches from the hypervisor.
    """
    factory = HypercallFactory(hypervisor, debug=debug, on_created=on_created)
    return reactor.listenUNIX(socket_path, factory)  # type: ignore[attr-defined]
