"""
The simulated host, and whatever it starts, die with their parent.

A host started for a test or for ``twistd libxl-events --simulate`` must
not outlive the process that started it, even when that process is killed
with ``SIGKILL`` (a timeout, the OOM killer, ``kill -9``) and never gets to
stop it.

* :func:`die_with_parent`: called by the host process as it starts
  (``python -m txlibxl.sim run --parent-pid PID``).  It asks Linux to send
  the host ``SIGTERM`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``,
  so the host shuts down as on any ``SIGTERM``: sockets removed), then
  checks that the parent is still the one it was started by: if the
  parent died before the ``prctl``, the host has already been reparented
  and exits at once.  Where ``prctl`` is not available it polls
  ``getppid()`` every second instead.
* :func:`dying_with_this_process`: the command line for a child the host
  starts (a helper script, a stand-in process): it runs ``python -m
  txlibxl.sim.lifeline PID SIGNAL -- ARGV...``, which does the same for
  the child (with ``SIGKILL`` by default) and then ``exec``\\ s C{ARGV}: the
  death signal survives ``execve``.

Linux sends the death signal when the *thread* that forked the child ends,
not only the process: start children from the reactor's thread.
"""
import ctypes
import ctypes.util
import os
import signal
import sys
from typing import Any, Callable, List, Optional, Sequence

__all__ = ["die_with_parent", "dying_with_this_process", "set_death_signal", "main"]

#: From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


def set_death_signal(signum: int) -> bool:
    """
    ``prctl(PR_SET_PDEATHSIG, signum)`` for this process; C{False} if the
    system has no such call (not Linux) or refused it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(
    parent_pid: int,
    signum: int = signal.SIGTERM,
    reactor: Any = None,
    exit: Callable[[int], None] = os._exit,
) -> bool:
    """
    End this process (with C{signum}) when C{parent_pid}, its parent, ends.

    :param reactor: an ``IReactorTime`` for the fallback poll, used only
        where the death signal cannot be set; without one there is no
        fallback.
    :param exit: how to exit if the parent is already gone (with status 1).
    :returns: whether the death signal was set.
    """
    armed = set_death_signal(signum)
    # The parent may have died before the prctl: then we already have
    # another parent (init or a subreaper) and no signal will come.
    if os.getppid() != parent_pid:
        exit(1)
        return armed
    if not armed and reactor is not None:
        from twisted.internet.task import LoopingCall

        def check() -> None:
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signum)

        poll = LoopingCall(check)
        poll.clock = reactor
        poll.start(1.0, now=False)
    return armed


def dying_with_this_process(argv: Sequence[str], signum: int = signal.SIGKILL) -> List[str]:
    """
    The command line that runs C{argv} as a child that dies (with
    C{signum}) when this process does.  Spawn it from this process (the
    reactor's thread): the child checks that this process is its parent.
    """
    if not argv:
        raise ValueError("no command to run")
    return [sys.executable, "-m", "txlibxl.sim.lifeline", str(os.getpid()), str(int(signum)), "--", *argv]


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m txlibxl.sim.lifeline PARENT_PID SIGNAL -- ARGV...``"""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        parent_pid, signum = int(args[0]), int(args[1])
        if args[2] != "--" or len(args) < 4:
            raise ValueError
    except (IndexError, ValueError):
        sys.stderr.write("usage: python -m txlibxl.sim.lifeline PARENT_PID SIGNAL -- COMMAND [ARG...]\n")
        raise SystemExit(2)
    command = args[3:]
    die_with_parent(parent_pid, signum)
    try:
        os.execvp(command[0], command)
    except OSError as e:
        sys.stderr.write("cannot run %s: %s\n" % (command[0], e.strerror))
        raise SystemExit(127)


if __name__ == "__main__":
    main()
