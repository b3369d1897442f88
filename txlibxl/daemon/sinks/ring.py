"""
A bounded ring of the latest records, for resuming a stream:
:class:`RecordRing`.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional, Tuple

from ..records import EventRecord

__all__ = ["RecordRing"]


class RecordRing:
    """
    The last C{capacity} records published, oldest first.

    :raises ValueError: C{capacity} is not a positive integer.
    """

    def __init__(self, capacity: int) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"the ring's capacity must be a positive integer, not {capacity!r}")
        self.capacity = capacity
        self._records: Deque[EventRecord] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._records)

    def append(self, record: EventRecord) -> None:
        """Keep C{record}; the oldest goes if the ring is full.  ``seq`` must grow."""
        if self._records and record.seq <= self._records[-1].seq:
            raise ValueError(f"record {record.seq} is not after {self._records[-1].seq}")
        self._records.append(record)

    @property
    def last_seq(self) -> int:
        """The newest record's ``seq``, 0 when empty."""
        return self._records[-1].seq if self._records else 0

    @property
    def first_seq(self) -> Optional[int]:
        """The oldest record kept, ``None`` when empty."""
        return self._records[0].seq if self._records else None

    def since(self, last_seen: int) -> Tuple[List[EventRecord], int]:
        """
        The records after C{last_seen} (a client's ``Last-Event-ID``), and
        how many records it missed that the ring no longer holds (0 when
        the resume is complete).  A C{last_seen} beyond the newest record
        (a client of a service whose state directory was lost, so that its
        numbering started again) gets the whole ring, with no count of
        missed records.
        """
        if last_seen > self.last_seq:
            return list(self._records), 0
        newer = [r for r in self._records if r.seq > last_seen]
        first = self.first_seq
        missed = 0 if first is None or first <= last_seen + 1 else first - last_seen - 1
        return newer, missed
