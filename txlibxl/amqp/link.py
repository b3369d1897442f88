"""
One AMQP connection that moves between the nodes of a cluster:
:class:`BrokerLink`.

The link connects to the first node of its :class:`~txlibxl.amqp.url.BrokerURL`,
opens a channel and gives it to ``on_ready`` (which declares what it needs
and may fail).  When the connection or that channel is lost, ``on_lost``
is told, and the link connects again, to the next node of the list: at
once after a loss, and after a growing delay (``first_delay`` doubling up
to ``max_delay``) after each failed attempt; a working connection resets
the delay.  :meth:`BrokerLink.drop` closes the current connection on
purpose (a publisher that got a nack starts afresh).
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional

from twisted.internet import defer
from twisted.internet.protocol import ClientCreator
from twisted.logger import Logger
from twisted.python.failure import Failure

from .url import BrokerAddress, BrokerURL

__all__ = ["BrokerLink"]

Ready = Callable[[Any, BrokerAddress], Awaitable[None]]


class BrokerLink:
    """
    :param url: the nodes and credentials.
    :param on_ready: ``await on_ready(channel, node)`` once a channel is open.
    :param on_lost: ``on_lost(reason)`` when a ready channel is lost
        (never after :meth:`stop`).
    :param name: what the logs call this link.
    :param open_timeout: seconds an attempt (TCP, the AMQP handshake,
        the channel and ``on_ready``) may take before it is abandoned for
        the next node.
    :param heartbeat: AMQP heartbeat seconds: how long the peer may seem
        silent before the connection is taken for dead.  A process whose
        reactor is busy for long (the daemon runs libxl on its reactor
        thread, and a storm of a thousand new domains on a loaded machine
        kept it busy for minutes) needs a generous one; a crashed broker
        or client is seen by TCP at once anyway.
    """

    def __init__(
        self,
        reactor: Any,
        url: BrokerURL,
        on_ready: Ready,
        on_lost: Callable[[str], None],
        *,
        name: str = "amqp",
        first_delay: float = 0.1,
        max_delay: float = 5.0,
        connect_timeout: float = 5.0,
        open_timeout: float = 30.0,
        heartbeat: int = 60,
    ) -> None:
        if not url.nodes:
            raise ValueError("a broker URL with no node")
        self._reactor = reactor
        self.url = url
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._log = Logger(namespace=f"txlibxl.amqp.{name}")
        self._name = name
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._delay = first_delay
        self._timeout = connect_timeout
        self._open_timeout = open_timeout
        self._params = url.connection_parameters(heartbeat)
        self._next = 0
        self._stopping = False
        self._timer: Any = None
        self._attempt: Optional[defer.Deferred] = None
        self._connection: Any = None
        self._ready = False
        #: The node of the ready connection, or ``None``.
        self.node: Optional[BrokerAddress] = None
        #: Connections made ready so far (the first one included).
        self.connections = 0

    @property
    def ready(self) -> bool:
        """Whether a channel is open and was handed to ``on_ready``."""
        return self._ready

    def start(self) -> None:
        """Connect (to the first node of the list)."""
        self._stopping = False
        self._schedule(0)

    def drop(self, why: str) -> None:
        """Close the current connection; the link then connects again as after a loss."""
        connection = self._connection
        if connection is not None and self._ready:
            self._log.warn("{name}: closing the connection to {node}: {why}", name=self._name, node=self.node, why=why)
            try:
                connection.close(reply_code=200, reply_text=why[:200])
            except Exception:
                connection.transport.loseConnection()

    def stop(self) -> defer.Deferred:
        """Close the connection and connect no more; fires once closed."""
        self._stopping = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._attempt is not None:
            self._attempt.cancel()
        connection, self._connection = self._connection, None
        self._ready = False
        self.node = None
        if connection is None:
            return defer.succeed(None)
        closed = connection.closed
        try:
            connection.close()
        except Exception:
            pass
        if closed is None or closed.called:
            if connection.transport is not None:
                connection.transport.loseConnection()
            return defer.succeed(None)
        done: defer.Deferred = defer.Deferred()
        closed.addBoth(lambda _: done.called or done.callback(None))
        timer = self._reactor.callLater(2.0, lambda: done.called or done.callback(None))
        done.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return done

    # -- connecting ----------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._stopping:
            return
        self._timer = self._reactor.callLater(delay, self._connect)

    def _connect(self) -> None:
        self._timer = None
        node = self.url.nodes[self._next % len(self.url.nodes)]
        self._next += 1
        attempt = self._attempt = defer.ensureDeferred(self._open(node))
        timer = self._reactor.callLater(self._open_timeout, attempt.cancel)
        attempt.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        attempt.addErrback(self._failed, node)

    async def _open(self, node: BrokerAddress) -> None:
        from pika.adapters.twisted_connection import TwistedProtocolConnection

        creator = ClientCreator(self._reactor, TwistedProtocolConnection, self._params, self._reactor)
        connection = await creator.connectTCP(node.host, node.port, timeout=self._timeout)
        self._connection = connection
        try:
            await connection.ready
            channel = await connection.channel()
            await self._on_ready(channel, node)
        except BaseException:
            self._connection = None
            if connection.transport is not None:
                connection.transport.loseConnection()
            raise
        self._attempt = None
        if self._stopping:
            connection.close()
            return
        self._ready = True
        self.node = node
        self.connections += 1
        self._delay = self._first_delay
        self._next -= 1  # stay on this node next time, unless it is the one lost
        self._log.info("{name}: connected to {node}", name=self._name, node=node)
        channel.on_closed.addBoth(self._channel_closed, connection)
        connection.closed.addBoth(self._lost, connection)

    def _failed(self, failure: Failure, node: BrokerAddress) -> None:
        self._attempt = None
        if self._stopping:
            return
        if failure.check(defer.CancelledError):
            failure = Failure(TimeoutError(f"no working channel within {self._open_timeout} s"))
        delay = self._delay
        self._delay = min(self._max_delay, self._delay * 2)
        self._log.warn(
            "{name}: cannot use {node}: {error}; next node in {delay:.1f} s",
            name=self._name, node=node, error=_describe(failure), delay=delay,
        )
        self._schedule(delay)

    def _channel_closed(self, reason: Any, connection: Any) -> None:
        if connection is self._connection and connection.is_open:
            self._log.warn("{name}: the channel was closed: {why}", name=self._name, why=_describe(reason))
            try:
                connection.close()
            except Exception:
                connection.transport.loseConnection()

    def _lost(self, reason: Any, connection: Any) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        self._ready = False
        node, self.node = self.node, None
        self._next += 1  # the next node of the list
        if self._stopping:
            return
        why = _describe(reason)
        self._log.warn("{name}: lost {node} ({why}); trying the next node", name=self._name, node=node, why=why)
        try:
            self._on_lost(why)
        finally:
            self._schedule(0)


def _describe(reason: Any) -> str:
    if isinstance(reason, Failure):
        reason = reason.value
    if reason is None:
        return "closed"
    text = str(reason)
    return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
