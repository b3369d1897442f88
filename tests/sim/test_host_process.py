"""
The host process contract (``notes/sim-host-protocol.md``): ``python -m
txlibxl.sim run`` spawned for real, its ready line and ``host.json``, its
control socket, its exits, the ``ctl`` and ``scenario`` sub-commands, and
the xenstored faults as seen from outside.
"""
import json
import os
import shutil
import signal
import sys
import tempfile
from typing import Any, Dict, List, Optional

from twisted.internet import defer, error, reactor, task, utils
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SkipTest, TestCase

from txlibxl.sim.control import ControlClient, ControlError
from txlibxl.sim.host_process import READY_PREFIX, shim_path

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _environment() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    for name in ("LD_PRELOAD", "XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT"):
        env.pop(name, None)
    return env


class _HostProcess(ProcessProtocol):
    """The spawned host: its stdout lines, stderr, and how it ended."""

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.stderr = b""
        self._buffer = b""
        self.ready: defer.Deferred = defer.Deferred()
        self.ended: defer.Deferred = defer.Deferred()
        self.status: Optional[int] = None

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self.lines.append(line.decode())
            if line.startswith(READY_PREFIX.encode()) and not self.ready.called:
                self.ready.callback(line[len(READY_PREFIX):].decode())

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-20000:]

    def processEnded(self, reason) -> None:
        self.status = getattr(reason.value, "exitCode", None)
        if not self.ready.called:
            self.ready.errback(RuntimeError("host exited before it was ready:\n" + self.stderr.decode(errors="replace")))
        self.ended.callback(self.status)

    def kill(self) -> defer.Deferred:
        if self.status is None and not self.ended.called:
            try:
                self.transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass
        return self.ended


def _timeout(d: defer.Deferred, seconds: float) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


class _Case(TestCase):
    timeout = 60

    def setUp(self) -> None:
        if shim_path() is None:
            raise SkipTest("the xc_* shim is not built (pip install --no-build-isolation -e .)")
        self.rundir = tempfile.mkdtemp(prefix="sim-host-")
        self.addCleanup(shutil.rmtree, self.rundir, True)

    async def spawn(self, *extra: str) -> Dict[str, Any]:
        """Start a host in C{self.rundir}; return its host.json."""
        self.proc = _HostProcess()
        args = [sys.executable, "-m", "txlibxl.sim", "run", "--rundir", self.rundir] + list(extra)
        reactor.spawnProcess(self.proc, sys.executable, args, env=_environment(), path=self.rundir)
        self.addCleanup(self.proc.kill)
        path = await _timeout(self.proc.ready, 30)
        with open(path) as f:
            self.info = json.load(f)
        return self.info

    async def client(self) -> ControlClient:
        client = await ControlClient.connect(reactor, self.info["control"])
        self.addCleanup(client.disconnect)
        return client

    async def cli(self, *args: str):
        """Run ``python -m txlibxl.sim ARGS``: (stdout, stderr, status)."""
        return await utils.getProcessOutputAndValue(
            sys.executable, ["-m", "txlibxl.sim"] + list(args), env=_environment(), path=self.rundir
        )

    async def xenstore(self, tool: str, *args: str):
        path = shutil.which(tool)
        if path is None:
            raise SkipTest("%s is not installed (xenstore-utils)" % tool)
        env = _environment()
        env["XENSTORED_PATH"] = self.info["xenstored"]
        return await utils.getProcessOutputAndValue(path, list(args), env=env)


class StartTests(_Case):
    async def test_the_host_prints_exactly_one_ready_line_naming_host_json(self) -> None:
        await self.spawn()
        self.assertEqual(self.proc.lines, [READY_PREFIX + os.path.join(self.rundir, "host.json")])

    async def test_host_json_names_the_sockets_the_shim_and_the_root(self) -> None:
        info = await self.spawn()
        self.assertEqual(info["version"], 1)
        self.assertEqual(info["pid"], self.proc.transport.pid)
        self.assertEqual(info["rundir"], self.rundir)
        for key in ("xenstored", "hypercall", "control"):
            self.assertEqual(info[key], os.path.join(self.rundir, key + ".sock"))
            self.assertTrue(os.path.exists(info[key]), key)
        self.assertEqual(info["shim"], shim_path())
        self.assertEqual(info["root"], os.path.join(self.rundir, "root"))
        self.assertTrue(os.path.isdir(os.path.join(info["root"], "var", "run", "xen")))

    async def test_the_control_socket_answers(self) -> None:
        await self.spawn()
        client = await self.client()
        self.assertEqual(await client.ping(), "pong")
        created = await client.create_domain("web1", vifs=1)
        self.assertEqual([d["name"] for d in await client.list()], ["Domain-0", "web1"])
        self.assertEqual((await client.info(created["domid"]))["state"], "running")

    async def test_the_xenstored_socket_serves_domain_0_and_created_domains(self) -> None:
        await self.spawn()
        client = await self.client()
        created = await client.create_domain("web1")
        out, err, status = await self.xenstore("xenstore-read", "/local/domain/0/name", "/local/domain/%d/name" % created["domid"])
        self.assertEqual((out.split(), status), ([b"Domain-0", b"web1"], 0), err)

    async def test_a_scenario_given_at_start_is_played(self) -> None:
        scenario = os.path.join(self.rundir, "s.json")
        with open(scenario, "w") as f:
            json.dump({"name": "s", "steps": [{"at": 0, "op": "create_domain", "name": "from-scenario"}]}, f)
        await self.spawn("--scenario", scenario)
        client = await self.client()
        for _ in range(100):
            names = [d["name"] for d in await client.list()]
            if "from-scenario" in names:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertIn("from-scenario", names)

    async def test_a_missing_scenario_file_makes_the_host_fail_to_start(self) -> None:
        self.proc = _HostProcess()
        args = [sys.executable, "-m", "txlibxl.sim", "run", "--rundir", self.rundir, "--scenario", "/nonexistent.json"]
        reactor.spawnProcess(self.proc, sys.executable, args, env=_environment(), path=self.rundir)
        self.addCleanup(self.proc.kill)
        await self.assertFailure(_timeout(self.proc.ready, 30), RuntimeError)
        self.assertNotEqual(await self.proc.ended, 0)


class StopTests(_Case):
    def assertSocketsRemoved(self) -> None:
        for key in ("xenstored", "hypercall", "control"):
            self.assertFalse(os.path.exists(self.info[key]), key)

    async def test_the_stop_op_replies_then_the_host_exits_0(self) -> None:
        await self.spawn()
        client = await self.client()
        self.assertEqual(await client.stop(), "stopping")
        self.assertEqual(await _timeout(self.proc.ended, 30), 0)
        self.assertSocketsRemoved()

    async def test_sigterm_makes_the_host_exit_0(self) -> None:
        await self.spawn()
        client = await self.client()
        await client.create_domain("web1", disks=[{"vdev": "xvda"}])
        self.proc.transport.signalProcess(signal.SIGTERM)
        self.assertEqual(await _timeout(self.proc.ended, 30), 0, self.proc.stderr.decode(errors="replace"))
        self.assertSocketsRemoved()

    async def test_sigint_makes_the_host_exit_0(self) -> None:
        await self.spawn()
        self.proc.transport.signalProcess(signal.SIGINT)
        self.assertEqual(await _timeout(self.proc.ended, 30), 0)
        self.assertSocketsRemoved()


class CliTests(_Case):
    async def test_ctl_sends_one_op_and_prints_its_json_result(self) -> None:
        await self.spawn()
        out, err, status = await self.cli("ctl", "--rundir", self.rundir, "create_domain", "name=web1", "vifs=2")
        self.assertEqual(status, 0, err)
        self.assertEqual(json.loads(out)["name"], "web1")
        out, err, status = await self.cli("ctl", "--rundir", self.rundir, "list")
        self.assertEqual([d["name"] for d in json.loads(out)], ["Domain-0", "web1"])

    async def test_ctl_reports_a_refused_op_on_stderr_with_status_1(self) -> None:
        await self.spawn()
        out, err, status = await self.cli("ctl", "--rundir", self.rundir, "info", "domid=42")
        self.assertEqual((out, status), (b"", 1))
        self.assertIn(b"NoSuchDomain", err)

    async def test_ctl_without_a_running_host_says_so(self) -> None:
        out, err, status = await self.cli("ctl", "--rundir", self.rundir, "ping")
        self.assertNotEqual(status, 0)
        self.assertIn(b"no running host", err)

    async def test_scenario_plays_a_file_against_a_running_host(self) -> None:
        await self.spawn()
        scenario = os.path.join(self.rundir, "s.json")
        with open(scenario, "w") as f:
            json.dump({"steps": [{"at": 0, "op": "create_domain", "name": "a"}, {"at": 0, "op": "crash", "domain": "a"}]}, f)
        out, err, status = await self.cli("scenario", "--rundir", self.rundir, scenario)
        self.assertEqual(status, 0, err)
        client = await self.client()
        self.assertEqual([d["state"] for d in await client.list()], ["running", "shutdown"])


class XenstoredFaultTests(_Case):
    async def test_xenstored_die_closes_the_socket_and_restart_reopens_it(self) -> None:
        await self.spawn()
        client = await self.client()
        await client.fault("xenstored_die")
        self.assertFalse(os.path.exists(self.info["xenstored"]))
        self.assertEqual(await client.ping(), "pong")
        await client.fault("xenstored_restart")
        out, err, status = await self.xenstore("xenstore-read", "/local/domain/0/name")
        self.assertEqual((out.strip(), status), (b"Domain-0", 0), err)

    async def test_a_stalled_xenstored_answers_once_the_fault_is_cleared(self) -> None:
        await self.spawn()
        client = await self.client()
        await client.fault("xenstored_stall", seconds=60)
        reading = self.xenstore("xenstore-read", "/local/domain/0/name")
        reading = defer.ensureDeferred(reading)
        await task.deferLater(reactor, 0.5, lambda: None)
        self.assertFalse(reading.called)
        await client.fault("clear")
        out, err, status = await _timeout(reading, 30)
        self.assertEqual((out.strip(), status), (b"Domain-0", 0), err)

    async def test_an_unknown_fault_is_a_bad_request(self) -> None:
        await self.spawn()
        client = await self.client()
        e = await self.assertFailure(client.fault("meteor"), ControlError)
        self.assertEqual(e.type, "BadRequest")
