"""
Publishing records, the part of
:class:`~txlibxl.daemon.service.LibxlEventsService` between an event and
the sinks: :class:`RecordPublishing`.

Each record is numbered by the service's sequence (a number that cannot be
kept is a failure of the service: nothing is published unnumbered), given
to every sink in order and counted; its latency is measured from when the
event reached the service.  A sink that raises
:class:`~txlibxl.daemon.sinks.SinkClosed` is dropped (the others go on);
with no sink left the service stops the reactor.  Any other exception of
a sink is logged and counted, and the record still reaches the others.
"""
from __future__ import annotations

from time import perf_counter
from typing import Any, Callable, List, Optional

from twisted.logger import Logger

from .discovery import TrackedDomain
from .metrics import Metrics
from .records import EventRecord
from .sinks import SinkClosed

__all__ = ["RecordPublishing"]


class RecordPublishing:
    """
    Numbering and delivering records, mixed into the service.  It uses the
    service's ``_sequence``, ``sinks``, ``metrics``, ``reactor``,
    ``host_name``, ``_published`` count and ``_on_failure``.
    """

    _log: Logger
    _sequence: Any
    sinks: List[Any]
    metrics: Metrics
    reactor: Any
    host_name: Optional[str]
    _published: int
    _on_failure: Callable[[str], None]

    def _publish(
        self,
        kind: str,
        dom: TrackedDomain,
        *,
        reason: Optional[str] = None,
        vdev: Optional[str] = None,
        after: Optional[str] = None,
        reconciled: bool = False,
        received: Optional[float] = None,
    ) -> EventRecord:
        """
        Number C{dom}'s event, give it to every sink, and count it;
        C{received} is when it reached the service (``perf_counter``), the
        start of its latency.
        """
        try:
            seq = self._sequence.next()
        except OSError as e:
            self._on_failure(f"cannot number record {kind} of domain {dom.domid}: {e}")
            raise
        self._published += 1
        record = EventRecord(
            seq=seq,
            time=self.reactor.seconds(),
            type=kind,
            domid=dom.domid,
            uuid=dom.uuid,
            name=dom.name,
            reason=reason,
            vdev=vdev,
            after=after,
            reconciled=reconciled,
            host=self.host_name,
        )
        return self._emit(record, received)

    def _emit(self, record: EventRecord, received: Optional[float] = None) -> EventRecord:
        """Give C{record} to every sink, in order, and count it."""
        self.metrics.count("txlibxl_events_total", record.type)
        for sink in list(self.sinks):
            try:
                sink.publish(record)
            except SinkClosed as e:
                self._sink_closed(sink, e)
            except Exception:
                self.metrics.count("txlibxl_sink_errors_total", getattr(sink, "name", type(sink).__name__))
                self._log.failure("the {sink} sink failed to take record {seq}", sink=getattr(sink, "name", sink), seq=record.seq)
        if received is not None:
            self.metrics.observe_latency(record.type, perf_counter() - received)
        return record

    def _sink_closed(self, sink: Any, why: SinkClosed) -> None:
        """C{sink} has ended: forget it; with no sink left, stop."""
        if sink in self.sinks:
            self.sinks.remove(sink)
        try:
            sink.close()
        except Exception:
            pass
        name = getattr(sink, "name", type(sink).__name__)
        if self.sinks:
            self._log.warn(
                "the {sink} sink has ended: {why}; the other sinks go on", sink=name, why=why
            )
            return
        self._log.warn("the {sink} sink has ended: {why}; no sink left, stopping", sink=name, why=why)
        if self.reactor.running:
            self.reactor.stop()
