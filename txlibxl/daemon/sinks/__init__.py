"""
Where ``twistd libxl-events`` sends its events: :class:`IEventSink`.

A sink receives every :class:`~txlibxl.daemon.records.EventRecord` in ``seq``
order.  The shipped sinks are :mod:`txlibxl.daemon.sinks.jsonl` (JSON lines to a
file or stdout) and :mod:`txlibxl.daemon.sinks.http` (Server-Sent Events and the
status endpoints); an application embedding
:class:`~txlibxl.daemon.service.LibxlEventsService` adds its own by implementing
this interface.
"""
from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = ["IEventSink", "IHostStatus", "SinkClosed"]


class SinkClosed(Exception):
    """
    Raised by :meth:`IEventSink.publish` when the sink has ended for good
    (its output was closed by the other side); the message says why.  The
    service stops publishing to it, and stops altogether if it was its
    only sink.
    """


class IEventSink(Interface):
    """
    A consumer of published event records.
    """

    name = Attribute("A short name for logs and metrics (``jsonl``, ``http``...).")

    def publish(record):  # type: ignore[no-untyped-def]
        """
        Take C{record} (an :class:`~txlibxl.daemon.records.EventRecord`).  Called
        on the reactor thread, once per record, in ``seq`` order.  Must not
        block; an exception is logged and counted, and the record still
        goes to the other sinks.  :class:`SinkClosed` says that the sink has
        ended: it gets no more records (its ``close`` has been called, or
        it closed itself).
        """

    def close():  # type: ignore[no-untyped-def]
        """
        The service is stopping: flush, tell clients, release resources.
        May return a Deferred that fires when done.  No ``publish`` follows.
        """

    # Optional: ``queue_depth()``, the records taken but not yet handed to
    # the OS, for the ``txlibxl_sink_queue_depth`` gauge (0 if absent).


class IHostStatus(Interface):
    """
    What the HTTP status endpoints show;
    :class:`~txlibxl.daemon.service.LibxlEventsService` provides it.
    """

    def domains():  # type: ignore[no-untyped-def]
        """A JSON-able snapshot of the host's domains."""

    def health():  # type: ignore[no-untyped-def]
        """A JSON-able dict whose boolean ``healthy`` says whether all is well."""

    registry = Attribute("The ``prometheus_client`` registry behind ``/metrics``.")
