"""
Batch subscriptions: every event a context's watches deliver, a turn's
worth at a time, for consumers of every domain (a daemon publishing each
event, a metrics exporter) that want no Deferred per event.

:meth:`txlibxl.context.Context.subscribe` returns an
:class:`EventBatches`.  Its callback receives, once per turn in which
watches delivered anything, the list of those events in the order libxl
reported them: each event exactly as the watch delivered it (after a
watch's own filtering: a shutdown libxl repeats is in no batch), each
once.  The batch is the subscriber's to keep.

Pair it with watches made with ``buffered=False``
(:meth:`~txlibxl.context.Context.watch_domain`,
:meth:`~txlibxl.context.Context.watch_disk_eject`): they enable libxl's
generators and keep their state (a watch still ends when its domain
dies), but keep no event for a later ``next_event()``, so a watch costs
no memory per event and no future at all.

A subscription ends when it is cancelled (nothing more is said), or when
its context is closed or fails: then C{on_failure} is called once with
:class:`~txlibxl.errors.ContextClosed` or the context's
:class:`~txlibxl.errors.LibxlDisaster`.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

from .events import Event

__all__ = ["EventBatches"]


class EventBatches:
    """
    One batch subscription of a context (see :mod:`txlibxl.batches`).
    """

    __slots__ = ("_callback", "_on_failure", "_remove", "active")

    def __init__(
        self,
        callback: Callable[[List[Event]], Any],
        on_failure: Optional[Callable[[BaseException], Any]],
        remove: Callable[["EventBatches"], None],
    ) -> None:
        self._callback = callback
        self._on_failure = on_failure
        self._remove = remove
        #: Whether batches still come.
        self.active = True

    def cancel(self) -> None:
        """
        Stop: no batch comes after this.  Idempotent.
        """
        if self.active:
            self.active = False
            self._remove(self)

    def __repr__(self) -> str:
        return f"<EventBatches {'active' if self.active else 'ended'}>"

    # The context's side.

    def _hand(self, events: List[Event]) -> None:
        if self.active:
            self._callback(events)

    def _fail(self, error: BaseException) -> None:
        if self.active:
            self.active = False
            if self._on_failure is not None:
                self._on_failure(error)
