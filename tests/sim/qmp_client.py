"""
A QMP client for tests: talks to a device model's QMP socket (the
stand-in process, or the host's own) as libxl does, with Twisted.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from twisted.internet import defer, reactor
from twisted.internet.protocol import ClientFactory, Protocol

__all__ = ["QmpClient", "qmp_connect", "qmp_open"]


class QmpClient(Protocol):
    """Replies by id; every message (events too) kept in C{messages}."""

    def __init__(self) -> None:
        self.messages: List[Dict[str, Any]] = []
        self._buf = b""
        self._next = 1
        self._waiting: Dict[Any, defer.Deferred] = {}
        self.greeted: defer.Deferred = defer.Deferred()
        self.lost: defer.Deferred = defer.Deferred()
        self.made: Optional[defer.Deferred] = None

    def connectionMade(self) -> None:
        made, self.made = self.made, None
        if made is not None:
            made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self._buf += data
        *complete, self._buf = self._buf.split(b"\r\n")
        for raw in complete:
            message = json.loads(raw)
            self.messages.append(message)
            if "QMP" in message and not self.greeted.called:
                self.greeted.callback(message)
            elif "id" in message and message["id"] in self._waiting:
                self._waiting.pop(message["id"]).callback(message)

    def connectionLost(self, reason: object = None) -> None:
        for d in self._waiting.values():
            d.errback(ConnectionError("QMP connection lost"))
        self._waiting.clear()
        if not self.lost.called:
            self.lost.callback(None)

    def execute(self, name: str, arguments: Optional[Dict[str, Any]] = None, fd: Optional[int] = None) -> defer.Deferred:
        """The whole reply (``return`` or ``error``) to one command."""
        ident = self._next
        self._next += 1
        message: Dict[str, Any] = {"execute": name, "id": ident}
        if arguments is not None:
            message["arguments"] = arguments
        d: defer.Deferred = defer.Deferred()
        self._waiting[ident] = d
        if fd is not None:
            self.transport.sendFileDescriptor(fd)
        self.transport.write(json.dumps(message).encode() + b"\r\n")
        return d

    async def close(self) -> None:
        self.transport.loseConnection()
        await self.lost

    async def call(self, name: str, arguments: Optional[Dict[str, Any]] = None, fd: Optional[int] = None) -> Any:
        """The ``return`` value; an AssertionError carrying the error."""
        reply = await self.execute(name, arguments, fd)
        if "error" in reply:
            raise AssertionError("QMP %s failed: %s" % (name, reply["error"]))
        return reply["return"]


class _Factory(ClientFactory):
    def __init__(self, client: QmpClient, failed: defer.Deferred) -> None:
        self.client = client
        self.failed = failed

    def buildProtocol(self, addr: object) -> QmpClient:
        return self.client

    def clientConnectionFailed(self, connector: object, reason: Any) -> None:
        self.failed.errback(reason)


async def qmp_open(path: str) -> QmpClient:
    """Connect to C{path} (the greeting may or may not come)."""
    client = QmpClient()
    connected: defer.Deferred = defer.Deferred()
    factory = _Factory(client, connected)
    reactor.connectUNIX(path, factory, timeout=5)
    client.made = connected
    await connected
    return client


async def qmp_connect(path: str, negotiate: bool = True) -> QmpClient:
    """Connect to C{path}, wait for the greeting, negotiate."""
    client = await qmp_open(path)
    await client.greeted
    if negotiate:
        await client.call("qmp_capabilities")
    return client
