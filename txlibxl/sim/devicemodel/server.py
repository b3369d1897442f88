"""
QMP on Unix sockets, with Twisted: a :class:`QmpListener` per QMP socket
of a device model (QEMU's ``-chardev socket,server=on`` with ``-mon
mode=control``), one :class:`~txlibxl.sim.devicemodel.qmp.QmpSession` per
client, file descriptors passed with ``SCM_RIGHTS`` handed to it.

The listener binds the socket itself, as QEMU does (a stale file at the
path is replaced; only its owner may connect), or takes one the toolstack
bound and passed (``-chardev ...,fd=N``).  When it closes it removes the file only if it is still the
one it bound: libxl removes the socket itself when it destroys the
domain, and a new device model of a reused domid may be listening there
already.

Unlike QEMU's chardev, which takes one client at a time, a listener
serves any number at once; libxl serialises its own clients with a lock.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Callable, Optional, Set

from twisted.internet import tcp, unix
from twisted.internet.interfaces import IFileDescriptorReceiver
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from .qmp import QmpSession

__all__ = ["QmpFactory", "QmpListener", "QmpProtocol"]

SessionMaker = Callable[[Callable[[bytes], Any], Callable[[], Any]], QmpSession]


@implementer(IFileDescriptorReceiver)
class QmpProtocol(Protocol):
    """One client connection."""

    factory: "QmpFactory"
    session: QmpSession

    def connectionMade(self) -> None:
        self.factory.protocols.add(self)
        self.session = self.factory.make_session(self.transport.write, self.transport.loseConnection)
        self.session.start()

    def dataReceived(self, data: bytes) -> None:
        self.session.data_received(data)

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self.session.fd_received(descriptor)

    def connectionLost(self, reason: object = None) -> None:
        self.factory.protocols.discard(self)
        self.session.connection_lost()


class QmpFactory(Factory):
    """
    @param make_session: C{make_session(send, close)} gives the session of
        a new client.
    """

    protocol = QmpProtocol
    noisy = False

    def __init__(self, make_session: SessionMaker) -> None:
        self.make_session = make_session
        self.protocols: Set[QmpProtocol] = set()

    def disconnect_all(self) -> None:
        """Close every client's connection (after what it was sent)."""
        for protocol in list(self.protocols):
            protocol.transport.loseConnection()


class _Port(unix.Port):
    """A Unix port that leaves its socket file alone when it closes
    (:meth:`QmpListener.close` removes it, if it is still its own)."""

    def connectionLost(self, reason: Any) -> None:
        if self.lockFile is not None:
            self.lockFile.unlock()
        tcp.Port.connectionLost(self, reason)


class QmpListener:
    """A listening QMP socket; :meth:`close` stops it and tidies up."""

    def __init__(self, port: Any, factory: QmpFactory, path: Optional[str], inode: Optional[int]) -> None:
        self.port = port
        self.factory = factory
        self.path = path
        self._inode = inode
        self.closed = False

    @classmethod
    def bind(cls, reactor: Any, path: str, factory: QmpFactory, backlog: int = 8) -> "QmpListener":
        """
        Listen on C{path}.

        @raise OSError: it cannot be bound (no directory, too long...).
        """
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        port = _Port(path, factory, backlog=backlog, mode=0o600, reactor=reactor)
        try:
            port.startListening()
        except Exception as e:
            raise OSError(getattr(getattr(e, "socketError", None), "errno", None) or 0,
                          "cannot listen on %s: %s" % (path, e)) from None
        return cls(port, factory, path, os.stat(path).st_ino)

    @classmethod
    def adopt(cls, reactor: Any, fd: int, factory: QmpFactory) -> "QmpListener":
        """Listen on the bound socket C{fd} the toolstack passed (closed here)."""
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            raise
        try:
            if sock.family != socket.AF_UNIX:
                raise OSError("fd %d is not a Unix socket" % fd)
            sock.listen(8)
            sock.setblocking(False)
            port = _Port._fromListeningDescriptor(reactor, sock.fileno(), factory)
            port.startListening()
        finally:
            sock.close()
        return cls(port, factory, None, None)

    def close(self) -> None:
        """Stop listening, drop the clients, remove the socket if ours."""
        if self.closed:
            return
        self.closed = True
        self.port.stopListening()
        self.factory.disconnect_all()
        if self.path is None:
            return
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
