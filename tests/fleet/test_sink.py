"""
The AMQP sink against a fake channel: the window, confirms, resends in
order after a loss or a nack, and the full-spool policy.
"""
from __future__ import annotations

import os
from typing import Any, List

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from txlibxl.amqp.topology import StreamTopology
from txlibxl.amqp.url import BrokerAddress, parse_broker_url
from txlibxl.daemon.records import EventRecord
from txlibxl.daemon.sinks import IEventSink
from txlibxl.daemon.sinks.amqp import AMQPSink
from txlibxl.daemon.sinks.spool import Spool

UUID = "0bd1d1a2-54c8-4d5e-8b7a-1f4f1c6e2a10"


class FakeChannel:
    def __init__(self) -> None:
        self.sent: List[Any] = []

    def exchange_declare(self, **kw: Any) -> defer.Deferred:
        return defer.succeed(None)

    queue_declare = queue_bind = exchange_declare

    def confirm_delivery(self) -> defer.Deferred:
        return defer.succeed(None)

    def basic_publish(self, exchange: str, key: str, body: bytes, properties: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.sent.append((properties.headers["txlibxl-seq"], key, properties, d))
        return d

    def seqs(self) -> List[int]:
        return [s for s, *_ in self.sent]


class FakeLink:
    def __init__(self, reactor: Any, url: Any, on_ready: Any, on_lost: Any, **kw: Any) -> None:
        self.on_ready, self.on_lost = on_ready, on_lost
        self.node = None
        self.ready = False
        self.dropped: List[str] = []

    def start(self) -> None:
        pass

    def connect(self) -> FakeChannel:
        channel = FakeChannel()
        defer.ensureDeferred(self.on_ready(channel, BrokerAddress("127.0.0.1")))
        self.ready = True
        return channel

    def lose(self) -> None:
        self.ready = False
        self.on_lost("gone")

    def drop(self, why: str) -> None:
        self.dropped.append(why)

    def stop(self) -> defer.Deferred:
        return defer.succeed(None)


def record(seq: int, kind: str = "death") -> EventRecord:
    return EventRecord(seq=seq, time=1.0, type=kind, domid=1, uuid=UUID, host="xen1")


class SinkTests(TestCase):
    def make(self, capacity: int = 100, window: int = 3) -> AMQPSink:
        self.clock = Clock()
        self.dir = os.path.join(self.mktemp(), "spool")
        self.resyncs = 0

        def resync() -> None:
            self.resyncs += 1

        sink = AMQPSink(self.clock, parse_broker_url("amqp://h"), Spool(self.dir, capacity), StreamTopology(),
                        window=window, resync=resync, link_factory=FakeLink)
        self.link: FakeLink = sink._link  # type: ignore[assignment]
        return sink

    def test_the_sink_provides_the_interface(self) -> None:
        self.assertTrue(IEventSink.providedBy(self.make()))

    def test_messages_say_who_they_are(self) -> None:
        sink = self.make()
        channel = self.link.connect()
        sink.publish(record(1, "new"))
        sink.publish(record(2))
        _, key, props, _ = channel.sent[1]
        self.assertEqual(key, f"xen.xen1.{UUID}.death")
        self.assertEqual(props.message_id, "xen1:2")
        self.assertEqual(props.delivery_mode, 2)
        self.assertEqual(props.headers, {"txlibxl-host": "xen1", "txlibxl-seq": 2, "txlibxl-prev-seq": 1,
                                         "txlibxl-refused": 0})

    def test_at_most_window_messages_are_unconfirmed(self) -> None:
        sink = self.make(window=3)
        channel = self.link.connect()
        for seq in range(1, 8):
            sink.publish(record(seq))
        self.assertEqual(channel.seqs(), [1, 2, 3])
        channel.sent[0][3].callback(None)
        self.assertEqual(channel.seqs(), [1, 2, 3, 4])
        self.assertEqual(len(sink.spool), 6)

    def test_an_entry_leaves_the_spool_only_on_its_confirm(self) -> None:
        sink = self.make()
        channel = self.link.connect()
        sink.publish(record(1))
        self.assertEqual(len(Spool(self.dir)), 1)
        channel.sent[0][3].callback(None)
        sink.spool.sync()
        self.assertEqual(len(Spool(self.dir)), 0)

    def test_records_published_while_disconnected_wait_in_the_spool(self) -> None:
        sink = self.make()
        for seq in (1, 2):
            sink.publish(record(seq))
        channel = self.link.connect()
        self.assertEqual(channel.seqs(), [1, 2])

    def test_after_a_loss_everything_unconfirmed_is_sent_again_oldest_first(self) -> None:
        sink = self.make(window=10)
        first = self.link.connect()
        for seq in range(1, 5):
            sink.publish(record(seq))
        first.sent[1][3].callback(None)  # 2 confirmed, out of order
        self.link.lose()
        for _, _, _, d in first.sent:
            if not d.called:
                d.errback(ConnectionError("lost"))
        sink.publish(record(5))
        second = self.link.connect()
        self.assertEqual(second.seqs(), [1, 3, 4, 5])

    def test_a_nack_starts_over_on_a_new_connection(self) -> None:
        from pika.exceptions import NackError

        sink = self.make(window=10)
        channel = self.link.connect()
        for seq in (1, 2, 3):
            sink.publish(record(seq))
        channel.sent[0][3].errback(NackError([]))
        self.assertEqual(len(self.link.dropped), 1)
        channel.sent[1][3].callback(None)  # a late confirm on the old channel still counts
        again = self.link.connect()
        self.assertEqual(again.seqs(), [1, 3])

    def test_a_full_spool_refuses_then_counts_and_asks_for_a_snapshot(self) -> None:
        sink = self.make(capacity=10, window=10)
        start = self.resyncs
        channel = self.link.connect()
        for seq in range(1, 14):
            sink.publish(record(seq))
        self.assertEqual(len(sink.spool), 10)
        self.assertEqual(sink.metrics.value("txlibxl_amqp_refused_total"), 3)
        self.assertIn("txlibxl_amqp_spool_full 1", sink.metrics.render())
        for _, _, _, d in channel.sent[:2]:
            d.callback(None)
        self.assertEqual(self.resyncs, start + 1)
        sink.publish(record(14, "snapshot"))
        headers = channel.sent[-1][2].headers
        self.assertEqual((headers["txlibxl-seq"], headers["txlibxl-prev-seq"], headers["txlibxl-refused"]), (14, 10, 3))
        self.assertIn("txlibxl_amqp_spool_full 0", sink.metrics.render())

    def test_a_restart_sends_the_spool_again(self) -> None:
        sink = self.make()
        for seq in (1, 2):
            sink.publish(record(seq))
        # kill -9: no close; a new sink on the same directory.
        again = AMQPSink(Clock(), parse_broker_url("amqp://h"), Spool(self.dir), StreamTopology(), link_factory=FakeLink)
        channel = again._link.connect()  # type: ignore[attr-defined]
        again.publish(record(3))
        self.assertEqual(channel.seqs(), [1, 2, 3])
        self.assertEqual(channel.sent[2][2].headers["txlibxl-prev-seq"], 2)
