"""
The sinks and what they are made of: the resume ring, JSON lines, the
HTTP resources (on ``twisted.web``'s in-memory requests), the metrics
text, and the reconnection backoff.
"""
from __future__ import annotations

import io
import json
from typing import Any, Dict, List

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from txlibxl.daemon.metrics import Metrics
from txlibxl.daemon.records import EventRecord, check_record
from txlibxl.daemon.recovery import Backoff
from txlibxl.daemon.sinks import IEventSink
from txlibxl.daemon.sinks.http import HTTPSink, format_event
from txlibxl.daemon.sinks.jsonl import JSONLinesSink
from txlibxl.daemon.sinks.ring import RecordRing

UUID = "0bd1d1a2-54c8-4d5e-8b7a-1f4f1c6e2a10"


def record(seq: int, kind: str = "death") -> EventRecord:
    return EventRecord(seq=seq, time=1700000000.0 + seq, type=kind, domid=seq, uuid=UUID, name=f"dom{seq}")


class RingTests(TestCase):
    def test_a_resume_gets_every_record_after_the_last_seen(self) -> None:
        ring = RecordRing(10)
        for seq in range(1, 6):
            ring.append(record(seq))
        newer, missed = ring.since(3)
        self.assertEqual(([r.seq for r in newer], missed), ([4, 5], 0))

    def test_the_ring_keeps_only_the_newest_records(self) -> None:
        ring = RecordRing(3)
        for seq in range(1, 6):
            ring.append(record(seq))
        self.assertEqual((len(ring), ring.first_seq, ring.last_seq), (3, 3, 5))

    def test_a_resume_from_before_the_ring_counts_what_was_missed(self) -> None:
        ring = RecordRing(3)
        for seq in range(1, 8):
            ring.append(record(seq))
        newer, missed = ring.since(2)
        self.assertEqual(([r.seq for r in newer], missed), ([5, 6, 7], 2))

    def test_an_id_from_the_future_gets_the_whole_ring(self) -> None:
        ring = RecordRing(3)
        for seq in range(1, 3):
            ring.append(record(seq))
        newer, missed = ring.since(99)
        self.assertEqual(([r.seq for r in newer], missed), ([1, 2], 0))

    def test_records_must_come_in_order(self) -> None:
        ring = RecordRing(3)
        ring.append(record(2))
        self.assertRaises(ValueError, ring.append, record(2))

    def test_capacity_must_be_positive(self) -> None:
        for bad in (0, -1, 1.5, True):
            self.assertRaises(ValueError, RecordRing, bad)


class JSONLinesTests(TestCase):
    def test_each_record_is_one_line_of_schema_json(self) -> None:
        out = io.StringIO()
        sink = JSONLinesSink(out, owns_stream=False)
        verifyObject(IEventSink, sink)
        sink.publish(record(1))
        sink.publish(record(2, "new"))
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        for line in lines:
            check_record(json.loads(line))
        self.assertEqual([json.loads(line)["seq"] for line in lines], [1, 2])

    def test_a_file_path_is_appended_to(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("earlier\n")
        sink = JSONLinesSink.to_path(path)
        sink.publish(record(1))
        sink.close()
        with open(path) as f:
            self.assertEqual(f.read().splitlines()[0], "earlier")

    def test_a_closed_pipe_ends_the_sink_once(self) -> None:
        import os

        from txlibxl.daemon.sinks import SinkClosed

        read, write = os.pipe()
        os.close(read)
        sink = JSONLinesSink(open(write, "wb", buffering=0), description="the pipe")
        e = self.assertRaises(SinkClosed, sink.publish, record(1))
        self.assertEqual(str(e), "the pipe was closed (Broken pipe)")
        self.assertTrue(sink.closed)
        sink.publish(record(2))  # nothing more, no error
        sink.close()

    def test_a_binary_stream_gets_utf8_lines(self) -> None:
        out = io.BytesIO()
        sink = JSONLinesSink(out, owns_stream=False)
        sink.publish(record(1))
        self.assertEqual(json.loads(out.getvalue().decode("utf-8"))["seq"], 1)

    def test_nothing_is_written_after_close(self) -> None:
        out = io.StringIO()
        sink = JSONLinesSink(out, owns_stream=False)
        sink.close()
        sink.publish(record(1))
        self.assertEqual(out.getvalue(), "")


class _Status:
    def __init__(self) -> None:
        self.healthy = True
        self.registry = CollectorRegistry()
        Gauge("txlibxl_up", "Up.", registry=self.registry).set(1)

    def domains(self) -> Dict[str, Any]:
        return {"domains": [{"domid": 1}]}

    def health(self) -> Dict[str, Any]:
        return {"healthy": self.healthy}



class StreamingRequest(DummyRequest):
    """A DummyRequest that keeps a push producer as a real request does (DummyRequest loops on it)."""

    producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


def get(sink: HTTPSink, path: bytes, headers: Dict[bytes, bytes] = {}, args: Dict[bytes, List[bytes]] = {}) -> Any:
    request = StreamingRequest(path.strip(b"/").split(b"/"))
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name, [value])
    request.args = dict(args)
    resource = sink.root.getChildWithDefault(request.postpath[0], request)
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    return request


def events_of(request: Any) -> List[Dict[str, str]]:
    text = b"".join(request.written).decode()
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":") and ": " in line)
        if "data" in fields:
            events.append(fields)
    return events


class HTTPSinkTests(TestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.status = _Status()
        self.sink = HTTPSink(self.clock, self.status, buffer=3, heartbeat=15)

    def test_the_sink_provides_the_interface(self) -> None:
        verifyObject(IEventSink, self.sink)

    def test_a_stream_gets_each_record_published_with_its_seq_as_id(self) -> None:
        request = get(self.sink, b"/events")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"text/event-stream; charset=utf-8"])
        self.sink.publish(record(1))
        self.sink.publish(record(2, "new"))
        self.assertEqual([(e["id"], e["event"]) for e in events_of(request)], [("1", "death"), ("2", "new")])
        self.assertEqual(json.loads(events_of(request)[0]["data"])["seq"], 1)

    def test_without_last_event_id_a_stream_starts_with_the_next_record(self) -> None:
        self.sink.publish(record(1))
        request = get(self.sink, b"/events")
        self.assertEqual(events_of(request), [])

    def test_last_event_id_replays_the_records_after_it(self) -> None:
        for seq in (1, 2, 3):
            self.sink.publish(record(seq))
        request = get(self.sink, b"/events", {b"last-event-id": b"1"})
        self.assertEqual([e["id"] for e in events_of(request)], ["2", "3"])

    def test_since_in_the_query_replays_like_last_event_id(self) -> None:
        for seq in (1, 2):
            self.sink.publish(record(seq))
        request = get(self.sink, b"/events", args={b"since": [b"0"]})
        self.assertEqual([e["id"] for e in events_of(request)], ["1", "2"])

    def test_a_resume_past_the_buffer_is_told_of_the_gap(self) -> None:
        for seq in range(1, 7):
            self.sink.publish(record(seq))
        request = get(self.sink, b"/events", {b"last-event-id": b"1"})
        events = events_of(request)
        self.assertEqual(events[0]["event"], "gap")
        self.assertEqual(json.loads(events[0]["data"]), {"missed": 2, "first_available": 4})
        self.assertEqual([e["id"] for e in events[1:]], ["4", "5", "6"])

    def test_a_bad_last_event_id_is_a_400(self) -> None:
        request = get(self.sink, b"/events", {b"last-event-id": b"soon"})
        self.assertEqual(request.responseCode, 400)
        self.assertEqual(
            json.loads(b"".join(request.written)),
            {"error": "the Last-Event-ID header must be a sequence number (an integer >= 0), not 'soon'"},
        )

    def test_a_negative_since_is_a_400_naming_the_parameter(self) -> None:
        request = get(self.sink, b"/events", args={b"since": [b"-5"]})
        self.assertEqual(request.responseCode, 400)
        self.assertIn("the since parameter", json.loads(b"".join(request.written))["error"])

    def test_head_answers_like_get_without_a_body(self) -> None:
        request = DummyRequest([b"healthz"])
        request.method = b"HEAD"
        resource = self.sink.root.getChildWithDefault(b"healthz", request)
        self.assertEqual(resource.render(request), b"")
        self.assertEqual(request.responseCode, 200)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-length"), [b"%d" % len(b'{"healthy": true}\n')])

    def test_streams_get_a_heartbeat_comment(self) -> None:
        request = get(self.sink, b"/events")
        before = len(request.written)
        self.clock.advance(15)
        self.assertEqual(request.written[before:], [b": keepalive\n\n"])

    def test_close_tells_each_stream_and_ends_it(self) -> None:
        request = get(self.sink, b"/events")
        self.sink.close()
        self.assertEqual([e["event"] for e in events_of(request)], ["shutdown"])
        self.assertEqual(request.finished, 1)
        self.assertEqual(self.sink.clients, 0)
        self.assertFalse(self.clock.getDelayedCalls())

    def test_a_stream_that_ends_is_forgotten(self) -> None:
        request = get(self.sink, b"/events")
        request.processingFailed(Exception("gone"))
        self.assertEqual(self.sink.clients, 0)

    def test_healthz_is_200_when_healthy_and_503_when_not(self) -> None:
        self.assertEqual(get(self.sink, b"/healthz").responseCode, 200)
        self.status.healthy = False
        self.assertEqual(get(self.sink, b"/healthz").responseCode, 503)

    def test_domains_is_the_status_snapshot_as_json(self) -> None:
        request = get(self.sink, b"/domains")
        self.assertEqual(json.loads(b"".join(request.written)), {"domains": [{"domid": 1}]})

    def test_metrics_is_prometheus_text(self) -> None:
        request = get(self.sink, b"/metrics")
        self.assertIn(b"txlibxl_up 1.0\n", b"".join(request.written))
        self.assertTrue(request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/plain; version=0.0.4"))

    def test_metrics_is_openmetrics_when_asked(self) -> None:
        request = get(self.sink, b"/metrics", {b"accept": b"application/openmetrics-text; version=1.0.0"})
        self.assertTrue(b"".join(request.written).endswith(b"# EOF\n"))

    def test_a_slow_client_gets_its_records_when_it_catches_up(self) -> None:
        request = get(self.sink, b"/events")
        client = request.producer
        client.pauseProducing()
        self.sink.publish(record(1))
        self.sink.publish(record(2))
        self.assertEqual((events_of(request), self.sink.queue_depth()), ([], 2))
        client.resumeProducing()
        self.assertEqual([e["id"] for e in events_of(request)], ["1", "2"])
        self.assertEqual(self.sink.queue_depth(), 0)

    def test_a_client_further_behind_than_the_buffer_is_dropped(self) -> None:
        request = get(self.sink, b"/events")
        request.producer.pauseProducing()
        for seq in range(1, 5):  # the ring holds 3
            self.sink.publish(record(seq))
        self.assertEqual((self.sink.clients, self.sink.queue_depth()), (0, 0))

    def test_format_event_is_one_sse_block(self) -> None:
        text = format_event(record(7)).decode()
        self.assertTrue(text.startswith("id: 7\nevent: death\ndata: {"))
        self.assertTrue(text.endswith("}\n\n"))


def samples(metrics: Metrics) -> Dict[Any, float]:
    """Every sample of the exposition, parsed: (name, labels) -> value."""
    found: Dict[Any, float] = {}
    for family in text_string_to_metric_families(metrics.render()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class MetricsTests(TestCase):
    def test_counters_render_with_their_labels(self) -> None:
        metrics = Metrics()
        metrics.count("txlibxl_events_total", "death")
        metrics.count("txlibxl_events_total", "death")
        metrics.count("txlibxl_disasters_total")
        found = samples(metrics)
        self.assertEqual(found[("txlibxl_events_total", (("type", "death"),))], 2)
        self.assertEqual(found[("txlibxl_disasters_total", ())], 1)
        self.assertEqual(metrics.value("txlibxl_events_total", "death"), 2)

    def test_gauges_are_read_at_render_time(self) -> None:
        metrics = Metrics()
        value = [1]
        metrics.gauge("txlibxl_watched_domains", "Domains.", lambda: value[0])
        metrics.labelled_gauge("txlibxl_sink_queue_depth", "Depth.", "sink", lambda: {"http": value[0] * 2})
        value[0] = 5
        found = samples(metrics)
        self.assertEqual(found[("txlibxl_watched_domains", ())], 5)
        self.assertEqual(found[("txlibxl_sink_queue_depth", (("sink", "http"),))], 10)

    def test_latency_is_a_histogram_by_type(self) -> None:
        metrics = Metrics()
        metrics.observe_latency("death", 0.0002)
        metrics.observe_latency("death", 0.3)
        found = samples(metrics)
        self.assertEqual(found[("txlibxl_event_latency_seconds_count", (("type", "death"),))], 2)
        self.assertEqual(found[("txlibxl_event_latency_seconds_bucket", (("le", "0.00025"), ("type", "death")))], 1)

    def test_label_values_are_escaped(self) -> None:
        metrics = Metrics()
        metrics.count("txlibxl_sink_errors_total", 'a"b')
        self.assertEqual(samples(metrics)[("txlibxl_sink_errors_total", (("sink", 'a"b'),))], 1)

    def test_each_service_has_a_registry_of_its_own(self) -> None:
        from prometheus_client import REGISTRY

        a, b = Metrics(), Metrics()
        a.count("txlibxl_disasters_total")
        self.assertEqual((a.value("txlibxl_disasters_total"), b.value("txlibxl_disasters_total")), (1, 0))
        self.assertIsNone(REGISTRY.get_sample_value("txlibxl_disasters_total"))

    def test_the_process_collector_is_there(self) -> None:
        self.assertIn("process_cpu_seconds_total", {name for name, _ in samples(Metrics())})


class BackoffTests(TestCase):
    def test_delays_grow_to_the_ceiling(self) -> None:
        backoff = Backoff(initial=0.1, factor=2, maximum=0.5)
        self.assertEqual([backoff.next_delay() for _ in range(5)], [0.1, 0.2, 0.4, 0.5, 0.5])

    def test_reset_starts_again_from_the_first_delay(self) -> None:
        backoff = Backoff(initial=0.1, factor=2, maximum=1)
        backoff.next_delay()
        backoff.next_delay()
        backoff.reset()
        self.assertEqual((backoff.next_delay(), backoff.attempts), (0.1, 1))

    def test_bad_parameters_are_refused(self) -> None:
        self.assertRaises(ValueError, Backoff, initial=0)
        self.assertRaises(ValueError, Backoff, initial=2, maximum=1)
        self.assertRaises(ValueError, Backoff, factor=0.5)
