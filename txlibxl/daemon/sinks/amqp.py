"""
Records to a RabbitMQ stream: :class:`AMQPSink`.

Every record goes, persistent and with publisher confirms, to a durable
topic exchange with the routing key ``xen.<host>.<uuid>.<type>``; a stream
bound to it keeps them for replay (:mod:`txlibxl.amqp.topology`).  Each
message says who it is: ``message_id`` ``<host>:<seq>``, and the headers
``txlibxl-host``, ``txlibxl-seq``, ``txlibxl-prev-seq`` (the seq of the
message before it from this host's sink, 0 for the first) and
``txlibxl-refused`` (records refused between the two, see below).

Delivery
--------
A record is written to the :class:`~txlibxl.daemon.sinks.spool.Spool`
before it is sent and leaves it only when the broker confirms it.  At most
``window`` messages are unconfirmed on the wire; the rest wait in the
spool.  When the connection (or its channel) is lost, or the broker nacks
a message, everything unconfirmed is sent again, oldest first, on the next
connection (:class:`~txlibxl.amqp.link.BrokerLink` moves to the next node
of the URL).  So each host's messages reach the stream in ``seq`` order,
where a resend may repeat messages that had already arrived: at least
once, and consumers drop the repeats by ``message_id`` (``docs/fleet.rst``
says why the highest seq seen per host is enough).

A full spool
------------
When the spool holds ``capacity`` records (the broker has been away a
long time), new records are **refused**: not spooled and never sent.  The
sink logs an error once, counts each refusal
(``txlibxl_amqp_refused_total``) and shows ``txlibxl_amqp_spool_full 1``.
Once the spool is back under ``resume`` of its capacity, it logs how many
it refused, the next message carries that count in ``txlibxl-refused``,
and the sink asks the service for a fresh ``snapshot`` record so that
consumers can correct their view of the host.  What was spooled is never
dropped: an entry leaves the spool only on the broker's confirm.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txlibxl.amqp.link import BrokerLink
from txlibxl.amqp.topology import StreamTopology, routing_key
from txlibxl.amqp.url import BrokerAddress, BrokerURL

from ..metrics import Metrics
from ..records import EventRecord
from . import IEventSink
from .spool import Spool, SpoolEntry

__all__ = ["AMQPSink"]


@implementer(IEventSink)
class AMQPSink(Service):
    """
    Publishes records to C{topology}'s exchange on the broker C{url},
    through C{spool}.  A ``twisted.application`` service: it connects when
    started; :meth:`close` (the events service calls it) waits up to
    C{drain_timeout} seconds for outstanding confirms, then disconnects,
    leaving whatever is unconfirmed in the spool for the next start.

    :param window: most messages unconfirmed at once.
    :param metrics: where to count (the events service's
        :class:`~txlibxl.daemon.metrics.Metrics`).
    :param resync: called when consumers need a fresh snapshot: at start
        and after records were refused (the events service's
        ``request_snapshot``).
    :param resume: the fraction of the capacity under which a full spool
        takes records again.
    """

    name = "amqp"
    _log = Logger(namespace="txlibxl.daemon.sinks.amqp")

    def __init__(
        self,
        reactor: Any,
        url: BrokerURL,
        spool: Spool,
        topology: StreamTopology,
        *,
        window: int = 500,
        metrics: Optional[Metrics] = None,
        resync: Optional[Callable[[], None]] = None,
        resume: float = 0.9,
        sync_interval: float = 0.2,
        drain_timeout: float = 2.0,
        link_factory: Callable[..., Any] = BrokerLink,
    ) -> None:
        if window < 1:
            raise ValueError(f"the in-flight window must be at least 1, not {window!r}")
        if not 0 < resume < 1:
            raise ValueError(f"resume must be a fraction of the capacity, not {resume!r}")
        self._reactor = reactor
        self.spool = spool
        self.topology = topology
        self.window = window
        self._resync = resync
        self._resume_below = max(0, min(spool.capacity - 1, int(spool.capacity * resume)))
        self._drain_timeout = drain_timeout
        self.metrics = metrics if metrics is not None else Metrics()
        # The daemon's reactor runs libxl: a storm can keep it from
        # answering heartbeats for minutes (see BrokerLink).
        self._link = link_factory(reactor, url, self._ready, self._lost, name="amqp-sink", heartbeat=600)
        self._sync = LoopingCall(self._sync_spool)
        self._sync.clock = reactor
        self._sync_interval = sync_interval
        self._channel: Any = None
        self._generation = 0
        self._unsent: Deque[SpoolEntry] = deque(spool.pending())
        self._in_flight: Dict[int, SpoolEntry] = {}
        self._refusing = False
        self._refused_run = 0
        self._closed = False
        self._drained: Optional[defer.Deferred] = None
        self._register_metrics()

    # -- IEventSink ----------------------------------------------------------

    def publish(self, record: EventRecord) -> None:
        if self._closed:
            return
        if self._refusing and len(self.spool) < self._resume_below:
            self._stop_refusing()
        if self._refusing or self.spool.full:
            self._refuse(record)
            return
        entry = self.spool.append(
            record.seq, record.host, record.type, routing_key(record.host, record.uuid, record.type),
            record.to_json().encode("utf-8"), refused=self._refused_run,
        )
        self._refused_run = 0
        self._unsent.append(entry)
        self._pump()

    def close(self) -> defer.Deferred:
        """Stop taking records; drain, disconnect, sync the spool."""
        if self._closed:
            return defer.succeed(None)
        self._closed = True
        return defer.ensureDeferred(self._close())

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._link.start()
        self._sync.start(self._sync_interval, now=False)
        if self._resync is not None:
            self._resync()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return self.close()

    @property
    def node(self) -> Optional[BrokerAddress]:
        """The broker node connected to, or ``None``."""
        return self._link.node

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def _close(self) -> None:
        if self._in_flight and self._channel is not None:
            self._drained = defer.Deferred()
            timer = self._reactor.callLater(self._drain_timeout, self._drained_now)
            await self._drained
            if timer.active():
                timer.cancel()
        await self._link.stop()
        if self._sync.running:
            self._sync.stop()
        self.spool.close()
        self._log.info("AMQP sink closed; {n} records stay in the spool for the next start", n=len(self.spool))

    def _drained_now(self) -> None:
        d, self._drained = self._drained, None
        if d is not None:
            d.callback(None)

    # -- the connection ------------------------------------------------------

    async def _ready(self, channel: Any, node: BrokerAddress) -> None:
        await self.topology.declare(channel)
        await channel.confirm_delivery()
        self._restart()
        self._channel = channel
        self.metrics.count("txlibxl_amqp_connections_total")
        if self._unsent:
            self._log.info("AMQP sink: sending {n} unconfirmed records to {node}", n=len(self._unsent), node=node)
        self._pump()

    def _lost(self, why: str) -> None:
        self._restart()

    def _restart(self) -> None:
        """Forget the channel: everything unconfirmed is to be sent again, oldest first."""
        self._generation += 1
        self._channel = None
        self._in_flight.clear()
        self._unsent = deque(self.spool.pending())

    # -- sending -------------------------------------------------------------

    def _pump(self) -> None:
        channel = self._channel
        if channel is None:
            return
        import pika

        generation = self._generation
        exchange = self.topology.exchange
        while self._unsent and len(self._in_flight) < self.window:
            entry = self._unsent.popleft()
            properties = pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                message_id=f"{entry.host}:{entry.seq}",
                type=entry.type,
                app_id="txlibxl-events",
                headers={
                    "txlibxl-host": entry.host,
                    "txlibxl-seq": entry.seq,
                    "txlibxl-prev-seq": entry.prev,
                    "txlibxl-refused": entry.refused,
                },
            )
            self._in_flight[entry.seq] = entry
            d = channel.basic_publish(exchange, entry.routing_key, entry.body, properties)
            d.addCallbacks(self._confirmed, self._unconfirmed, (entry, generation), None, (entry, generation))
            self.metrics.count("txlibxl_amqp_published_total")

    def _confirmed(self, _: Any, entry: SpoolEntry, generation: int) -> None:
        self.spool.ack(entry.seq)
        self.metrics.count("txlibxl_amqp_confirmed_total")
        if generation == self._generation:
            self._in_flight.pop(entry.seq, None)
        if self._refusing and len(self.spool) < self._resume_below:
            self._stop_refusing()
        if self._drained is not None and not self._in_flight:
            self._drained_now()
        self._pump()

    def _unconfirmed(self, failure: Failure, entry: SpoolEntry, generation: int) -> None:
        if generation != self._generation:
            return None  # that channel is gone already; the entry is queued again
        from pika.exceptions import NackError, UnroutableError

        if failure.check(NackError, UnroutableError):
            self.metrics.count("txlibxl_amqp_nacked_total")
            self._log.warn("AMQP sink: the broker did not take record {seq} ({error}); starting over on a new connection",
                           seq=entry.seq, error=failure.type.__name__)
            self._restart()
            self._link.drop(f"record {entry.seq} was not taken")
        else:
            self._restart()  # the connection went: _lost follows, and the next one resends
        if self._drained is not None:
            self._drained_now()
        return None

    # -- refusing ------------------------------------------------------------

    def _refuse(self, record: EventRecord) -> None:
        if not self._refusing:
            self._refusing = True
            self._log.error(
                "AMQP spool full ({n} unconfirmed records, broker {state}): refusing new records until it is "
                "under {resume}; they are counted in txlibxl_amqp_refused_total",
                n=len(self.spool), state=f"at {self.node}" if self.node else "unreachable", resume=self._resume_below,
            )
        self._refused_run += 1
        self.metrics.count("txlibxl_amqp_refused_total")

    def _stop_refusing(self) -> None:
        self._refusing = False
        self._log.warn("AMQP spool has room again after refusing {n} records; asking for a fresh snapshot",
                       n=self._refused_run)
        if self._resync is not None:
            self._resync()

    # -- housekeeping --------------------------------------------------------

    def _sync_spool(self) -> None:
        try:
            self.spool.sync()
        except OSError:
            self._log.failure("cannot sync the AMQP spool")

    def _register_metrics(self) -> None:
        m = self.metrics
        m.counter("txlibxl_amqp_published_total", "Messages sent to the broker (resends included).")
        m.counter("txlibxl_amqp_confirmed_total", "Messages the broker confirmed.")
        m.counter("txlibxl_amqp_nacked_total", "Messages the broker nacked or returned (sent again).")
        m.counter("txlibxl_amqp_refused_total", "Records refused because the spool was full (never sent).")
        m.counter("txlibxl_amqp_connections_total", "Broker connections made ready.")
        m.gauge("txlibxl_amqp_spool_entries", "Records in the spool, waiting for a confirm.", lambda: len(self.spool))
        m.gauge("txlibxl_amqp_spool_capacity", "Records the spool holds at most.", lambda: self.spool.capacity)
        m.gauge("txlibxl_amqp_spool_full", "1 while the spool refuses records.", lambda: int(self._refusing))
        m.gauge("txlibxl_amqp_in_flight", "Messages sent and not yet confirmed.", lambda: len(self._in_flight))
        m.gauge("txlibxl_amqp_connected", "1 while a broker connection is ready.", lambda: int(self._link.ready))
