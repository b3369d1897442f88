"""
libxl's reports taken in batches: :class:`ReportsMixin`, the part of
:class:`~txlibxl._libxl.binding.Ctx` that takes what libxl reported from
the C queue (``c/txl_queue.c``) after each call into libxl.

libxl reports events and operation completions from inside the call that
made them happen.  The C side queues them as packed records without
running any Python, and disables each domain-death generator whose death
arrived; when the call returns, the whole batch crosses into Python in
one call, as one flat list of ints, five per report::

    type, domid, for_user, detail, extra

``type`` is a ``libxl_event_type``, or :data:`REPORT_OP_DONE` for an
operation's completion (then ``for_user`` is its ``op_id`` and
``detail`` its rc); ``detail`` is a shutdown's reason, and for a death
:data:`DEATH_SPENT` if its generator was enabled by
:meth:`~txlibxl._libxl.ctx_events.EventsMixin.evenable_domain_death` and
the C side disabled it on this death (0 for another generator's death).  ``extra`` is 0,
or, for an event with more than scalars (a disk eject, a type this
binding does not know, a UUID libxl filled in), its
:class:`~txlibxl._libxl.values.RawEvent`, read and freed before the batch
is handed on.

Batches go to the callback given to :meth:`ReportsMixin.set_report_batches`
(the public context's), in libxl's order, on the thread that made the
call.  Without one, each report goes its old way: events as
:class:`~txlibxl._libxl.values.RawEvent` to ``on_event``, completions to
the completion callback.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional, Tuple

from .. import errors
from . import native
from .checks import check_callable
from .constants import EVENT_DOMAIN_SHUTDOWN, EVENT_OPERATION_COMPLETE
from .ctx_base import CtxBase
from .values import RawEvent

__all__ = ["ReportsMixin", "REPORT_OP_DONE", "DEATH_SPENT", "RECORD_WORDS", "event_counts"]

_log = native.log

_ffi: Any = None
_lib: Any = None

#: A record's ``type`` for an operation's completion.
REPORT_OP_DONE = 0
#: A death record's ``detail`` when the C side disabled its generator.
DEATH_SPENT = 1
#: ints per record.
RECORD_WORDS = 5
#: records taken per C call (the loop goes on while the queue is longer).
_TAKE = 4096

_scratch = threading.local()


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


def _buffers() -> Tuple[Any, Any, Any]:
    # One take buffer per thread: libxl reports on any thread calling it.
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = (
            _ffi.new("int64_t[]", _TAKE * RECORD_WORDS), _ffi.new("int *"), _ffi.new("size_t *")
        )
    return bufs


def event_counts() -> Tuple[int, int, int]:
    """
    ``(received, freed, deaths_disabled)``: how many ``libxl_event`` s the
    C side has received from libxl in this process, how many it has freed
    (at once, or when Python or a context's end let go of them), and how
    many domain-death generators it disabled on their death.  For tests.
    """
    native.load()
    out = _ffi.new("uint64_t[3]")
    _lib.txl_event_counts(out, out + 1, out + 2)
    return (out[0], out[1], out[2])


class ReportsMixin(CtxBase):
    """
    Taking libxl's reports from the C queue.
    """

    _on_event: Callable[[RawEvent], None]
    _uuids: Any
    _death_uuid: Callable[[int, int], str]
    _eject_vdevs: Any
    _copy_event: Callable[[Any], RawEvent]
    _op_completed: Callable[[int, int], None]
    _op_reported: Callable[[int, int], None]

    def _init_state(self, log: Callable[[int, str], None]) -> None:
        super()._init_state(log)
        self._on_batch: Optional[Callable[[List[Any], bool], None]] = None

    def set_report_batches(self, on_batch: Callable[[List[Any], bool], None]) -> None:
        """
        Hand libxl's reports over as batches: C{on_batch(records,
        delivering)} once per call into libxl that reported anything,
        after libxl returned, on the thread that called it.  C{records}
        is the flat list described in :mod:`.ctx_reports`;
        C{delivering} says whether the call was one the loop makes to
        deliver readiness (an fd, a timeout, a child), after which the
        reports may be dispatched at once, or another call (whose caller
        should not see callbacks run inside it).
        """
        check_callable("set_report_batches", "on_batch", on_batch)
        self._on_batch = on_batch

    @property
    def reports_queued(self) -> int:
        """
        How many reports the C queue holds (taken after each call into
        libxl, so 0 between calls).
        """
        return int(_lib.txl_queue_count(self._queue))

    def take_reports(self) -> List[Any]:
        """
        Every report queued in C, as the flat list described in
        :mod:`.ctx_reports` (kept events read and freed).

        :raises txlibxl.errors.LibxlDisaster: the C side ran out of memory
            and lost a report.
        """
        return self._take()[0]

    def _take(self) -> Tuple[List[Any], int]:
        # The records, and how many of them are operation completions.
        buf, overflow, ops = _buffers()
        n = _lib.txl_queue_take(self._queue, buf, _TAKE, overflow, ops)
        if not n and not overflow[0]:
            return [], 0
        flat: List[Any] = _ffi.unpack(buf, n * RECORD_WORDS)
        done = ops[0]
        while n == _TAKE:
            n = _lib.txl_queue_take(self._queue, buf, _TAKE, overflow, ops)
            flat.extend(_ffi.unpack(buf, n * RECORD_WORDS))
            done += ops[0]
        if overflow[0]:
            self._lost_reports()
        if any(flat[4::RECORD_WORDS]):
            self._read_kept(flat)
        return flat, done

    def _lost_reports(self) -> None:
        message = "out of memory: libxl reports were lost"
        self.disaster = errors.LibxlDisaster(0, message, 12)
        try:
            self._on_disaster(0, message, 12)
        except Exception:
            _log.failure("the libxl disaster callback failed")

    def _read_kept(self, flat: List[Any]) -> None:
        # Read, then free, every kept event, even if reading one fails.
        for i in range(4, len(flat), RECORD_WORDS):
            address = flat[i]
            if not address:
                continue
            event = _ffi.cast("libxl_event *", address)
            try:
                flat[i] = self._copy_event(event)
            except Exception:
                flat[i] = 0
                _log.failure("reading a libxl event")
            finally:
                _lib.txl_event_release(event)

    def _take_reports(self, delivering: bool) -> None:
        if not _lib.txl_queue_count(self._queue):
            return
        flat, done = self._take()
        if not flat:
            return
        if done:
            it = iter(flat)
            for kind, _, user, detail, _ in zip(it, it, it, it, it):
                if kind == REPORT_OP_DONE:
                    self._op_reported(user, detail)
        on_batch = self._on_batch
        if on_batch is not None:
            try:
                on_batch(flat, delivering)
            except Exception:
                _log.failure("the libxl report callback failed")
            return
        self._hand_out(flat)

    def _hand_out(self, flat: List[Any]) -> None:
        it = iter(flat)
        for kind, domid, user, detail, extra in zip(it, it, it, it, it):
            if kind == REPORT_OP_DONE:
                self._op_completed(user, detail)
                continue
            if user < 0:
                user += 1 << 64
            raw = extra or RawEvent(
                kind,
                domid,
                self._uuids.get((domid, user)) or self._death_uuid(domid, user),
                user,
                detail if kind == EVENT_DOMAIN_SHUTDOWN else None,
                None,
                None,
                detail if kind == EVENT_OPERATION_COMPLETE else None,
            )
            try:
                self._on_event(raw)
            except Exception:
                _log.failure("the libxl event callback failed on {raw}", raw=raw)
