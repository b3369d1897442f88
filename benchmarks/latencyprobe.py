"""
:mod:`benchmarks.pyclient` with timers on its latency path, for
:mod:`benchmarks.profile_latency`: ``python -m benchmarks.latencyprobe
COMMAND [ARGS]...`` runs the same commands, and each event line also has

``t_woke``
    when the reactor's poll last returned with an fd ready;
``t_libxl``
    when the context last started a call into libxl that delivers
    readiness (``occurred_fd``, ``occurred_timeout``...);
``t_libxl_done``
    when that call returned (libxl's part done; txlibxl then takes the
    batch, dispatches it and resolves the waiter, whose callback stamps
    ``t``).

The timers wrap the reactor's poller and two methods of the binding's
context class; they cost a few microseconds per event, so the latency
benchmark itself runs the plain client.  Needs a reactor with an epoll or
poll poller (Linux's default).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Dict, Optional, Sequence

from . import clientcommon, pyclient

__all__ = ["main", "install"]

#: The stamps of the latest wake and libxl delivery (unix time).
stamps: Dict[str, float] = {"t_woke": 0.0, "t_libxl": 0.0, "t_libxl_done": 0.0}


class _TimedPoller:
    """A reactor's poller whose C{poll} stamps ``t_woke`` when something is ready."""

    def __init__(self, poller: Any) -> None:
        self._poller = poller

    def poll(self, *args: Any) -> Any:
        ready = self._poller.poll(*args)
        if ready:
            stamps["t_woke"] = time.time()
        return ready

    def __getattr__(self, name: str) -> Any:
        return getattr(self._poller, name)


def install(reactor: Any) -> None:
    """
    Put the timers in: C{reactor}'s poller, the binding context's
    deliveries, and the client's event lines.

    :raises TypeError: C{reactor} has no poller to wrap.
    """
    from txlibxl._libxl.binding import Ctx

    poller = getattr(reactor, "_poller", None)
    if poller is None or not hasattr(poller, "poll"):
        raise TypeError(f"{type(reactor).__name__} has no poller to time; run on the epoll or poll reactor")
    reactor._poller = _TimedPoller(poller)

    deliver, take = Ctx._deliver_reports, Ctx._take_reports

    def timed_deliver(self: Any, function: Any, *args: Any) -> Any:
        stamps["t_libxl"] = time.time()
        return deliver(self, function, *args)

    def timed_take(self: Any, delivering: bool) -> None:
        if delivering:  # right after the delivering call returned
            stamps["t_libxl_done"] = time.time()
        take(self, delivering)

    Ctx._deliver_reports = timed_deliver  # type: ignore[method-assign]
    Ctx._take_reports = timed_take  # type: ignore[method-assign]

    emit = clientcommon.emit

    def emit_with_stamps(line: Dict[str, Any]) -> None:
        if "event" in line:
            line.update(stamps)
        emit(line)

    # Event lines are written by clientcommon.emit_event.
    clientcommon.emit = emit_with_stamps  # type: ignore[assignment]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the commands on C{argv} with the timers in; returns the exit status."""
    from twisted.internet import reactor

    install(reactor)
    return pyclient.main(argv)


if __name__ == "__main__":
    sys.exit(main())
