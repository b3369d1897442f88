"""
A simulated host, and any child it starts, die with their parent, even a
parent killed with SIGKILL that never stopped them.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import List

from twisted.trial.unittest import TestCase

from txlibxl.sim.lifeline import dying_with_this_process

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _gone(pid: int) -> bool:
    """Whether C{pid} has exited (a zombie nobody reaped counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def _environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (CHECKOUT, env.get("PYTHONPATH")) if p)
    for name in ("LD_PRELOAD", "XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT"):
        env.pop(name, None)
    return env


class DieWithParentTests(TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="txlx-lifeline-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.pids: List[int] = []
        self.addCleanup(self._kill_leftovers)

    def _kill_leftovers(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def _parent_of(self, code: str) -> "tuple[subprocess.Popen, int]":
        """
        A parent process running C{code}, which starts a child and prints
        its pid; the parent then sleeps until it is killed.
        """
        parent = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, env=_environment(), cwd=self.tmp
        )
        self.addCleanup(parent.wait)
        self.pids.append(parent.pid)
        line = parent.stdout.readline()
        parent.stdout.close()
        child = int(line)
        self.pids.append(child)
        return parent, child

    def test_a_host_exits_when_its_parent_is_killed(self) -> None:
        rundir = os.path.join(self.tmp, "host")
        parent, host = self._parent_of(
            "import os, subprocess, sys, time\n"
            "host = subprocess.Popen([sys.executable, '-m', 'txlibxl.sim', 'run', '--rundir', %r,"
            " '--parent-pid', str(os.getpid())], stdout=subprocess.PIPE)\n"
            "assert host.stdout.readline().startswith(b'txlibxl-sim ready ')\n"
            "print(host.pid, flush=True)\n"
            "time.sleep(120)\n" % rundir
        )
        self.assertFalse(_gone(host))
        parent.kill()
        self.assertTrue(_wait_gone(host, 10), "the host outlived its parent")
        # It stopped as on SIGTERM: its sockets are gone.
        for _ in range(100):
            if not os.path.exists(os.path.join(rundir, "control.sock")):
                break
            time.sleep(0.05)
        self.assertFalse(os.path.exists(os.path.join(rundir, "control.sock")))

    def test_a_child_started_through_the_lifeline_dies_with_the_process_that_started_it(self) -> None:
        parent, child = self._parent_of(
            "import subprocess, time\n"
            "from txlibxl.sim.lifeline import dying_with_this_process\n"
            "child = subprocess.Popen(dying_with_this_process(['sleep', '120']))\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(120)\n"
        )
        time.sleep(0.5)  # the child has exec'd sleep
        self.assertFalse(_gone(child))
        parent.kill()
        self.assertTrue(_wait_gone(child, 10), "the child outlived the process that started it")

    def test_a_child_whose_parent_is_already_gone_exits_at_once(self) -> None:
        # Started by this process but told another parent: as if that
        # parent had died before the child could set its death signal.
        argv = dying_with_this_process(["sleep", "120"])
        argv[3] = str(os.getppid())
        child = subprocess.Popen(argv, env=_environment())
        self.pids.append(child.pid)
        self.assertEqual(child.wait(timeout=30), 1)
