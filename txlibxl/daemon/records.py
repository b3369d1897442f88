"""
The event records ``twistd libxl-events`` publishes, and their schema.

A record is what a sink receives and what goes on the wire: one JSON
object per event, the same in the JSON lines output and in the ``data:``
of the Server-Sent Events stream.  Its shape is versioned:
:data:`SCHEMA_VERSION` is in every record (``"schema"``), and
:data:`EVENT_SCHEMA` is the JSON Schema (draft 2020-12) that
``docs/plugin.rst`` documents.  A change that removes or redefines a field
bumps the version, and so does adding a field: the schema lists every
field as required and allows no other (``additionalProperties`` is
false), so a validator of the previous version rejects a record with one
more field.  A new ``type`` value would be rejected the same way.

Version 3 (this one) adds ``after`` to every record: for a ``death``, the
reason of the shutdown the service saw the domain in when it died
(``suspend`` for a domain saved or migrated away, ``crash``, ``poweroff``...),
``null`` if it saw none (a destroy); ``null`` for every other type.
Nothing else changed: a reader of version 2 reads version 3 by accepting
the version number and the one field.

Version 2 differed from version 1 in three ways: every record names its
``host``; a ``snapshot`` record lists the host's domains (``domains``),
and so has no single domain (``domid`` and ``uuid`` are ``null`` there).

:func:`check_record` checks a decoded object against the schema (the
rules of :data:`EVENT_SCHEMA`, without needing a JSON Schema library) and
raises :class:`SchemaViolation` saying what is wrong.
"""
from __future__ import annotations

import datetime
import json
import re
from typing import Any, Dict, Optional, Tuple

import attr

from txlibxl.events import DiskEject, DomainDeath, DomainShutdown

__all__ = [
    "SCHEMA_VERSION",
    "EVENT_TYPES",
    "DOMAIN_EVENT_TYPES",
    "DOMAIN_STATES",
    "SnapshotDomain",
    "SHUTDOWN_REASONS",
    "EVENT_SCHEMA",
    "EventRecord",
    "SchemaViolation",
    "check_record",
    "format_time",
]

#: The version of the record shape; in every record as ``"schema"``.
SCHEMA_VERSION = 3

#: ``type`` values of domain events: the service started watching a domain
#: (``new``), the domain shut down, died, or ejected a CD-ROM's medium.
DOMAIN_EVENT_TYPES = ("new", "shutdown", "death", "disk_eject")

#: Every ``type`` value: the domain events, and ``snapshot``, the host's
#: domains as the service found them (published when a sink asks for one,
#: e.g. the AMQP sink when it starts).
EVENT_TYPES = DOMAIN_EVENT_TYPES + ("snapshot",)

#: ``state`` values of a domain in a snapshot.
DOMAIN_STATES = ("running", "blocked", "paused", "shutdown", "dying")

#: ``reason`` values of a ``shutdown`` (libxl's ``libxl_shutdown_reason``).
SHUTDOWN_REASONS = ("unknown", "poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset")

_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"

_SNAPSHOT_DOMAIN: Dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["domid", "uuid", "name", "state", "shutdown_reason"],
    "properties": {
        "domid": {"type": "integer", "minimum": 0, "maximum": 32751},
        "uuid": {"type": "string", "pattern": _UUID},
        "name": {"type": ["string", "null"]},
        "state": {"enum": list(DOMAIN_STATES)},
        "shutdown_reason": {"enum": list(SHUTDOWN_REASONS) + [None]},
    },
}

#: The JSON Schema of a version-3 record.
EVENT_SCHEMA: Dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://txlibxl.invalid/schema/libxl-events/3",
    "title": "txlibxl libxl-events record, version 3",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema", "host", "seq", "time", "type", "domid", "uuid", "name", "reason", "vdev",
                 "reconciled", "domains", "after"],
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "host": {"type": "string", "minLength": 1},
        "seq": {"type": "integer", "minimum": 1},
        "time": {"type": "string", "pattern": _TIME},
        "type": {"enum": list(EVENT_TYPES)},
        "domid": {"type": ["integer", "null"], "minimum": 0, "maximum": 32751},
        "uuid": {"type": ["string", "null"], "pattern": _UUID},
        "name": {"type": ["string", "null"]},
        "reason": {"enum": list(SHUTDOWN_REASONS) + [None]},
        "vdev": {"type": ["string", "null"]},
        "reconciled": {"type": "boolean"},
        "domains": {"type": ["array", "null"], "items": _SNAPSHOT_DOMAIN},
        "after": {"enum": list(SHUTDOWN_REASONS) + [None]},
    },
    "allOf": [
        {"if": {"properties": {"type": {"const": "shutdown"}}}, "then": {"properties": {"reason": {"type": "string"}}}},
        {"if": {"properties": {"type": {"not": {"const": "shutdown"}}}}, "then": {"properties": {"reason": {"const": None}}}},
        {"if": {"properties": {"type": {"not": {"const": "death"}}}}, "then": {"properties": {"after": {"const": None}}}},
        {"if": {"properties": {"type": {"const": "disk_eject"}}}, "then": {"properties": {"vdev": {"type": "string"}}}},
        {"if": {"properties": {"type": {"not": {"const": "disk_eject"}}}}, "then": {"properties": {"vdev": {"const": None}}}},
        {
            "if": {"properties": {"type": {"const": "snapshot"}}},
            "then": {"properties": {"domid": {"const": None}, "uuid": {"const": None}, "name": {"const": None},
                                    "reconciled": {"const": False}, "domains": {"type": "array"}}},
            "else": {"properties": {"domid": {"type": "integer"}, "uuid": {"type": "string"},
                                    "domains": {"const": None}}},
        },
    ],
}


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SnapshotDomain:
    """One domain of a ``snapshot`` record: what ``list_domains`` said of it."""

    domid: int
    uuid: str
    name: Optional[str]
    state: str
    shutdown_reason: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        """The domain as its JSON object."""
        return {"domid": self.domid, "uuid": self.uuid, "name": self.name, "state": self.state,
                "shutdown_reason": self.shutdown_reason}


class SchemaViolation(ValueError):
    """A record does not follow :data:`EVENT_SCHEMA`; the message says how."""


def format_time(seconds: float) -> str:
    """RFC 3339 UTC with microseconds, as records carry it: ``2026-01-02T03:04:05.000006Z``."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class EventRecord:
    """
    One published event.  ``seq`` numbers records in the order they were
    published; the daemon never uses a number twice for a state directory
    (:mod:`txlibxl.daemon.sequence`), though it may skip some after a crash.  ``reconciled`` is true for what the service found by
    comparing the host with what it knew after a recovery (a domain that
    died, or appeared, while it was not watching) rather than saw happen.
    ``host`` names the host the service follows; ``domains`` is set for a
    ``snapshot`` only (whose ``domid`` and ``uuid`` are ``None``).
    ``after`` is set for a ``death`` only: the reason of the shutdown the
    service had published for the domain's last shut-down state when it
    died (``None``: it saw the domain die without a standing shutdown).
    """

    seq: int
    time: float
    type: str
    domid: Optional[int]
    uuid: Optional[str]
    name: Optional[str] = None
    reason: Optional[str] = None
    vdev: Optional[str] = None
    reconciled: bool = False
    host: str = "localhost"
    domains: Optional[Tuple[SnapshotDomain, ...]] = None
    after: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        """The record as its JSON object (schema :data:`SCHEMA_VERSION`)."""
        return {
            "schema": SCHEMA_VERSION,
            "host": self.host,
            "seq": self.seq,
            "time": format_time(self.time),
            "type": self.type,
            "domid": self.domid,
            "uuid": self.uuid,
            "name": self.name,
            "reason": self.reason,
            "vdev": self.vdev,
            "reconciled": self.reconciled,
            "domains": [d.as_dict() for d in self.domains] if self.domains is not None else None,
            "after": self.after,
        }

    def to_json(self) -> str:
        """The record as one line of JSON (no newline), keys sorted."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def kind_of(cls, event: Any) -> str:
        """The record ``type`` for a :mod:`txlibxl.events` value."""
        if isinstance(event, DomainShutdown):
            return "shutdown"
        if isinstance(event, DomainDeath):
            return "death"
        if isinstance(event, DiskEject):
            return "disk_eject"
        raise TypeError(f"no record type for {event!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_record(obj: Any) -> None:
    """
    Check a decoded record against :data:`EVENT_SCHEMA`.

    :raises SchemaViolation: the first rule it breaks.
    """
    if not isinstance(obj, dict):
        raise SchemaViolation(f"a record is a JSON object, not {type(obj).__name__}")
    required = EVENT_SCHEMA["required"]
    missing = [k for k in required if k not in obj]
    if missing:
        raise SchemaViolation(f"missing fields: {', '.join(missing)}")
    extra = sorted(set(obj) - set(required))
    if extra:
        raise SchemaViolation(f"unknown fields: {', '.join(extra)}")
    if obj["schema"] != SCHEMA_VERSION or not _is_int(obj["schema"]):
        raise SchemaViolation(f"schema must be {SCHEMA_VERSION}, not {obj['schema']!r}")
    if not isinstance(obj["host"], str) or not obj["host"]:
        raise SchemaViolation(f"host must be a non-empty string, not {obj['host']!r}")
    if not _is_int(obj["seq"]) or obj["seq"] < 1:
        raise SchemaViolation(f"seq must be an integer >= 1, not {obj['seq']!r}")
    if not isinstance(obj["time"], str) or not re.match(_TIME, obj["time"]):
        raise SchemaViolation(f"time must be RFC 3339 UTC with microseconds, not {obj['time']!r}")
    if obj["type"] not in EVENT_TYPES:
        raise SchemaViolation(f"type must be one of {EVENT_TYPES}, not {obj['type']!r}")
    if not isinstance(obj["reconciled"], bool):
        raise SchemaViolation(f"reconciled must be a boolean, not {obj['reconciled']!r}")
    if obj["type"] == "snapshot":
        _check_snapshot(obj)
    else:
        _check_domain_event(obj)


def _check_domain(obj: Any, what: str) -> None:
    if not _is_int(obj["domid"]) or not 0 <= obj["domid"] <= 32751:
        raise SchemaViolation(f"{what}domid must be an integer in 0..32751, not {obj['domid']!r}")
    if not isinstance(obj["uuid"], str) or not re.match(_UUID, obj["uuid"]):
        raise SchemaViolation(f"{what}uuid must be a lower-case UUID, not {obj['uuid']!r}")
    if obj["name"] is not None and not isinstance(obj["name"], str):
        raise SchemaViolation(f"{what}name must be a string or null, not {obj['name']!r}")


def _check_domain_event(obj: Dict[str, Any]) -> None:
    _check_domain(obj, "")
    if obj["domains"] is not None:
        raise SchemaViolation(f"domains is null except for a snapshot, not {obj['domains']!r}")
    if obj["type"] == "shutdown":
        if obj["reason"] not in SHUTDOWN_REASONS:
            raise SchemaViolation(f"a shutdown's reason must be one of {SHUTDOWN_REASONS}, not {obj['reason']!r}")
    elif obj["reason"] is not None:
        raise SchemaViolation(f"reason is null except for a shutdown, not {obj['reason']!r}")
    if obj["type"] == "death":
        if obj["after"] not in SHUTDOWN_REASONS + (None,):
            raise SchemaViolation(f"a death's after must be one of {SHUTDOWN_REASONS} or null, not {obj['after']!r}")
    elif obj["after"] is not None:
        raise SchemaViolation(f"after is null except for a death, not {obj['after']!r}")
    if obj["type"] == "disk_eject":
        if not isinstance(obj["vdev"], str) or not obj["vdev"]:
            raise SchemaViolation(f"a disk_eject's vdev must be a non-empty string, not {obj['vdev']!r}")
    elif obj["vdev"] is not None:
        raise SchemaViolation(f"vdev is null except for a disk_eject, not {obj['vdev']!r}")


def _check_snapshot(obj: Dict[str, Any]) -> None:
    for field in ("domid", "uuid", "name", "reason", "vdev", "after"):
        if obj[field] is not None:
            raise SchemaViolation(f"a snapshot's {field} is null, not {obj[field]!r}")
    if obj["reconciled"]:
        raise SchemaViolation("a snapshot is never reconciled")
    if not isinstance(obj["domains"], list):
        raise SchemaViolation(f"a snapshot's domains is a list, not {obj['domains']!r}")
    fields = set(_SNAPSHOT_DOMAIN["required"])
    for i, dom in enumerate(obj["domains"]):
        what = f"snapshot domain {i}: "
        if not isinstance(dom, dict) or set(dom) != fields:
            raise SchemaViolation(f"{what}an object with exactly {sorted(fields)}, not {dom!r}")
        _check_domain(dom, what)
        if dom["state"] not in DOMAIN_STATES:
            raise SchemaViolation(f"{what}state must be one of {DOMAIN_STATES}, not {dom['state']!r}")
        if dom["shutdown_reason"] not in SHUTDOWN_REASONS + (None,):
            raise SchemaViolation(f"{what}shutdown_reason must be one of {SHUTDOWN_REASONS} or null")
