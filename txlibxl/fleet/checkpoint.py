"""
Where the consumer is, stored durably and atomically: :class:`Checkpoint`.

One JSON file, ``<state dir>/checkpoint.json``::

    {"version": 1, "stream": "txlibxl.events", "offset": 1234,
     "output_bytes": 567890, "chains": {"xen1": {"last": 88, ...}}}

``offset`` is the last stream offset whose message the consumer is done
with (delivered, or dropped as a repeat): a restart reads from the next
one.  ``chains`` are the per-host positions of
:class:`~txlibxl.fleet.dedup.Chains`, so that the repeats after the
offset are still dropped.  ``output_bytes`` is how long the output file
was when the checkpoint was taken: a restart cuts the file back to it and
writes the records after it again, so the file holds each record once
whenever the consumer stopped.

Saving writes a temporary file, ``fsync``\\ s it, renames it over the old
one and ``fsync``\\ s the directory: a crash leaves the old checkpoint or
the new one, never a mix.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

import attr

__all__ = ["Checkpoint", "CheckpointError"]

VERSION = 1


class CheckpointError(Exception):
    """The checkpoint file exists but cannot be used; the message says why."""


@attr.s(slots=True, auto_attribs=True)
class Checkpoint:
    """A stored position (see the module docstring)."""

    stream: str
    offset: Optional[int] = None
    output_bytes: Optional[int] = None
    chains: Dict[str, Any] = attr.ib(factory=dict)

    @staticmethod
    def path_in(directory: str) -> str:
        return os.path.join(directory, "checkpoint.json")

    @classmethod
    def load(cls, directory: str, stream: str) -> Optional["Checkpoint"]:
        """
        The checkpoint stored in C{directory}, or ``None`` if there is none.

        :raises CheckpointError: unreadable, of another version, or of
            another stream.
        """
        path = cls.path_in(directory)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read {path}: {e}") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise CheckpointError(f"{path} is not a version {VERSION} checkpoint")
        if data.get("stream") != stream:
            raise CheckpointError(f"{path} is for stream {data.get('stream')!r}, not {stream!r} (use another --state-dir)")
        offset, size, chains = data.get("offset"), data.get("output_bytes"), data.get("chains", {})
        for name, value in (("offset", offset), ("output_bytes", size)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise CheckpointError(f"{path}: {name} must be a non-negative integer, not {value!r}")
        if not isinstance(chains, dict):
            raise CheckpointError(f"{path}: chains must be an object")
        return cls(stream, offset, size, chains)

    def save(self, directory: str) -> None:
        """Store it in C{directory} (created, mode 0700, if needed), atomically and durably."""
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = self.path_in(directory)
        temporary = path + ".tmp"
        data = json.dumps({"version": VERSION, "stream": self.stream, "offset": self.offset,
                           "output_bytes": self.output_bytes, "chains": self.chains}, sort_keys=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
