"""
Reaping libxl's children on an asyncio loop (``libxl_sigchld_owner_mainloop``).

The binding puts libxl in ``owner_mainloop`` mode, so libxl never touches
SIGCHLD; its ``fork_replacement`` reports each child's pid to
:meth:`AsyncioChildReaper.child_forked`, and the reaper hands the raw wait
status back through :class:`~txlibxl.interfaces.IChildSink`
(``libxl_childproc_reaped``).

How the pids are reaped
    Each pid gets a pidfd (``os.pidfd_open``), read by the loop
    (``loop.add_reader``): a pidfd becomes readable when its process
    exits, so no SIGCHLD handler is installed and no other child of the
    process is ever waited for.  When it is readable the child is reaped
    through the pidfd (``os.waitid(P_PIDFD, ...)``, which cannot reap a
    process that merely got the same number; ``waitpid(pid, WNOHANG)`` on
    kernels without ``P_PIDFD``), as asyncio's own ``PidfdChildWatcher``
    does.  asyncio's ``create_subprocess_exec`` keeps working beside it,
    whichever child watcher it uses, as long as that watcher reaps only its
    own pids (all of asyncio's do except ``SafeChildWatcher``'s and
    ``FastChildWatcher``'s ``waitpid(-1)``, which would take libxl's
    children too; they are deprecated, and gone in Python 3.14).

Turns and threads
    ``child_forked`` may be called on any thread, from inside libxl.  It
    never calls the sink: the pidfd is opened on the loop's thread
    (marshalled with ``call_soon_threadsafe`` when needed) and every
    ``child_reaped`` call is made from the pidfd's reader callback, a
    later loop turn, never from inside libxl.  A child that exits before
    its pidfd is opened is still reported: a pidfd of a process that has
    exited (and not been reaped) is readable at once.

Requirements
    ``os.pidfd_open`` needs Python 3.9 and Linux 5.3; the reaper refuses
    to start without it (:class:`PidfdUnavailable`), because the
    alternatives either steal other children (``waitpid(-1)``) or poll.
"""
from __future__ import annotations

import errno
import os
import platform
from typing import Any, Dict, List, Optional

from zope.interface import implementer

from txlibxl.interfaces import IChildSink, IChildWatcher

from .asyncio_osevents import LoopThread, check_loop
from .logs import LoopLogger, loop_logger
from .registrations import check_pid

__all__ = ["AsyncioChildReaper", "PidfdUnavailable", "pidfd_unavailable_reason"]


class PidfdUnavailable(RuntimeError):
    """
    This Python or kernel cannot open pidfds (``os.pidfd_open`` needs
    Python 3.9+ and Linux 5.3+), so libxl's children cannot be reaped on
    asyncio without a SIGCHLD handler.
    """


def pidfd_unavailable_reason() -> Optional[str]:
    """
    Why pidfds cannot be used here, or C{None} if they can.
    """
    if not hasattr(os, "pidfd_open"):
        return "os.pidfd_open is missing: reaping libxl's children on asyncio needs Python 3.9+ on Linux"
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as e:
        if e.errno == errno.ENOSYS:
            return f"pidfd_open(2) needs Linux 5.3 or later (this kernel is {platform.release()})"
        return f"pidfd_open(2) failed: {e}"
    os.close(fd)
    return None


def _status_from_siginfo(info: Any) -> int:
    """The wait(2) status that C{info} (from C{os.waitid}) stands for."""
    if info.si_code == os.CLD_EXITED:
        return (info.si_status & 0xFF) << 8
    if info.si_code == os.CLD_DUMPED:
        return (info.si_status & 0x7F) | 0x80
    return info.si_status & 0x7F  # CLD_KILLED


class _Child:
    __slots__ = ("pid", "pidfd")

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.pidfd = pidfd

    def wait(self) -> Optional[int]:
        """
        Reap the child without blocking: its raw wait status, or C{None} if
        it has not exited.

        @raise ChildProcessError: somebody else reaped it.
        """
        if hasattr(os, "P_PIDFD"):
            try:
                info = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                raise
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: a kernel without P_PIDFD
                    raise
            else:
                return None if info is None else _status_from_siginfo(info)
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        return status if pid else None

    def __repr__(self) -> str:
        return f"<libxl child {self.pid}>"


@implementer(IChildWatcher)
class AsyncioChildReaper:
    """
    Reaps the pids libxl reports through pidfds on the asyncio loop C{loop}
    and tells C{sink} their raw wait status on a later loop turn.

    @param loop: an asyncio selector event loop.  Make the reaper on the
        loop's thread (inside it, or before it runs).
    @param sink: told of each death (the binding's ctx,
        ``libxl_childproc_reaped``).
    @param log: a txaio-style logger (see L{txlibxl.loop.logs}); by
        default the standard library's ``txlibxl.loop.asyncio_children``.

    @raise PidfdUnavailable: pidfds cannot be used (old Python or kernel).
    @raise TypeError: C{loop} is not an asyncio selector event loop.
    """

    def __init__(self, loop: Any, sink: IChildSink, log: Optional[LoopLogger] = None) -> None:
        reason = pidfd_unavailable_reason()
        if reason is not None:
            raise PidfdUnavailable(reason)
        self._loop = check_loop(loop)
        self._thread = LoopThread(loop)
        self._sink = sink
        self._log = loop_logger(log, __name__)
        self._children: Dict[int, _Child] = {}
        self._closed = False

    @property
    def running_children(self) -> List[int]:
        """
        The pids of libxl's children that have not been reaped yet.
        """
        return sorted(self._children)

    def child_forked(self, pid: int) -> None:
        """
        See L{IChildWatcher.child_forked}.  Never calls the sink.

        @raise TypeError, ValueError: C{pid} is not a positive int.
        """
        check_pid(pid)
        if self._thread.on_loop_thread():
            self._watch(pid)
        else:
            self._thread.call_from_thread(self._watch, pid)

    # -- loop thread -----------------------------------------------------

    def _watch(self, pid: int) -> None:
        if self._closed:
            self._log.warn("libxl forked child {pid} after close(); nobody will reap it", pid=pid)
            return
        if pid in self._children:
            self._log.error("libxl reported child {pid} twice; ignoring the second", pid=pid)
            return
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._lost(pid)
            return
        except Exception:
            self._log.failure("cannot watch libxl child {pid}", pid=pid)
            return
        child = _Child(pid, pidfd)
        try:
            self._loop.add_reader(pidfd, self._exited, child)
        except BaseException:
            os.close(pidfd)
            self._log.failure("cannot watch libxl child {pid}", pid=pid)
            return
        self._children[pid] = child

    def _exited(self, child: _Child) -> None:
        if self._children.get(child.pid) is not child:
            return
        try:
            status = child.wait()
        except ChildProcessError:
            self._forget(child)
            self._lost(child.pid)
            return
        except Exception:
            self._forget(child)
            self._log.failure("waiting for libxl child {pid} failed; libxl cannot be told",
                              pid=child.pid)
            return
        if status is None:  # readable but not exited: not expected, wait on
            return
        self._forget(child)
        try:
            self._sink.child_reaped(child.pid, status)
        except Exception:
            self._log.failure("child_reaped raised for libxl child {pid}", pid=child.pid)

    def _forget(self, child: _Child) -> None:
        del self._children[child.pid]
        self._loop.remove_reader(child.pidfd)
        os.close(child.pidfd)

    def _lost(self, pid: int) -> None:
        self._log.error(
            "libxl child {pid} was reaped by someone else (is SIGCHLD ignored, "
            "or does other code wait for all children?); libxl cannot be told",
            pid=pid,
        )

    # -- teardown --------------------------------------------------------

    def close(self) -> List[int]:
        """
        Stop reaping: stop reading every pidfd and close it.  Call on the
        loop's thread, after ``libxl_ctx_free``.

        The children not reaped yet are left alone: they keep running (or
        stay zombies) and nobody waits for them, until this process exits
        (or other code waits for them).  libxl has none in normal operation,
        because ``libxl_ctx_free`` is only legal once every async operation
        has completed.

        @return: the pids of the children left unreaped (logged as a
            warning when there are any).
        @raise RuntimeError: called off the loop's thread.
        """
        if not self._thread.on_loop_thread():
            raise RuntimeError("AsyncioChildReaper.close() must run on the asyncio loop thread")
        self._closed = True
        left = sorted(self._children)
        for child in list(self._children.values()):
            self._forget(child)
        if left:
            self._log.warn(
                "closing the libxl child reaper with children {pids} not reaped; "
                "they will not be reaped",
                pids=left,
            )
        return left
