"""
What the loop layer's tests share, whatever the loop: the recording sink,
the guard that catches ``occurred_*`` calls made from inside a hook,
threads and pipes.
"""
from __future__ import annotations

import os
import select
import threading
from typing import Any, Callable, List, Optional, Tuple

from twisted.trial.unittest import TestCase
from zope.interface import implementer

from txlibxl.interfaces import IOSEventSink

POLLIN, POLLOUT, POLLPRI = select.POLLIN, select.POLLOUT, select.POLLPRI
POLLHUP, POLLERR = select.POLLHUP, select.POLLERR


@implementer(IOSEventSink)
class RecordingSink:
    """
    Records every occurred_* call; optional callbacks play libxl's part
    (e.g. deregistering from inside occurred_fd).  C{in_hook} counts, per
    thread, the hooks running (libxl's C{osevent_in_hook} is per ctx, but
    another thread's occurred_* call just waits for libxl's ctx lock).
    """

    def __init__(self) -> None:
        self.fds: List[Tuple[int, int, int, int]] = []
        self.timeouts: List[int] = []
        self._local = threading.local()
        self.reentrant: List[str] = []
        self.on_fd: Optional[Callable[[int, int, int, int], None]] = None
        self.on_timeout: Optional[Callable[[int], None]] = None

    @property
    def in_hook(self) -> int:
        return getattr(self._local, "depth", 0)

    @in_hook.setter
    def in_hook(self, depth: int) -> None:
        self._local.depth = depth

    def occurred_fd(self, token: int, fd: int, events: int, revents: int) -> None:
        if self.in_hook:
            self.reentrant.append(f"occurred_fd({token})")
        self.fds.append((token, fd, events, revents))
        if self.on_fd is not None:
            self.on_fd(token, fd, events, revents)

    def occurred_timeout(self, token: int) -> None:
        if self.in_hook:
            self.reentrant.append(f"occurred_timeout({token})")
        self.timeouts.append(token)
        if self.on_timeout is not None:
            self.on_timeout(token)

    def tokens(self) -> List[int]:
        return [call[0] for call in self.fds]


class GuardedHooks:
    """
    Forwards the six hooks, counting "inside a hook" on the sink the way
    libxl's OSEVENT_HOOK macro sets osevent_in_hook.
    """

    def __init__(self, real: Any, sink: RecordingSink) -> None:
        self.real = real
        self._sink = sink

    def _guard(self, name: str, *args: Any) -> Any:
        self._sink.in_hook += 1
        try:
            return getattr(self.real, name)(*args)
        finally:
            self._sink.in_hook -= 1

    def fd_register(self, fd: int, events: int, token: int) -> Any:
        return self._guard("fd_register", fd, events, token)

    def fd_modify(self, fd: int, reg: Any, events: int) -> Any:
        return self._guard("fd_modify", fd, reg, events)

    def fd_deregister(self, fd: int, reg: Any) -> None:
        self._guard("fd_deregister", fd, reg)

    def timeout_register(self, deadline: float, token: int) -> Any:
        return self._guard("timeout_register", deadline, token)

    def timeout_modify(self, reg: Any, deadline: Optional[float]) -> Any:
        return self._guard("timeout_modify", reg, deadline)

    def timeout_deregister(self, reg: Any) -> None:
        self._guard("timeout_deregister", reg)


def in_thread(f: Callable[..., Any], *args: Any) -> Any:
    """
    Run C{f(*args)} on a fresh thread (not the loop's) and return its result.
    """
    result: List[Any] = []

    def run() -> None:
        try:
            result.append((True, f(*args)))
        except BaseException as e:  # handed back to the test thread
            result.append((False, e))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def open_pipe(case: TestCase) -> Tuple[int, int]:
    """
    A pipe whose ends are closed after the test unless the test closed them
    with L{close_fd} first (a blind second close could hit a reused number,
    such as the reactor's own waker).
    """
    r, w = os.pipe()
    owned = case.__dict__.setdefault("_open_fds", set())
    if not owned:
        case.addCleanup(_close_owned, owned)
    owned.update((r, w))
    return r, w


def close_fd(case: TestCase, fd: int) -> None:
    case.__dict__.setdefault("_open_fds", set()).discard(fd)
    os.close(fd)


def _close_owned(owned: set) -> None:
    while owned:
        os.close(owned.pop())
