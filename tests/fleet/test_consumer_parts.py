"""
The consumer's parts: its checkpoint, its output, the fleet state and the
page's endpoints.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.test.requesthelper import DummyRequest

from txlibxl.fleet.checkpoint import Checkpoint, CheckpointError
from txlibxl.fleet.output import LinesOutput
from txlibxl.fleet.reader import parse_start
from txlibxl.fleet.state import FleetState
from txlibxl.fleet.web import FleetSite

U1 = "0bd1d1a2-54c8-4d5e-8b7a-1f4f1c6e2a10"
U2 = "1bd1d1a2-54c8-4d5e-8b7a-1f4f1c6e2a10"


def rec(seq: int, kind: str, uuid: Any = U1, **more: Any) -> Dict[str, Any]:
    base = {"host": "xen1", "seq": seq, "time": "t", "type": kind, "domid": 1, "uuid": uuid, "name": "web1",
            "reason": None, "vdev": None, "domains": None}
    base.update(more)
    return base


class CheckpointTests(TestCase):
    def test_a_checkpoint_round_trips_and_is_private(self) -> None:
        d = self.mktemp()
        Checkpoint("s", 41, 1000, {"xen1": {"last": 7}}).save(d)
        self.assertEqual(Checkpoint.load(d, "s"), Checkpoint("s", 41, 1000, {"xen1": {"last": 7}}))
        self.assertEqual(os.stat(Checkpoint.path_in(d)).st_mode & 0o077, 0)
        self.assertFalse(os.path.exists(Checkpoint.path_in(d) + ".tmp"))

    def test_no_checkpoint_is_none_and_a_bad_one_says_why(self) -> None:
        d = self.mktemp()
        self.assertIsNone(Checkpoint.load(d, "s"))
        Checkpoint("other", 1).save(d)
        self.assertRaises(CheckpointError, Checkpoint.load, d, "s")
        with open(Checkpoint.path_in(d), "w") as f:
            f.write("{")
        self.assertRaises(CheckpointError, Checkpoint.load, d, "s")


class OutputTests(TestCase):
    def test_resume_cuts_the_file_back_to_the_checkpoint(self) -> None:
        path = self.mktemp()
        out = LinesOutput(path)
        out.write(b'{"a":1}')
        size = out.size()
        out.write(b'{"a":2}')
        out.close()
        again = LinesOutput(path)
        self.assertEqual(again.resume(size), len(b'{"a":2}\n'))
        again.write(b'{"a":2}')
        again.close()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b'{"a":1}\n{"a":2}\n')


class StartTests(TestCase):
    def test_starts_as_written_on_the_command_line(self) -> None:
        self.assertEqual(parse_start("first"), "first")
        self.assertEqual(parse_start("42"), 42)
        self.assertEqual(parse_start("10m"), "10m")
        self.assertEqual(parse_start("2026-01-02T03:04:05Z").year, 2026)
        self.assertRaises(ValueError, parse_start, "yesterday")


class StateTests(TestCase):
    def test_records_move_domains_through_their_states(self) -> None:
        state = FleetState()
        state.apply(rec(1, "new"))
        state.apply(rec(2, "new", U2, domid=2, name="db1"))
        state.apply(rec(3, "shutdown", reason="crash"))
        host = state.view()["hosts"][0]
        self.assertEqual([(d["name"], d["state"], d["reason"]) for d in host["domains"]],
                         [("web1", "shutdown", "crash"), ("db1", "running", None)])
        state.apply(rec(4, "death"))
        self.assertEqual([d["name"] for d in state.view()["hosts"][0]["domains"]], ["db1"])
        self.assertEqual([e["seq"] for e in state.view()["events"]], [1, 2, 3, 4])

    def test_a_snapshot_replaces_the_hosts_domains(self) -> None:
        state = FleetState()
        state.apply(rec(1, "new"))
        state.apply(rec(2, "snapshot", None, domid=None, name=None, domains=[
            {"domid": 5, "uuid": U2, "name": "db1", "state": "paused", "shutdown_reason": None}]))
        self.assertEqual([(d["domid"], d["state"]) for d in state.view()["hosts"][0]["domains"]], [(5, "paused")])

    def test_listeners_hear_of_changed_hosts_once_per_flush(self) -> None:
        state = FleetState()
        heard: List[Any] = []
        state.listen(lambda hosts, events: heard.append(([h["host"] for h in hosts], len(events))))
        for seq in range(1, 4):
            state.apply(rec(seq, "new", domid=seq))
        state.flush()
        state.flush()
        self.assertEqual(heard, [(["xen1"], 3)])


class SiteTests(TestCase):
    def render(self, site: FleetSite, path: bytes) -> DummyRequest:
        request = DummyRequest([path])
        request.method = b"GET"
        resource = site.resource.getChildWithDefault(path, request)
        body = resource.render(request)
        if isinstance(body, bytes):
            request.write(body)
        return request

    def test_the_page_is_self_contained_html(self) -> None:
        site = FleetSite(Clock(), FleetState())
        page = b"".join(self.render(site, b"").written)
        self.assertIn(b"EventSource", page)
        self.assertNotIn(b"http://", page)
        self.assertNotIn(b"https://", page)

    def test_state_is_the_view_as_json(self) -> None:
        state = FleetState()
        state.apply(rec(1, "new"))
        body = b"".join(self.render(FleetSite(Clock(), state), b"state").written)
        self.assertEqual(json.loads(body)["hosts"][0]["host"], "xen1")

    def test_events_start_with_the_state_then_send_updates(self) -> None:
        clock = Clock()
        state = FleetState()
        site = FleetSite(clock, state)
        site.start()
        request = self.render(site, b"events")
        self.assertTrue(request.written[0].startswith(b"event: state\n"))
        state.apply(rec(1, "new"))
        clock.advance(0.3)
        self.assertTrue(request.written[-1].startswith(b"event: update\n"))
        update = json.loads(request.written[-1].split(b"data: ", 1)[1])
        self.assertEqual(update["hosts"][0]["domains"][0]["name"], "web1")
        site.stop()
