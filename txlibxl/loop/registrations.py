"""
The records behind libxl's osevent hooks, whatever the event loop.

libxl hands each hook an opaque ``for_libxl`` token and gets back an
opaque registration: an :class:`FDRegistration` or a
:class:`TimeoutRegistration`.  They carry what libxl asked for (the fd and
its poll bits, the deadline) and whether the registration is still live.
Every registration on one fd number hangs off that number's
:class:`WatchedFD`, which also holds what the loop watches for it.  The
shared bookkeeping (:mod:`txlibxl.loop.osevents_core`) keeps the loop's
watchers and timers in step with these records.  The argument checks every
hook makes before touching a loop live here too.
"""
from __future__ import annotations

import math
import select
from typing import Any, List, Optional

import attr

__all__ = [
    "FDRegistration",
    "TimeoutRegistration",
    "WatchedFD",
    "OSEventStats",
    "OSEventsClosed",
    "READ_BITS",
    "WRITE_BITS",
    "HANGUP_BITS",
    "PENDING",
    "FIRED",
    "CANCELLED",
    "check_int",
    "check_events",
    "check_deadline",
    "check_pid",
    "poll_now",
]

READ_BITS = select.POLLIN | select.POLLPRI
WRITE_BITS = select.POLLOUT
HANGUP_BITS = select.POLLHUP | select.POLLERR | select.POLLNVAL

class OSEventsClosed(RuntimeError):
    """
    A hook was called after its event loop side was closed
    (:meth:`~txlibxl.loop.osevents_core.OSEventsCore.close`).
    """


@attr.s(frozen=True, slots=True, auto_attribs=True)
class OSEventStats:
    """
    What an event loop's hooks hold on libxl's behalf, for metrics.

    @ivar fds: libxl fd numbers with at least one live registration.
    @ivar fd_registrations: live fd registrations (several may share an fd).
    @ivar timers: timeout registrations that have neither fired nor been
        deregistered.
    """

    fds: int
    fd_registrations: int
    timers: int


class FDRegistration:
    """
    One libxl fd registration: libxl's C{token} watching C{fd} for the poll
    bits C{events}.  Opaque to libxl; handed back to C{fd_modify} and
    C{fd_deregister}.

    @ivar live: C{False} once deregistered (or after C{close}); a dead
        registration never reaches the sink.
    """

    __slots__ = ("fd", "token", "events", "live", "_watch", "_owner")

    def __init__(
        self, owner: Any, watch: Any, fd: int, token: int, events: int
    ) -> None:
        self._owner = owner
        self._watch = watch
        self.fd = fd
        self.token = token
        self.events = events
        self.live = True

    def __repr__(self) -> str:
        return (
            f"<FDRegistration fd={self.fd} token={self.token:#x} "
            f"events={self.events:#x} live={self.live}>"
        )


class WatchedFD:
    """
    One libxl fd number as an event loop sees it: every live registration
    on it, and a private duplicate (C{os.dup}) of libxl's fd that the loop
    watches instead of libxl's own.

    Each loop makes its own kind (a Twisted C{FileDescriptor} that is also
    a C{WatchedFD}; a plain C{WatchedFD} on asyncio).  Registration state
    (C{registrations}, C{paused}, C{retired}) is guarded by the owner's
    lock; loop state (C{_reading}, C{_writing}, the duplicate) is touched
    on the loop's thread only.

    @ivar fd: libxl's fd number.
    @ivar registrations: the live registrations on it, in register order.
    @ivar paused: a hang-up was reported; watch nothing until libxl
        modifies or registers on this fd again.
    @ivar retired: no live registration is left; the loop must drop the
        watch and close the duplicate.
    """

    def __init__(self, owner: Any, fd: int, dupfd: int) -> None:
        self._owner = owner
        self.fd = fd
        self._dupfd = dupfd
        self.registrations: List[FDRegistration] = []
        self.paused = False
        self.retired = False
        self._reading = False
        self._writing = False
        self._poller: Any = None

    def fileno(self) -> int:
        """
        The descriptor the loop watches: the duplicate of libxl's fd, or -1
        once the watch has been dropped.
        """
        return self._dupfd

    def poll_now(self) -> int:
        """
        The poll bits the duplicate shows right now (no waiting), through a
        C{select.poll} object kept for the purpose; C{POLLNVAL} once the
        duplicate is closed.
        """
        if self._dupfd < 0:
            return select.POLLNVAL
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self._dupfd, READ_BITS | WRITE_BITS)
        try:
            ready = poller.poll(0)
        except OSError:
            return select.POLLERR
        return ready[0][1] if ready else 0


PENDING = "pending"
FIRED = "fired"
CANCELLED = "cancelled"


class TimeoutRegistration:
    """
    One libxl timeout registration.  Opaque to libxl.

    @ivar deadline: absolute wall-clock time (seconds since the epoch).
    @ivar asap: C{True} once libxl asked for "as soon as possible".
    @ivar state: C{"pending"}, C{"fired"} or C{"cancelled"}.
    """

    __slots__ = ("token", "deadline", "asap", "state", "_call", "_owner")

    def __init__(self, owner: Any, token: int, deadline: float) -> None:
        self._owner = owner
        self.token = token
        self.deadline = deadline
        self.asap = False
        self.state = PENDING
        self._call: Optional[Any] = None

    def __repr__(self) -> str:
        return (
            f"<TimeoutRegistration token={self.token:#x} "
            f"deadline={self.deadline!r} asap={self.asap} state={self.state}>"
        )


def check_int(name: str, value: object) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return int(value)


def check_events(events: object) -> int:
    events = check_int("events", events)
    if not 0 <= events <= 0xFFFF:
        raise ValueError(f"events must be poll(2) bits fitting a short, not {events:#x}")
    return events


def check_pid(pid: object) -> int:
    pid = check_int("pid", pid)
    if pid <= 0:
        raise ValueError(f"pid must be positive, not {pid}")
    return pid


def check_deadline(deadline: object) -> float:
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise TypeError(
            f"deadline must be seconds since the epoch (float), not {type(deadline).__name__}"
        )
    if not math.isfinite(deadline):
        raise ValueError(f"deadline must be finite, not {deadline!r}")
    return float(deadline)


def poll_now(fd: int) -> int:
    """
    The poll bits C{fd} shows right now (no waiting).
    """
    poller = select.poll()
    poller.register(fd, READ_BITS | WRITE_BITS)
    try:
        ready = poller.poll(0)
    except OSError:
        return select.POLLERR
    return ready[0][1] if ready else 0
