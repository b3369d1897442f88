"""
The HTTP face of ``twistd libxl-events``: :class:`HTTPSink`.

Resources (``twisted.web``), served on every ``--listen`` endpoint:

``GET /events``
    Server-Sent Events (``text/event-stream``).  Each record is one event:
    ``id:`` its ``seq``, ``event:`` its ``type``, ``data:`` its JSON.  A
    client that sends ``Last-Event-ID`` (browsers do when they reconnect),
    or asks ``/events?since=N``, first gets every record after that one
    (one that is not an integer >= 0 gets a 400 naming the header or the
    parameter)
    still in the ring buffer; if some are no longer there, a ``gap`` event
    (``data: {"missed": N, "first_available": S}``) says so first.  Without
    either, the stream starts with the next record.  A comment line is sent
    every ``heartbeat`` seconds to keep proxies from closing the stream.
    When the service stops, each client gets a ``shutdown`` event and the
    response ends.
``GET /domains``
    JSON: the host's domains (see
    :meth:`~txlibxl.daemon.service.LibxlEventsService.domains`).
``GET /metrics``
    Prometheus text, or OpenMetrics if the client asks for it (see
    :mod:`txlibxl.daemon.metrics`).
``GET /healthz``
    JSON health; ``200`` while a libxl context is open, ``503`` otherwise.
"""
from __future__ import annotations

import json
from collections import deque
from typing import Any, Deque, Dict, List, Optional

from twisted.internet import defer, task
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from ..metrics import render as render_metrics
from ..records import EventRecord
from . import IEventSink, IHostStatus
from .ring import RecordRing

__all__ = ["HTTPSink", "IHostStatus", "format_event"]


def format_event(record: EventRecord) -> bytes:
    """One record as a Server-Sent Event."""
    return f"id: {record.seq}\nevent: {record.type}\ndata: {record.to_json()}\n\n".encode()


def _json(request: Request, body: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, sort_keys=True).encode() + b"\n"


class _HeadLikeGet(Resource):
    """
    ``HEAD`` answers what ``GET`` would, without the body (twisted.web
    otherwise renders the body and logs that it ate it).
    """

    isLeaf = True

    def render_HEAD(self, request: Request) -> bytes:
        body = self.render_GET(request)
        request.setHeader(b"content-length", b"%d" % len(body))
        return b""


class BadResumePoint(ValueError):
    """A resume point that is no sequence number; the message names where it came from."""


def resume_point(request: Request) -> Optional[int]:
    """
    The ``seq`` a stream resumes after: the ``Last-Event-ID`` header, else
    the ``since`` query parameter; ``None`` for neither.

    :raises BadResumePoint: it is not an integer >= 0.
    """
    text: Optional[bytes] = request.getHeader(b"last-event-id")
    name = "the Last-Event-ID header"
    if text is None and b"since" in request.args:
        text, name = request.args[b"since"][0], "the since parameter"
    if text is None or not text.strip():
        return None
    shown = text.decode("utf-8", "replace")
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise BadResumePoint(f"{name} must be a sequence number (an integer >= 0), not {shown!r}")
    return value


class _EventStream(Resource):
    isLeaf = True

    def __init__(self, sink: "HTTPSink") -> None:
        super().__init__()
        self._sink = sink

    def _refused(self, request: Request) -> Optional[bytes]:
        try:
            resume_point(request)
        except BadResumePoint as e:
            return _json(request, {"error": str(e)}, 400)
        if self._sink.closed:
            return _json(request, {"error": "the service is stopping"}, 503)
        return None

    def render_HEAD(self, request: Request) -> bytes:
        refused = self._refused(request)
        if refused is not None:
            request.setHeader(b"content-length", b"%d" % len(refused))
            return b""
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        return b""

    def render_GET(self, request: Request) -> Any:
        refused = self._refused(request)
        if refused is not None:
            return refused
        since = resume_point(request)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        request.write(b"retry: 1000\n: txlibxl libxl-events\n\n")
        if since is not None:
            records, missed = self._sink.ring.since(since)
            if missed:
                gap = {"missed": missed, "first_available": self._sink.ring.first_seq}
                request.write(f"event: gap\ndata: {json.dumps(gap, sort_keys=True)}\n\n".encode())
            for record in records:
                request.write(format_event(record))
        self._sink._add(request)
        return NOT_DONE_YET


class _Domains(_HeadLikeGet):

    def __init__(self, status: Any) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request: Request) -> bytes:
        return _json(request, self._status.domains())


class _Metrics(_HeadLikeGet):

    def __init__(self, status: Any) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request: Request) -> bytes:
        # Rendered here, on the reactor thread, where the gauges' state lives
        # (prometheus_client.twisted's resource collects in a thread pool).
        accept = request.getHeader(b"accept")
        body, content_type = render_metrics(self._status.registry, accept.decode("latin-1") if accept else None)
        request.setHeader(b"content-type", content_type.encode("latin-1"))
        return body


class _Health(_HeadLikeGet):

    def __init__(self, status: Any) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request: Request) -> bytes:
        health = self._status.health()
        return _json(request, health, 200 if health.get("healthy") else 503)


@implementer(IPushProducer)
class _Client:
    """
    One ``/events`` stream, as the producer of its response: while its
    connection's buffer is full (the transport paused it), records wait in
    L{pending}; past the ring's capacity the client is dropped.
    """

    def __init__(self, sink: "HTTPSink", request: Request) -> None:
        self.sink = sink
        self.request = request
        self.paused = False
        self.pending: Deque[bytes] = deque()

    def send(self, data: bytes) -> None:
        if self.paused:
            self.pending.append(data)
            if len(self.pending) > self.sink.ring.capacity:
                self.sink._too_slow(self)
            return
        self.request.write(data)

    def flush(self) -> None:
        while self.pending:
            self.request.write(self.pending.popleft())

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while self.pending and not self.paused:
            self.request.write(self.pending.popleft())

    def stopProducing(self) -> None:
        self.pending.clear()


class _Site(Site):
    def __init__(self, root: Resource, access_log: bool) -> None:
        super().__init__(root)
        self._access_log = access_log

    def log(self, request: Request) -> None:
        if self._access_log:
            super().log(request)


@implementer(IEventSink)
class HTTPSink:
    """
    Keeps the last C{buffer} records for resuming, streams records to the
    connected ``/events`` clients, and serves the status endpoints of
    C{status} (an :class:`IHostStatus`).  :meth:`site` is the factory to
    listen with.

    :raises ValueError: C{buffer} or C{heartbeat} is not positive.
    """

    name = "http"
    _log = Logger()

    def __init__(
        self, reactor: Any, status: Any, buffer: int = 10000, heartbeat: float = 15.0, access_log: bool = False
    ) -> None:
        if not heartbeat > 0:
            raise ValueError(f"heartbeat must be positive, not {heartbeat!r}")
        self.ring = RecordRing(buffer)
        self.closed = False
        self._clients: Dict[Request, _Client] = {}
        self._reactor = reactor
        self._status = status
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        self._heartbeat_interval = heartbeat
        self.access_log = access_log
        root = Resource()
        root.putChild(b"events", _EventStream(self))
        root.putChild(b"domains", _Domains(status))
        root.putChild(b"metrics", _Metrics(status))
        root.putChild(b"healthz", _Health(status))
        self.root = root

    @property
    def clients(self) -> int:
        """The number of ``/events`` streams open."""
        return len(self._clients)

    def site(self) -> Site:
        """
        A ``twisted.web`` Site serving the resources; it logs each request
        (combined log format, to the log) only with C{access_log}.
        """
        site = _Site(self.root, self.access_log)
        site.displayTracebacks = False
        site.noisy = False
        return site

    def _add(self, request: Request) -> None:
        client = _Client(self, request)
        self._clients[request] = client
        request.registerProducer(client, True)
        request.notifyFinish().addBoth(lambda _: self._forget(request))
        if not self._heartbeat.running:
            self._heartbeat.start(self._heartbeat_interval, now=False)

    def _forget(self, request: Request) -> None:
        client = self._clients.pop(request, None)
        if client is not None:
            client.pending.clear()

    def _beat(self) -> None:
        for client in list(self._clients.values()):
            if not client.paused:
                client.request.write(b": keepalive\n\n")
        if not self._clients and self._heartbeat.running:
            self._heartbeat.stop()

    def queue_depth(self) -> int:
        """Records waiting for slow ``/events`` clients to take them."""
        return sum(len(client.pending) for client in self._clients.values())

    def publish(self, record: EventRecord) -> None:
        if self.closed:
            return
        self.ring.append(record)
        if self._clients:
            data = format_event(record)
            for client in list(self._clients.values()):
                client.send(data)

    def _too_slow(self, client: "_Client") -> None:
        self._log.warn(
            "an /events client fell {n} records behind; closing its stream (it can resume from Last-Event-ID)",
            n=len(client.pending),
        )
        self._clients.pop(client.request, None)
        client.pending.clear()
        channel = getattr(client.request, "channel", None)
        transport = getattr(channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def close(self) -> defer.Deferred:
        """
        Tell every ``/events`` client the service stops, end their
        responses and close their connections.  The Deferred fires once
        the connections are closed (at most C{close_timeout} seconds later:
        the reactor drops connections without flushing them at shutdown,
        so the service waits for the last bytes to leave).
        """
        self.closed = True
        if self._heartbeat.running:
            self._heartbeat.stop()
        clients: List[Request] = list(self._clients)
        for client in self._clients.values():
            client.flush()
        self._clients.clear()
        transports = []
        for request in clients:
            try:
                channel = getattr(request, "channel", None)
                request.write(b'event: shutdown\ndata: {"reason": "the service is stopping"}\n\n')
                if getattr(request, "producer", None) is not None:
                    request.unregisterProducer()
                request.finish()
                if channel is not None and channel.transport is not None:
                    transports.append(channel.transport)
                    channel.transport.loseConnection()
            except Exception:
                self._log.failure("ending an event stream")
        return defer.ensureDeferred(self._wait_closed(transports))

    close_timeout = 2.0

    async def _wait_closed(self, transports: List[Any]) -> None:
        waited = 0.0
        while waited < self.close_timeout and any(not getattr(t, "disconnected", True) for t in transports):
            await task.deferLater(self._reactor, 0.01, lambda: None)
            waited += 0.01
