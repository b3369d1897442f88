"""
Reading a stream from a chosen place, across broker failures:
:class:`StreamReader`.

The reader consumes the stream (``basic.qos`` with a prefetch window,
manual acks, as streams require over AMQP 0-9-1) from ``start``: an
offset (int), ``"first"``, ``"last"``, ``"next"``, a
:class:`datetime.datetime` or an age such as ``"10m"``.  Each delivery goes
to ``deliver(offset, properties, body)`` in stream order.  When its node
fails, the :class:`~txlibxl.amqp.link.BrokerLink` connects to the next
one, and the reader goes on from the offset after the last one delivered.
Until a publisher has declared the stream the reader waits, checking again
every few seconds.
"""
from __future__ import annotations

import datetime
import re
from typing import Any, Callable, Optional, Union

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlibxl.amqp.link import BrokerLink
from txlibxl.amqp.topology import StreamTopology
from txlibxl.amqp.url import BrokerAddress, BrokerURL

__all__ = ["StreamReader", "StreamMissing", "parse_start"]

Start = Union[int, str, datetime.datetime]
_AGE = re.compile(r"^[1-9][0-9]*(Y|M|D|h|m|s)$")


def parse_start(text: str) -> Start:
    """
    A start as the command line writes it: ``first``, ``last``, ``next``,
    an offset, an age (``10m``, ``2h``, ``1D``) or an ISO 8601 time
    (``2026-01-02T03:04:05Z``).

    :raises ValueError: none of these.
    """
    if text in ("first", "last", "next"):
        return text
    if text.isdigit():
        return int(text)
    if _AGE.match(text):
        return text
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"a start is first, last, next, an offset, an age (10m) or an ISO time, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


class StreamMissing(Exception):
    """No publisher has declared the stream yet (the reader tries again)."""


class StreamReader:
    """
    :param deliver: ``deliver(offset, properties, body)`` for each message, in order.
    :param prefetch: messages the broker sends ahead of the acks.
    """

    _log = Logger(namespace="txlibxl.fleet.reader")

    def __init__(
        self,
        reactor: Any,
        url: BrokerURL,
        topology: StreamTopology,
        start: Start,
        deliver: Callable[[int, Any, bytes], None],
        *,
        prefetch: int = 1000,
        link_factory: Callable[..., Any] = BrokerLink,
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be positive, not {prefetch!r}")
        self._reactor = reactor
        self.topology = topology
        self._start = start
        self._deliver = deliver
        self._prefetch = prefetch
        self._link = link_factory(reactor, url, self._ready, self._lost, name="fleet-reader", max_delay=2.0)
        #: The offset of the last message delivered (``None`` before the first).
        self.offset: Optional[int] = None
        self._generation = 0
        self._unacked = 0
        self._channel: Any = None

    @property
    def node(self) -> Optional[BrokerAddress]:
        return self._link.node

    def start(self) -> None:
        self._link.start()

    def stop(self) -> defer.Deferred:
        self._generation += 1
        return self._link.stop()

    def where_from(self) -> Start:
        """Where a new consumer starts: after the last delivery, else the configured start."""
        return self.offset + 1 if self.offset is not None else self._start

    async def _ready(self, channel: Any, node: BrokerAddress) -> None:
        from pika.exceptions import ChannelClosedByBroker

        try:
            await self.topology.check(channel)
        except ChannelClosedByBroker as e:
            if e.reply_code == 404:
                raise StreamMissing(f"stream {self.topology.stream!r} is not declared yet; waiting for a publisher")
            raise
        await channel.basic_qos(prefetch_count=self._prefetch)
        where = self.where_from()
        queue, _tag = await channel.basic_consume(queue=self.topology.stream, auto_ack=False,
                                                  arguments={"x-stream-offset": where})
        self._log.info("reading stream {stream} on {node} from {where}", stream=self.topology.stream, node=node,
                       where=where)
        self._generation += 1
        self._channel = channel
        self._unacked = 0
        self._read(queue, channel, self._generation)

    def _read(self, queue: Any, channel: Any, generation: int) -> None:
        def got(message: Any) -> None:
            if generation != self._generation:
                return
            headers = message.properties.headers or {}
            offset = headers.get("x-stream-offset")
            if isinstance(offset, int) and (self.offset is None or offset > self.offset):
                try:
                    self._deliver(offset, message.properties, message.body)
                except Exception:
                    self._log.failure("delivering the message at offset {offset}", offset=offset)
                self.offset = offset
            self._unacked += 1
            if self._unacked >= max(1, self._prefetch // 4):
                channel.basic_ack(message.method.delivery_tag, multiple=True)
                self._unacked = 0
            queue.get().addCallbacks(got, ended)

        def ended(failure: Failure) -> None:
            if generation == self._generation:
                self._log.info("stopped reading: {why}", why=failure.getErrorMessage() or failure.type.__name__)
                self._link.drop("the consumer ended")

        queue.get().addCallbacks(got, ended)

    def _lost(self, why: str) -> None:
        self._generation += 1
        self._channel = None

