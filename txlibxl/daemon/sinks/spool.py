"""
The AMQP sink's on-disk spool: records not yet confirmed by the broker,
:class:`Spool`.

An entry is written (appended to a segment file, with one ``write``) before
it is sent, and leaves the spool only when :meth:`Spool.ack` says the
broker confirmed it.  Everything still in the spool when the process ends,
cleanly or by ``kill -9``, is there when it starts again, in the same
order, to be sent again.

Entries form a chain: each names the ``seq`` of the entry before it
(``prev``, 0 for the first entry the spool ever held), across restarts, so
a reader can tell a record it has not seen yet from one that never went
into the spool.

On disk, in the spool's directory (mode 0700, files 0600):

``segment-<first seq>``
    One line per entry, ``<seq> <prev> <refused> <host> <type> <routing key> <body>``;
    a new segment is started every ``segment_entries`` entries and on each
    start.  A torn last line (a crash in the middle of a write) is cut off
    when the spool is opened.
``acked``
    ``<seq>``: every entry up to it is confirmed.  Written (atomically,
    by rename) by :meth:`Spool.sync`, which the sink calls a few times a
    second, and before a fully confirmed segment is deleted.  Confirmed
    entries after the mark are sent again after a crash: duplicates that
    consumers drop by ``message_id``.

Durability: entries reach the kernel at once (they survive the process),
and :meth:`Spool.sync` also ``fsync``\\ s the open segment, so a power loss
loses at most what was appended since the last sync.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Iterator, List, Optional

import attr
from twisted.logger import Logger

__all__ = ["Spool", "SpoolEntry", "SpoolFull"]

_log = Logger(namespace="txlibxl.daemon.sinks.spool")


class SpoolFull(Exception):
    """The spool holds ``capacity`` entries: no more until some are confirmed."""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SpoolEntry:
    """
    One message waiting for its confirm.  ``refused``: how many records
    the sink refused (the spool being full) between ``prev`` and this one.
    """

    seq: int
    prev: int
    refused: int
    host: str
    type: str
    routing_key: str
    body: bytes

    def line(self) -> bytes:
        head = f"{self.seq} {self.prev} {self.refused} {self.host} {self.type} {self.routing_key} "
        return head.encode("utf-8") + self.body + b"\n"

    @classmethod
    def parse(cls, line: bytes) -> "SpoolEntry":
        """:raises ValueError: not a line :meth:`line` wrote."""
        parts = line.rstrip(b"\n").split(b" ", 6)
        if len(parts) != 7:
            raise ValueError("a spool line has seven fields")
        seq, prev, refused = (int(p) for p in parts[:3])
        host, kind, key = (p.decode("utf-8") for p in parts[3:6])
        return cls(seq, prev, refused, host, kind, key, parts[6])


@attr.s(slots=True, auto_attribs=True)
class _Segment:
    first: int
    path: str
    last: int = 0
    fd: Optional[int] = None
    entries: int = 0


def _for_field(text: str, what: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"a spooled {what} has no spaces and is not empty: {text!r}")
    return text


class Spool:
    """
    A durable queue of at most C{capacity} unconfirmed entries in
    C{directory} (created if needed).

    :raises ValueError: C{capacity} or C{segment_entries} not positive.
    :raises OSError: the directory cannot be created or read.
    """

    def __init__(self, directory: str, capacity: int = 100_000, segment_entries: int = 10_000) -> None:
        if capacity < 1 or segment_entries < 1:
            raise ValueError("the spool's capacity and segment size must be positive")
        self.directory = directory
        self.capacity = capacity
        self._segment_entries = segment_entries
        self._entries: "OrderedDict[int, SpoolEntry]" = OrderedDict()
        self._segments: List[_Segment] = []
        self._acked = 0
        self._acked_written = 0
        self._dirty = False
        #: The seq of the last entry ever appended (0 if none): the next one's ``prev``.
        self.last_seq = 0
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._load()

    # -- reading -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def full(self) -> bool:
        return len(self._entries) >= self.capacity

    @property
    def acked_mark(self) -> int:
        """Every entry up to this seq is confirmed."""
        return self._acked

    def pending(self) -> List[SpoolEntry]:
        """The unconfirmed entries, oldest first."""
        return list(self._entries.values())

    def __iter__(self) -> Iterator[SpoolEntry]:
        return iter(list(self._entries.values()))

    # -- writing -------------------------------------------------------------

    def append(self, seq: int, host: str, kind: str, routing_key: str, body: bytes, refused: int = 0) -> SpoolEntry:
        """
        Write an entry (after every entry so far: C{seq} is larger than
        :attr:`last_seq`) and return it.

        :raises SpoolFull: the spool holds ``capacity`` entries.
        :raises ValueError: C{seq} not after :attr:`last_seq`, or a field
            that cannot be written on one line.
        """
        if self.full:
            raise SpoolFull(f"the spool holds {len(self._entries)} unconfirmed records")
        if seq <= self.last_seq:
            raise ValueError(f"spool entries come in seq order: {seq} after {self.last_seq}")
        if b"\n" in body:
            raise ValueError("a spooled body is one line")
        entry = SpoolEntry(seq, self.last_seq, refused, _for_field(host, "host"), _for_field(kind, "type"),
                           _for_field(routing_key, "routing key"), body)
        segment = self._writable()
        data = entry.line()
        written = os.write(segment.fd, data)
        while written < len(data):  # a regular file takes it all unless the disk is full
            more = os.write(segment.fd, data[written:])
            if more <= 0:
                raise OSError("the spool's disk is full")
            written += more
        segment.last = seq
        segment.entries += 1
        self._entries[seq] = entry
        self.last_seq = seq
        return entry

    def ack(self, seq: int) -> None:
        """The broker confirmed entry C{seq}: it leaves the spool (unknown seqs are ignored)."""
        if self._entries.pop(seq, None) is None:
            return
        first = next(iter(self._entries), None)
        if first is None or seq < first:
            # The oldest entry was confirmed: the mark moves up to just
            # before the oldest entry still waiting.
            self._acked = (first - 1) if first is not None else self.last_seq
            self._dirty = True
            self._drop_confirmed_segments()

    def sync(self) -> None:
        """Make the appended entries and the confirmed mark durable (``fsync``)."""
        if self._segments and self._segments[-1].fd is not None:
            os.fsync(self._segments[-1].fd)
        if self._dirty and self._acked != self._acked_written:
            self._write_mark()
        self._dirty = False

    def close(self) -> None:
        """Sync and close the files; the spool is not used afterwards."""
        self.sync()
        for segment in self._segments:
            if segment.fd is not None:
                os.close(segment.fd)
                segment.fd = None

    # -- files ---------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _write_mark(self) -> None:
        temporary = self._path("acked.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"%d\n" % self._acked)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self._path("acked"))
        self._acked_written = self._acked

    def _writable(self) -> _Segment:
        current = self._segments[-1] if self._segments else None
        if current is None or current.fd is None or current.entries >= self._segment_entries:
            if current is not None and current.fd is not None:
                os.fsync(current.fd)
                os.close(current.fd)
                current.fd = None
            first = self.last_seq + 1
            path = self._path(f"segment-{first:020d}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            current = _Segment(first, path, fd=fd)
            self._segments.append(current)
            self._fsync_directory()
        return current

    def _drop_confirmed_segments(self) -> None:
        while len(self._segments) > 1 and self._segments[0].last <= self._acked:
            if self._acked != self._acked_written:
                self._write_mark()  # the mark first: a crash never resurrects a deleted segment's entries
            segment = self._segments.pop(0)
            try:
                os.unlink(segment.path)
            except FileNotFoundError:
                pass

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _load(self) -> None:
        try:
            with open(self._path("acked"), "rb") as f:
                self._acked = int(f.read().strip() or b"0")
        except FileNotFoundError:
            self._acked = 0
        except ValueError:
            _log.error("the spool's acked mark in {dir} is unreadable: sending everything again", dir=self.directory)
            self._acked = 0
        self._acked_written = self._acked
        self.last_seq = self._acked
        names = sorted(n for n in os.listdir(self.directory) if n.startswith("segment-"))
        for name in names:
            self._load_segment(self._path(name))
        dropped = [s for s in self._segments if s.last <= self._acked]
        self._segments = [s for s in self._segments if s.last > self._acked]
        for segment in dropped:
            os.unlink(segment.path)
        if self._entries:
            _log.info("spool {dir}: {n} records to send again (seq {first} to {last})", dir=self.directory,
                      n=len(self._entries), first=next(iter(self._entries)), last=self.last_seq)

    def _load_segment(self, path: str) -> None:
        with open(path, "rb") as f:
            data = f.read()
        good = 0
        entries: List[SpoolEntry] = []
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # torn by a crash mid-write
            try:
                entry = SpoolEntry.parse(line)
            except (ValueError, UnicodeDecodeError):
                _log.error("spool segment {path}: an unreadable line at byte {at}; the rest is dropped", path=path, at=good)
                break
            if entry.seq <= self.last_seq and entry.seq > self._acked:
                _log.error("spool segment {path}: seq {seq} out of order; the rest is dropped", path=path, seq=entry.seq)
                break
            entries.append(entry)
            good += len(line)
        if good < len(data):
            with open(path, "r+b") as f:
                f.truncate(good)
        segment = _Segment(entries[0].seq if entries else 0, path, last=entries[-1].seq if entries else 0,
                           entries=len(entries))
        self._segments.append(segment)
        for entry in entries:
            self.last_seq = max(self.last_seq, entry.seq)
            if entry.seq > self._acked:
                self._entries[entry.seq] = entry
