"""
The published record: its fields, its JSON, and the schema check that
consumers (and the end-to-end tests) rely on.
"""
from __future__ import annotations

import json
from typing import Any, Dict

from twisted.trial.unittest import TestCase

from txlibxl.events import DiskEject, Disk, DomainDeath, DomainShutdown, ShutdownReason
from txlibxl.daemon.records import (
    EVENT_SCHEMA,
    SCHEMA_VERSION,
    EventRecord,
    SchemaViolation,
    SnapshotDomain,
    check_record,
    format_time,
)

UUID = "0bd1d1a2-54c8-4d5e-8b7a-1f4f1c6e2a10"


def record(**fields: Any) -> EventRecord:
    base: Dict[str, Any] = dict(seq=1, time=1700000000.25, type="death", domid=3, uuid=UUID, name="web1", host="xen1")
    base.update(fields)
    return EventRecord(**base)


class RecordTests(TestCase):
    def test_every_record_carries_the_schema_version(self) -> None:
        self.assertEqual(record().as_dict()["schema"], SCHEMA_VERSION)

    def test_the_json_has_exactly_the_schema_fields(self) -> None:
        self.assertEqual(set(json.loads(record().to_json())), set(EVENT_SCHEMA["required"]))
        self.assertEqual(set(EVENT_SCHEMA["properties"]), set(EVENT_SCHEMA["required"]))

    def test_time_is_rfc3339_utc_with_microseconds(self) -> None:
        self.assertEqual(format_time(1700000000.25), "2023-11-14T22:13:20.250000Z")

    def test_published_records_pass_the_check(self) -> None:
        for r in (
            record(),
            record(type="new", reconciled=True),
            record(type="shutdown", reason="crash"),
            record(type="disk_eject", vdev="hdc"),
            record(name=None),
            record(after="suspend"),
            record(after="crash"),
        ):
            check_record(json.loads(r.to_json()))

    def test_every_record_names_its_host(self) -> None:
        self.assertEqual(record().as_dict()["host"], "xen1")
        self.assertIsNone(record().as_dict()["domains"])

    def test_a_snapshot_lists_domains_and_names_no_single_domain(self) -> None:
        snap = record(type="snapshot", domid=None, uuid=None, name=None,
                      domains=(SnapshotDomain(3, UUID, "web1", "running"),
                               SnapshotDomain(4, UUID, None, "shutdown", "crash")))
        obj = json.loads(snap.to_json())
        check_record(obj)
        self.assertEqual(obj["domains"][1], {"domid": 4, "uuid": UUID, "name": None, "state": "shutdown",
                                             "shutdown_reason": "crash"})

    def test_record_types_follow_the_libxl_events(self) -> None:
        self.assertEqual(EventRecord.kind_of(DomainShutdown(1, UUID, ShutdownReason.CRASH)), "shutdown")
        self.assertEqual(EventRecord.kind_of(DomainDeath(1, UUID)), "death")
        self.assertEqual(EventRecord.kind_of(DiskEject(1, UUID, "hdc", Disk("hdc"))), "disk_eject")
        self.assertRaises(TypeError, EventRecord.kind_of, object())


class SchemaCheckTests(TestCase):
    def good(self) -> Dict[str, Any]:
        return json.loads(record(type="shutdown", reason="poweroff").to_json())

    def assertViolation(self, change: Dict[str, Any], remove: str = "") -> None:
        obj = self.good()
        obj.update(change)
        if remove:
            del obj[remove]
        self.assertRaises(SchemaViolation, check_record, obj)

    def test_a_missing_field_is_a_violation(self) -> None:
        self.assertViolation({}, remove="uuid")

    def test_an_unknown_field_is_a_violation(self) -> None:
        self.assertViolation({"extra": 1})

    def test_another_schema_version_is_a_violation(self) -> None:
        self.assertViolation({"schema": 1})

    def test_seq_starts_at_one(self) -> None:
        self.assertViolation({"seq": 0})

    def test_a_boolean_is_not_a_number(self) -> None:
        self.assertViolation({"domid": True})

    def test_an_unknown_type_is_a_violation(self) -> None:
        self.assertViolation({"type": "reboot"})

    def test_a_shutdown_needs_a_known_reason(self) -> None:
        self.assertViolation({"reason": None})
        self.assertViolation({"reason": "tired"})

    def test_only_a_shutdown_has_a_reason(self) -> None:
        self.assertViolation({"type": "death"})

    def test_only_a_death_says_what_it_came_after(self) -> None:
        self.assertViolation({"after": "suspend"})
        self.assertViolation({"type": "death", "reason": None, "after": "tired"})
        self.assertViolation({"type": "new", "reason": None, "after": "suspend"})
        check_record({**self.good(), "type": "death", "reason": None, "after": "suspend"})
        check_record({**self.good(), "type": "death", "reason": None, "after": None})

    def test_a_version_2_record_is_a_violation(self) -> None:
        obj = self.good()
        del obj["after"]
        obj["schema"] = 2
        self.assertRaises(SchemaViolation, check_record, obj)

    def test_a_disk_eject_needs_its_vdev_and_only_it_has_one(self) -> None:
        self.assertViolation({"type": "disk_eject", "reason": None, "vdev": None})
        self.assertViolation({"vdev": "hdc"})

    def test_uuid_and_time_have_their_formats(self) -> None:
        self.assertViolation({"uuid": "not-a-uuid"})
        self.assertViolation({"time": "yesterday"})

    def test_a_record_needs_a_host(self) -> None:
        self.assertViolation({"host": ""})
        self.assertViolation({}, remove="host")

    def test_only_a_snapshot_has_domains_and_it_has_no_domid(self) -> None:
        self.assertViolation({"domains": []})
        snapshot = {"type": "snapshot", "reason": None, "domid": None, "uuid": None, "name": None, "domains": []}
        check_record({**self.good(), **snapshot})
        self.assertRaises(SchemaViolation, check_record, {**self.good(), **snapshot, "after": "suspend"})
        self.assertRaises(SchemaViolation, check_record, {**self.good(), **snapshot, "domid": 3})
        self.assertRaises(SchemaViolation, check_record, {**self.good(), **snapshot, "domains": None})
        self.assertRaises(SchemaViolation, check_record, {**self.good(), **snapshot, "domains": [{"domid": 1}]})

    def test_a_non_object_is_a_violation(self) -> None:
        self.assertRaises(SchemaViolation, check_record, [])


class DocumentedSchemaTests(TestCase):
    def test_the_schema_in_the_docs_is_the_one_in_the_code(self) -> None:
        import os

        path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "event-schema-v3.json")
        if not os.path.exists(path):
            self.skipTest(f"no docs in this installation ({path})")
        with open(path) as f:
            self.assertEqual(json.load(f), json.loads(json.dumps(EVENT_SCHEMA)))
