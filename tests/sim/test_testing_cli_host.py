"""
:func:`txlibxl.testing.use_simulated_host` given a run directory: this
process's libxl pointed at a simulated host that another process started
with the CLI (``python -m txlibxl.sim run --rundir DIR``), and driven with
the CLI's ``ctl``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List

from twisted.internet import defer, reactor, task, utils
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SkipTest, TestCase

from txlibxl import testing
from txlibxl.testing import SimulatedHostUnavailable, simhost

READY = b"txlibxl-sim ready "


class _CliHost(ProcessProtocol):
    """``python -m txlibxl.sim run``: its ready line, and its end."""

    def __init__(self) -> None:
        self.ready: defer.Deferred = defer.Deferred()
        self.ended: defer.Deferred = defer.Deferred()
        self.out = b""
        self.err = b""

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if READY in self.out and b"\n" in self.out.split(READY, 1)[1] and not self.ready.called:
            self.ready.callback(self.out.split(READY, 1)[1].split(b"\n", 1)[0].decode())

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError("the CLI host ended before it was ready: %s" % self.err[-2000:]))
        self.ended.callback(reason.value)


def _cli_environment() -> Dict[str, str]:
    """This process's environment for the CLI, without any pointer at a host."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (simhost._package_parent(), env.get("PYTHONPATH")) if p)
    return env


class CliHostTests(TestCase):
    timeout = 90

    async def start_cli_host(self) -> str:
        """A host started with the CLI as its own process; its run directory."""
        # Short: the run directory's socket paths must fit a Unix address.
        rundir = tempfile.mkdtemp(prefix="txsim-cli-")
        proto = _CliHost()
        # --parent-pid: the host goes if this test process is killed.
        reactor.spawnProcess(proto, sys.executable,
                             [sys.executable, "-m", "txlibxl.sim", "run", "--rundir", rundir,
                              "--parent-pid", str(os.getpid())],
                             env=_cli_environment(), path=rundir)
        self.addCleanup(self.stop_cli_host, proto, rundir)
        path = await proto.ready
        self.assertEqual(path, os.path.join(rundir, "host.json"))
        return rundir

    async def stop_cli_host(self, proto: _CliHost, rundir: str) -> None:
        if not proto.ended.called:
            try:
                await self.ctl(rundir, "stop")
            except AssertionError:
                pass  # it may close the connection before answering
            ended = proto.ended
            timer = reactor.callLater(10, lambda: proto.ended.called or proto.transport.signalProcess("KILL"))
            await ended
            if timer.active():
                timer.cancel()
        shutil.rmtree(rundir, ignore_errors=True)

    async def ctl(self, rundir: str, op: str, *args: str) -> Any:
        """``python -m txlibxl.sim ctl``'s JSON answer."""
        out, err, code = await utils.getProcessOutputAndValue(
            sys.executable, ["-m", "txlibxl.sim", "ctl", "--rundir", rundir, op, *args], env=_cli_environment())
        if code != 0:
            raise AssertionError("ctl %s failed (%s): %s" % (op, code, err.decode(errors="replace")))
        return json.loads(out) if out.strip() else None

    def point_at(self, where: Any) -> None:
        try:
            undo = testing.use_simulated_host(where)
        except SimulatedHostUnavailable as e:
            if "is not running" in str(e) or "no simulated host" in str(e):
                raise
            raise SkipTest(str(e))
        self.addCleanup(undo)

    def context(self) -> Any:
        from txlibxl.context import Context

        ctx = Context(reactor)
        self.addCleanup(ctx.close)
        return ctx

    async def test_libxl_here_drives_a_host_the_cli_started_by_its_run_directory(self) -> None:
        rundir = await self.start_cli_host()
        self.point_at(rundir)
        with open(os.path.join(rundir, "host.json")) as f:
            info = json.load(f)
        self.assertEqual(os.environ["XENSTORED_PATH"], info["xenstored"])
        ctx = self.context()
        self.assertEqual([d.name for d in ctx.list_domains()], ["Domain-0"])
        # The CLI makes a domain, libxl here sees it and destroys it, and
        # the CLI sees it gone.
        made = await self.ctl(rundir, "create_domain", "name=web1")
        self.assertEqual([d.name for d in ctx.list_domains()], ["Domain-0", "web1"])
        watch = ctx.watch_domain(made["domid"])
        await ctx.destroy(made["domid"])
        death = await watch.when_dead()
        self.assertEqual(death.domid, made["domid"])
        listed: List[Any] = await self.ctl(rundir, "list")
        self.assertEqual([d["name"] for d in listed], ["Domain-0"])

    async def test_its_host_json_names_the_host_too(self) -> None:
        rundir = await self.start_cli_host()
        self.point_at(os.path.join(rundir, "host.json"))
        self.assertEqual([d.domid for d in self.context().list_domains()], [0])

    async def test_a_run_directory_whose_host_has_stopped_is_refused(self) -> None:
        rundir = await self.start_cli_host()
        with open(os.path.join(rundir, "host.json")) as f:
            pid = json.load(f)["pid"]
        await self.ctl(rundir, "stop")
        while True:  # the host is gone once its pid is
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        before = {name: os.environ.get(name) for name in ("XENSTORED_PATH", "TXLIBXL_SIM_ROOT")}
        with self.assertRaises(SimulatedHostUnavailable) as caught:
            testing.use_simulated_host(rundir)
        self.assertIn("is not running", str(caught.exception))
        self.assertEqual({name: os.environ.get(name) for name in before}, before)

    def test_a_directory_with_no_host_is_refused(self) -> None:
        empty = self.mktemp()
        os.makedirs(empty)
        with self.assertRaises(SimulatedHostUnavailable) as caught:
            testing.use_simulated_host(empty)
        self.assertIn("no simulated host at", str(caught.exception))

    def test_something_that_is_neither_a_host_nor_a_path_is_a_type_error(self) -> None:
        self.assertRaises(TypeError, testing.use_simulated_host, 42)

