"""
The live fleet page: :class:`FleetSite`.

``GET /``
    The page (plain HTML and JavaScript, nothing fetched from elsewhere):
    a box per host with its domains and their state, and the last events.
``GET /state``
    :meth:`~txlibxl.fleet.state.FleetState.view` as JSON.
``GET /events``
    Server-Sent Events: first ``event: state`` (the whole view), then an
    ``event: update`` (``{"hosts": [changed hosts], "events": [new
    events]}``) each time the state is flushed, a few times a second at
    most; a ``: keepalive`` comment every 15 s.  The page applies them as
    they come, without reloading.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Set

from twisted.internet.task import LoopingCall
from twisted.web import resource, server

from .state import FleetState

__all__ = ["FleetSite", "PAGE_PATH"]

PAGE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode("utf-8")


class _Page(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        with open(PAGE_PATH, "rb") as f:
            self._body = f.read()

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return self._body


class _State(resource.Resource):
    isLeaf = True

    def __init__(self, state: FleetState) -> None:
        super().__init__()
        self._state = state

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self._state.view()).encode("utf-8")


class _Events(resource.Resource):
    isLeaf = True

    def __init__(self, state: FleetState, streams: Set[Any]) -> None:
        super().__init__()
        self._state = state
        self._streams = streams

    def render_GET(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-store")
        request.write(_sse("state", self._state.view()))

        def update(hosts: List[Dict[str, Any]], events: List[Dict[str, Any]]) -> None:
            request.write(_sse("update", {"hosts": hosts, "events": events}))

        remove = self._state.listen(update)
        self._streams.add(request)

        def gone(_: Any) -> None:
            remove()
            self._streams.discard(request)

        request.notifyFinish().addBoth(gone)
        return server.NOT_DONE_YET


class FleetSite(server.Site):
    """
    The page's web site over C{state}; :meth:`start` begins flushing the
    state to the streams every C{interval} seconds, :meth:`stop` ends the
    streams.
    """

    def __init__(self, reactor: Any, state: FleetState, interval: float = 0.25) -> None:
        root = _Page()
        self._streams: Set[Any] = set()
        top = resource.Resource()
        top.putChild(b"", root)
        top.putChild(b"state", _State(state))
        top.putChild(b"events", _Events(state, self._streams))
        super().__init__(top)
        self.state = state
        self._flush = LoopingCall(state.flush)
        self._flush.clock = reactor
        self._keepalive = LoopingCall(self._ping)
        self._keepalive.clock = reactor
        self._interval = interval

    def start(self) -> None:
        self._flush.start(self._interval, now=False)
        self._keepalive.start(15, now=False)

    def stop(self) -> None:
        for loop in (self._flush, self._keepalive):
            if loop.running:
                loop.stop()
        for request in list(self._streams):
            request.finish()
        self._streams.clear()

    def _ping(self) -> None:
        for request in list(self._streams):
            request.write(b": keepalive\n\n")
