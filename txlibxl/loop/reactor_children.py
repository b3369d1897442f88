"""
Reaping libxl's children with the reactor (``libxl_sigchld_owner_mainloop``).

libxl must not own SIGCHLD inside a Twisted process: a running reactor has
its own handler installed, libxl's ``sigchld_installhandler_core`` asserts
on it, and if libxl installed its handler first Twisted would silently
replace it (``libxl-event-contract.md`` A5, pitfall 7).  So the binding
puts libxl in ``owner_mainloop`` mode; its ``fork_replacement`` forks and
reports each child's pid to :class:`ReactorChildReaper.child_forked`, and
the reaper hands the wait status back through
:class:`~txlibxl.interfaces.IChildSink` (``libxl_childproc_reaped``).

How the pids are reaped
    Each pid is registered with Twisted's own per-pid reaping,
    ``twisted.internet.process.registerReapProcessHandler``, with a small
    proxy object in the role of Twisted's ``Process``.  Twisted reaps
    selectively: on every SIGCHLD its waker calls ``reapAllProcesses()``,
    which calls ``waitpid(pid, WNOHANG)`` for each registered pid only.  So
    libxl's children, Twisted's own ``spawnProcess`` children and any other
    child of the process are each reaped by their owner, and this module
    never waits for a pid it was not given.

Which reactors reap on SIGCHLD
    Every ``PosixReactorBase`` reactor (select, poll, epoll, and the asyncio
    reactor too: ``AsyncioSelectorReactor`` inherits ``_signalsFactory``)
    installs ``_ChildSignalHandling`` when it runs with
    ``installSignalHandlers=True`` (twistd, trial, a plain
    ``reactor.run()``): a no-op Python SIGCHLD handler plus
    ``signal.set_wakeup_fd`` on a pipe the reactor reads, whose reader calls
    ``reapAllProcesses()``.  Installing also calls ``reapAllProcesses()``
    once, so children that exited before the reactor started are found.
    A reactor run without signal handlers (``installSignalHandlers=False``,
    a reactor in a non-main thread) reaps nobody on SIGCHLD.  For that
    case only, while libxl has children and Twisted's SIGCHLD handler is not
    the one installed, the reaper polls its own pids every
    C{fallback_interval} seconds (the approach crochet takes for
    ``spawnProcess``); it stops as soon as Twisted's handler appears.

Turns and threads
    ``child_forked`` may be called on any thread, from inside libxl.  It
    never calls the sink: the registration (whose immediate ``waitpid`` may
    find the child already dead) runs on the reactor thread, marshalled with
    ``callFromThread`` when needed, and every ``child_reaped`` call is made
    from its own ``callLater(0)``, a later reactor turn, never from a signal
    handler, never from inside libxl.  A child that exits before it is
    registered is still reported (the registration's ``waitpid`` finds it).
"""
from __future__ import annotations

import os
import signal
from typing import Any, Dict, List, Optional, Set

from twisted.internet import process
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from txlibxl.interfaces import IChildSink, IChildWatcher
from txlibxl.loop.reactor_osevents import on_reactor_thread
from txlibxl.loop.registrations import check_pid

__all__ = ["ReactorChildReaper", "twisted_reaps_on_sigchld"]

log = Logger()


def twisted_reaps_on_sigchld() -> bool:
    """
    Whether the installed SIGCHLD handler is the one a running Twisted
    reactor installs (``twisted.internet._signals.installHandler``), whose
    wake-up pipe makes the reactor call ``reapAllProcesses()``.
    """
    handler = signal.getsignal(signal.SIGCHLD)
    return getattr(handler, "__module__", None) == "twisted.internet._signals"


class _LibxlChild:
    """
    One of libxl's children as Twisted's reaping machinery sees it: the
    C{reapProcess}/C{processEnded} half of Twisted's C{_BaseProcess}.
    """

    __slots__ = ("pid", "_reaper")

    def __init__(self, reaper: "ReactorChildReaper", pid: int) -> None:
        self.pid = pid
        self._reaper = reaper

    def reapProcess(self) -> None:
        """
        Called by C{reapAllProcesses} (on SIGCHLD) and by the fallback poll:
        reap this pid if it has exited, without blocking.
        """
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            # Someone else waited for it (or SIGCHLD is SIG_IGN): the status
            # is gone and libxl cannot be told.
            self._unregister()
            self._reaper._lost(self)
            return
        except Exception:
            log.failure("waitpid({pid}) failed for a libxl child", pid=self.pid)
            return
        if pid:
            self._unregister()
            self.processEnded(status)

    def processEnded(self, status: int) -> None:
        """
        The child is reaped with wait status C{status} (possibly called
        synchronously by C{registerReapProcessHandler}).
        """
        self._reaper._ended(self, status)

    def _unregister(self) -> None:
        if process.reapProcessHandlers.get(self.pid) is self:
            process.unregisterReapProcessHandler(self.pid, self)

    def __repr__(self) -> str:
        return f"<libxl child {self.pid}>"


@implementer(IChildWatcher)
class ReactorChildReaper:
    """
    Reaps the pids libxl reports with the reactor's SIGCHLD handling and
    tells C{sink} their raw wait status on a later reactor turn.

    @param reactor: provides C{IReactorTime} (and C{IReactorThreads} if
        libxl may fork on another thread).
    @param sink: told of each death (the binding's ctx,
        ``libxl_childproc_reaped``).
    @param fallback_interval: seconds between polls of libxl's pids when
        the reactor does not reap on SIGCHLD (see the module docstring).
    """

    def __init__(self, reactor: Any, sink: IChildSink, fallback_interval: float = 0.1) -> None:
        if not fallback_interval > 0:
            raise ValueError(f"fallback_interval must be positive, not {fallback_interval!r}")
        self._reactor = reactor
        self._sink = sink
        self._fallback_interval = fallback_interval
        self._children: Dict[int, _LibxlChild] = {}
        self._reports: Set[IDelayedCall] = set()
        self._poll: Optional[LoopingCall] = None
        self._closed = False

    @property
    def running_children(self) -> List[int]:
        """
        The pids of libxl's children that have not been reaped yet.
        """
        return sorted(self._children)

    @property
    def polling(self) -> bool:
        """
        Whether the fallback poll is running (the reactor was not reaping on
        SIGCHLD when a child was registered).
        """
        return self._poll is not None

    def child_forked(self, pid: int) -> None:
        """
        See L{IChildWatcher.child_forked}.  Never calls the sink.

        @raise TypeError, ValueError: C{pid} is not a positive int.
        """
        check_pid(pid)
        if on_reactor_thread():
            self._watch(pid)
        else:
            self._reactor.callFromThread(self._watch, pid)

    # -- reactor thread --------------------------------------------------

    def _watch(self, pid: int) -> None:
        if self._closed:
            log.warn("libxl forked child {pid} after close(); nobody will reap it", pid=pid)
            return
        if pid in self._children:
            log.error("libxl reported child {pid} twice; ignoring the second", pid=pid)
            return
        child = _LibxlChild(self, pid)
        self._children[pid] = child
        try:
            # May call child.processEnded synchronously (already exited);
            # _ended defers the report to a later turn.
            process.registerReapProcessHandler(pid, child)
        except Exception:
            self._children.pop(pid, None)
            log.failure("cannot watch libxl child {pid}", pid=pid)
            return
        self._start_fallback()

    def _ended(self, child: _LibxlChild, status: int) -> None:
        if self._children.get(child.pid) is not child:
            return
        del self._children[child.pid]
        call: Optional[IDelayedCall] = None

        def report() -> None:
            self._reports.discard(call)  # type: ignore[arg-type]
            try:
                self._sink.child_reaped(child.pid, status)
            except Exception:
                log.failure("child_reaped raised for libxl child {pid}", pid=child.pid)

        call = self._reactor.callLater(0, report)
        self._reports.add(call)

    def _lost(self, child: _LibxlChild) -> None:
        if self._children.pop(child.pid, None) is child:
            log.error(
                "libxl child {pid} was reaped by someone else (is SIGCHLD ignored, "
                "or does other code wait for all children?); libxl cannot be told",
                pid=child.pid,
            )

    def _start_fallback(self) -> None:
        if self._poll is None and self._children and not twisted_reaps_on_sigchld():
            self._poll = LoopingCall(self._poll_children)
            self._poll.clock = self._reactor
            self._poll.start(self._fallback_interval, now=False)

    def _stop_fallback(self) -> None:
        if self._poll is not None:
            poll, self._poll = self._poll, None
            if poll.running:
                poll.stop()

    def _poll_children(self) -> None:
        for child in list(self._children.values()):
            child.reapProcess()
        if not self._children or twisted_reaps_on_sigchld():
            self._stop_fallback()

    # -- teardown --------------------------------------------------------

    def close(self) -> List[int]:
        """
        Stop reaping: unregister the children still running from Twisted's
        reaping, cancel reports not yet delivered and stop the fallback
        poll.  Call on the reactor thread, after ``libxl_ctx_free``.

        The children still running are left alone: they keep running, and
        when they exit nobody waits for them, so they stay zombies until this
        process exits (or other code waits for them).  libxl has none in
        normal operation, because ``libxl_ctx_free`` is only legal once every
        async operation has completed.

        @return: the pids of the children left running (logged as a warning
            when there are any).
        """
        if not on_reactor_thread():
            raise RuntimeError("ReactorChildReaper.close() must run on the reactor thread")
        self._closed = True
        left = sorted(self._children)
        for child in list(self._children.values()):
            child._unregister()
        self._children.clear()
        for call in list(self._reports):
            if call.active():
                call.cancel()
        self._reports.clear()
        self._stop_fallback()
        if left:
            log.warn(
                "closing the libxl child reaper with children {pids} still running; "
                "they will not be reaped",
                pids=left,
            )
        return left
