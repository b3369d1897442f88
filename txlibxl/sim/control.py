"""
The simulated host's control plane: newline-delimited JSON on a Unix socket.

A request is ``{"id": <int>, "op": "<name>", ...args}``; its reply is
``{"id": <same>, "ok": true, "result": <value>}`` or ``{"id": <same>, "ok":
false, "error": {"type": "<ErrorClass>", "message": "..."}}``.  Ops that
wait reply when they are done, so replies may come out of order.  A bad
line, an unknown op or bad arguments get an error reply; the connection
stays up.  The ops themselves are not defined here: a :class:`ControlServer`
dispatches to a table of handlers (see ``txlibxl.sim.host``).

:class:`ControlClient` is the Python side: ``connect`` it, then ``call`` ops
or use the named methods.
"""
import inspect
import json
from typing import Any, Callable, Dict, Mapping, Optional

from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from .errors import BadRequest, SimError

__all__ = ["ControlError", "UnknownOp", "ControlServer", "ControlClient", "Handler", "check_arguments"]

log = Logger()

#: A handler takes the request's arguments (everything but ``id`` and
#: ``op``) as keyword arguments and returns a JSON-able value or a Deferred
#: of one; it raises a ``SimError`` subclass to refuse.
Handler = Callable[..., Any]

#: Request lines longer than this are refused (and the connection closed,
#: since the stream cannot be resynchronised otherwise).
MAX_LINE = 16 * 1024 * 1024


class UnknownOp(SimError):
    """The request names an op the host does not have."""


class ControlError(Exception):
    """
    An error reply from the host: C{type} is the error class name
    (``NoSuchDomain``, ``BadRequest``, ``UnknownOp``, ``Conflict``,
    ``InternalError``) and C{message} says what went wrong.
    """

    def __init__(self, type: str, message: str):
        super().__init__("%s: %s" % (type, message))
        self.type = type
        self.message = message


def _error_body(failure: Failure) -> Dict[str, str]:
    exc = failure.value
    if isinstance(exc, SimError):
        return {"type": type(exc).__name__, "message": str(exc)}
    log.failure("control op failed unexpectedly", failure)
    return {"type": "InternalError", "message": "%s: %s" % (type(exc).__name__, exc)}


class _ServerProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE

    def __init__(self, handlers: Mapping[str, Handler]):
        self._handlers = handlers
        self._connected = False

    def connectionMade(self) -> None:
        self._connected = True

    def connectionLost(self, reason=None) -> None:
        self._connected = False

    def lineLengthExceeded(self, line) -> None:
        self._send({"id": None, "ok": False, "error": {"type": "BadRequest", "message": "request line too long"}})
        self.transport.loseConnection()

    def lineReceived(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            request = json.loads(line)
        except ValueError as e:
            self._send({"id": None, "ok": False, "error": {"type": "BadRequest", "message": "not JSON: %s" % e}})
            return
        rid = request.get("id") if isinstance(request, dict) else None
        d = defer.maybeDeferred(self._dispatch, request)
        d.addCallbacks(
            lambda result: {"id": rid, "ok": True, "result": result},
            lambda f: {"id": rid, "ok": False, "error": _error_body(f)},
        )
        d.addCallback(self._send)
        d.addErrback(lambda f: log.failure("cannot send a control reply", f))

    def _dispatch(self, request: Any) -> Any:
        if not isinstance(request, dict):
            raise BadRequest("a request must be a JSON object")
        rid = request.get("id")
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise BadRequest("a request needs an integer id, got %r" % (rid,))
        op = request.get("op")
        if not isinstance(op, str):
            raise BadRequest("a request needs an op name")
        handler = self._handlers.get(op)
        if handler is None:
            raise UnknownOp("no op %r (ops: %s)" % (op, ", ".join(sorted(self._handlers))))
        args = {k: v for k, v in request.items() if k not in ("id", "op")}
        log.debug("control {op} {args}", op=op, args=args)
        check_arguments(op, handler, args)
        return handler(**args)

    def _send(self, reply: Dict[str, Any]) -> None:
        if self._connected:
            self.sendLine(json.dumps(reply, separators=(",", ":")).encode("utf-8"))


def check_arguments(what: str, handler: Handler, args: Dict[str, Any]) -> None:
    """
    @raise BadRequest: C{handler} cannot be called with C{args} (an
        unknown or a missing argument).
    """
    try:
        inspect.signature(handler).bind(**args)
    except TypeError as e:
        raise BadRequest("%s: %s" % (what, e)) from None


class ControlServer(Factory):
    """
    Serves the control protocol for a table of handlers, op name to
    L{Handler}.  Listen with e.g.
    ``reactor.listenUNIX(path, ControlServer(handlers))``.
    """

    def __init__(self, handlers: Mapping[str, Handler]):
        self.handlers = handlers

    def buildProtocol(self, addr) -> _ServerProtocol:
        return _ServerProtocol(self.handlers)


class _ClientProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1 << 30

    def __init__(self) -> None:
        self._next_id = 1
        self._pending: Dict[int, defer.Deferred] = {}
        self._lost: Optional[Failure] = None
        self.closed = defer.Deferred()

    def call(self, op: str, args: Dict[str, Any]) -> defer.Deferred:
        if self._lost is not None:
            return defer.fail(self._lost)
        rid = self._next_id
        self._next_id += 1
        request = dict(args)
        request["id"] = rid
        request["op"] = op
        line = json.dumps(request, separators=(",", ":")).encode("utf-8")
        d = defer.Deferred()
        self._pending[rid] = d
        self.sendLine(line)
        return d

    def lineReceived(self, line: bytes) -> None:
        try:
            reply = json.loads(line)
            d = self._pending.pop(reply["id"])
        except (ValueError, KeyError, TypeError):
            log.error("unexpected control reply: {line!r}", line=line)
            return
        if reply.get("ok"):
            d.callback(reply.get("result"))
        else:
            error = reply.get("error") or {}
            d.errback(ControlError(error.get("type", "InternalError"), error.get("message", "")))

    def connectionLost(self, reason=None) -> None:
        self._lost = reason if reason is not None else Failure(ConnectionDone())
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(self._lost)
        self.closed.callback(None)


class ControlClient:
    """
    A connection to a simulated host's control socket.

    ``call(op, **args)`` returns a Deferred that fires with the op's result
    or fails with L{ControlError}; if the connection is lost first, pending
    calls fail with the connection's loss reason.
    """

    def __init__(self, protocol: _ClientProtocol):
        self._protocol = protocol

    @classmethod
    def connect(cls, reactor, path: str) -> defer.Deferred:
        """Connect to the control socket at C{path}: Deferred[ControlClient]."""
        d = connectProtocol(UNIXClientEndpoint(reactor, path), _ClientProtocol())
        d.addCallback(cls)
        return d

    def call(self, op: str, **args: Any) -> defer.Deferred:
        return self._protocol.call(op, args)

    def disconnect(self) -> defer.Deferred:
        """Close the connection; the Deferred fires once it is closed."""
        if self._protocol._lost is None:
            self._protocol.transport.loseConnection()
        return _chain(self._protocol.closed)

    # named ops

    def ping(self) -> defer.Deferred:
        return self.call("ping")

    def create_domain(self, name: str, **args: Any) -> defer.Deferred:
        """Deferred[{"domid", "uuid", "name"}]; args as in the protocol."""
        return self.call("create_domain", name=name, **args)

    def create_domains(self, count: int, **args: Any) -> defer.Deferred:
        return self.call("create_domains", count=count, **args)

    def shutdown(self, domid: int, reason: str) -> defer.Deferred:
        return self.call("shutdown", domid=domid, reason=reason)

    def crash(self, domid: int) -> defer.Deferred:
        return self.call("crash", domid=domid)

    def resume(self, domid: int) -> defer.Deferred:
        return self.call("resume", domid=domid)

    def pause(self, domid: int) -> defer.Deferred:
        return self.call("pause", domid=domid)

    def unpause(self, domid: int) -> defer.Deferred:
        return self.call("unpause", domid=domid)

    def destroy(self, domids, mode: str = "burst", **args: Any) -> defer.Deferred:
        """C{mode="rate"} takes C{rate=} (domains per second)."""
        return self.call("destroy", domids=list(domids), mode=mode, **args)

    def eject(self, domid: int, vdev: str) -> defer.Deferred:
        return self.call("eject", domid=domid, vdev=vdev)

    def list(self) -> defer.Deferred:
        return self.call("list")

    def info(self, domid: int) -> defer.Deferred:
        return self.call("info", domid=domid)

    def guest_marker(self, domid: int, value: str) -> defer.Deferred:
        """The guest writes C{value} into its memory (what a save carries)."""
        return self.call("guest_marker", domid=domid, value=value)

    def guest_image(self, domid: int, kb: int) -> defer.Deferred:
        """The domain's memory image, what a save streams, is C{kb} KiB."""
        return self.call("guest_image", domid=domid, kb=kb)

    def fault(self, kind: str, **args: Any) -> defer.Deferred:
        return self.call("fault", kind=kind, **args)

    def stop(self) -> defer.Deferred:
        """Ask the host to exit; fires with its reply (before it exits)."""
        return self.call("stop")


def _chain(d: defer.Deferred) -> defer.Deferred:
    """A new Deferred that fires with C{d}'s result without consuming it."""
    out = defer.Deferred()
    d.addBoth(lambda r: (out.callback(None), r)[1])
    return out
