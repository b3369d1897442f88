"""
What ``twistd libxl-events`` reports of a domain that leaves its host by
a save or a live migration, and of one that arrives by a restore or a
migration: the service runs in this process against the simulated host
that the test's own Context saves, restores and migrates through (the
real libxenlight and Debian's save helper), and a peer process is the
other host.  The source reports the suspend (a ``shutdown`` with reason
``suspend``) and the departure (a ``death`` with ``after: "suspend"``),
which a destroy (``after: null``) and a crash (``after: "crash"``) are
told apart from; the arrival is a ``new`` with the domain's uuid.
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

from twisted.internet import defer, reactor
from zope.interface import implementer

from txlibxl.daemon.records import EventRecord, check_record
from txlibxl.daemon.service import LibxlEventsService
from txlibxl.daemon.sinks import IEventSink
from txlibxl.migration import listen_for_migrations

from tests.core.test_migration_on_sim import MigrationTestCase
from tests.core.test_moving_on_sim import MovingTestCase

#: What a test compares of a record: its type, domid, reason and after.
Seen = Tuple[str, Optional[int], Optional[str], Optional[str]]


@implementer(IEventSink)
class _Collected:
    """Every record published, each checked against the schema."""

    name = "collected"

    def __init__(self) -> None:
        self.records: List[EventRecord] = []

    def publish(self, record: EventRecord) -> None:
        check_record(record.as_dict())
        self.records.append(record)

    def close(self) -> None:
        pass


class _Following:
    """A :class:`LibxlEventsService` on the test's host, started in setUp."""

    until: Any

    @defer.inlineCallbacks
    def follow(self) -> Any:
        self.sink = _Collected()
        self.events = LibxlEventsService(reactor, [self.sink], rescan_interval=1, host_name="source")
        self.events.startService()
        self.addCleanup(self.events.stopService)  # type: ignore[attr-defined]
        yield self.events.when_running()

    def of(self, uuid: str) -> List[Seen]:
        """The records of the domains with C{uuid}, in order."""
        return [(r.type, r.domid, r.reason, r.after) for r in self.sink.records if r.uuid == uuid]

    def until_seen(self, uuid: str, count: int) -> Any:
        return self.until(lambda: len(self.of(uuid)) >= count, 20)


class SavedDomainTests(_Following, MovingTestCase):
    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        yield self.follow()

    @defer.inlineCallbacks
    def test_a_saved_domain_is_suspended_then_departs_and_its_restore_is_new(self) -> Any:
        domid, config = yield self.guest(image_kb=8192)
        uuid = config["c_info"]["uuid"]
        yield self.until_seen(uuid, 1)
        yield self.ctx.save(domid, os.path.join(self.files, "saved"))
        yield self.until_seen(uuid, 3)
        self.assertEqual(self.of(uuid), [("new", domid, None, None), ("shutdown", domid, "suspend", None),
                                         ("death", domid, None, "suspend")])
        restored = yield self.ctx.restore(config, os.path.join(self.files, "saved"))
        yield self.until_seen(uuid, 4)
        self.assertEqual(self.of(uuid)[3], ("new", restored, None, None))
        self.assertFalse(self.sink.records[-1].reconciled)

    @defer.inlineCallbacks
    def test_a_destroyed_domain_dies_after_nothing_and_a_crashed_one_after_its_crash(self) -> Any:
        destroyed, config = yield self.guest()
        yield self.until_seen(config["c_info"]["uuid"], 1)
        yield self.ctx.destroy(destroyed)
        yield self.until_seen(config["c_info"]["uuid"], 2)
        self.assertEqual(self.of(config["c_info"]["uuid"]), [("new", destroyed, None, None),
                                                             ("death", destroyed, None, None)])
        crashed, config = yield self.guest()
        uuid = config["c_info"]["uuid"]
        yield self.until_seen(uuid, 1)
        yield self.host.control.crash(crashed)
        yield self.until_seen(uuid, 2)
        yield self.ctx.destroy(crashed)
        yield self.until_seen(uuid, 3)
        self.assertEqual(self.of(uuid), [("new", crashed, None, None), ("shutdown", crashed, "crash", None),
                                         ("death", crashed, None, "crash")])

    @defer.inlineCallbacks
    def test_a_domain_resumed_after_a_suspend_no_longer_dies_after_it(self) -> Any:
        domid, config = yield self.guest()
        uuid = config["c_info"]["uuid"]
        yield self.until_seen(uuid, 1)
        yield self.ctx.save(domid, os.path.join(self.files, "checkpoint"), then="resume")
        yield self.until_seen(uuid, 2)
        self.assertEqual(self.of(uuid)[1], ("shutdown", domid, "suspend", None))
        yield self.until(lambda: self.state(domid) == "running")
        # The next scan (at most rescan_interval away) sees it running again.
        yield self.until(lambda: self._scanned_running(domid), 10)
        yield self.ctx.destroy(domid)
        yield self.until_seen(uuid, 3)
        self.assertEqual(self.of(uuid)[2], ("death", domid, None, None))

    def _scanned_running(self, domid: int) -> bool:
        dom = next((d for d in self.events.tracked.values() if d.domid == domid), None)
        return dom is not None and dom.shutdown_reported is None


class MigratedDomainTests(_Following, MigrationTestCase):
    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        yield self.follow()

    @defer.inlineCallbacks
    def test_the_source_reports_the_suspend_and_the_departure_and_the_return_is_new(self) -> Any:
        domid, config = yield self.guest("travels", image_kb=4096)
        uuid = config["c_info"]["uuid"]
        yield self.until_seen(uuid, 1)
        there = yield self.ctx.migrate(domid, f"unix:path={self.peer_socket}")
        yield self.until_seen(uuid, 3)
        self.assertEqual(self.of(uuid), [("new", domid, None, None), ("shutdown", domid, "suspend", None),
                                         ("death", domid, None, "suspend")])
        # Back to this host: the arrival is new, with the same uuid.
        here = os.path.join(self.sockets, "a.sock")
        listener = yield listen_for_migrations(self.ctx, unix=here)
        self.addCleanup(listener.stop)
        reply = yield self.peer.call("migrate", domid=there, endpoint=f"unix:path={here}")
        self.assertEqual(reply.get("ok"), "migrated", reply)
        yield self.until_seen(uuid, 4)
        self.assertEqual(self.of(uuid)[3], ("new", reply["domid"], None, None))
        yield self.ctx.destroy(reply["domid"])
        yield self.until_seen(uuid, 5)
        self.assertEqual(self.of(uuid)[4], ("death", reply["domid"], None, None))
