"""
The control plane: the protocol (L{ControlServer} and L{ControlClient} on a
real Unix socket) and the host's ops (L{SimHost} on a MemoryReactorClock),
and the scenario runner that drives them.
"""
import json
import os
import socket
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from txlibxl.sim.control import ControlClient, ControlError, ControlServer
from txlibxl.sim.host import SimHost
from txlibxl.sim.hypervisor import ShutdownReason
from txlibxl.sim.scenario import Scenario, ScenarioError, ScenarioRunner
from txlibxl.sim.errors import BadRequest, Conflict, NoSuchDomain


class _SocketCase(TestCase):
    """A ControlServer for C{self.handlers} on a fresh socket."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ctl-")
        self.addCleanup(os.rmdir, self.dir)
        self.path = os.path.join(self.dir, "control.sock")
        self.waiting = defer.Deferred()
        self.handlers = {
            "echo": lambda **kw: kw,
            "add": lambda a, b: a + b,
            "wait": lambda: self.waiting,
            "refuse": self._refuse,
            "explode": self._explode,
        }
        self.port = reactor.listenUNIX(self.path, ControlServer(self.handlers))
        self.addCleanup(self.port.stopListening)

    @staticmethod
    def _refuse():
        raise Conflict("not now")

    @staticmethod
    def _explode():
        raise RuntimeError("boom")

    async def client(self) -> ControlClient:
        client = await ControlClient.connect(reactor, self.path)
        self.addCleanup(client.disconnect)
        return client

    async def raw(self, *lines: bytes, replies: int = 1):
        """Send raw lines on a plain socket; return the reply objects."""
        sock = socket.socket(socket.AF_UNIX)
        sock.setblocking(False)
        sock.connect(self.path)
        try:
            sock.sendall(b"".join(lines))
            data = b""
            while data.count(b"\n") < replies:
                await deferLater(0.01)
                try:
                    data += sock.recv(65536)
                except BlockingIOError:
                    pass
            return [json.loads(l) for l in data.splitlines()]
        finally:
            sock.close()


def deferLater(seconds: float) -> defer.Deferred:
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


class ProtocolTests(_SocketCase):
    async def test_a_call_returns_the_ops_result(self) -> None:
        client = await self.client()
        self.assertEqual(await client.call("add", a=2, b=3), 5)

    async def test_the_reply_echoes_the_request_id(self) -> None:
        [reply] = await self.raw(b'{"id": 41, "op": "add", "a": 1, "b": 1}\n')
        self.assertEqual(reply, {"id": 41, "ok": True, "result": 2})

    async def test_an_unknown_op_is_an_unknownop_error(self) -> None:
        client = await self.client()
        e = await self.assertFailure(client.call("fly"), ControlError)
        self.assertEqual(e.type, "UnknownOp")

    async def test_wrong_arguments_are_a_badrequest_error(self) -> None:
        client = await self.client()
        e = await self.assertFailure(client.call("add", a=1), ControlError)
        self.assertEqual(e.type, "BadRequest")

    async def test_a_refusal_names_its_error_class(self) -> None:
        client = await self.client()
        e = await self.assertFailure(client.call("refuse"), ControlError)
        self.assertEqual((e.type, e.message), ("Conflict", "not now"))

    async def test_an_unexpected_failure_is_an_internalerror(self) -> None:
        client = await self.client()
        e = await self.assertFailure(client.call("explode"), ControlError)
        self.assertEqual(e.type, "InternalError")
        self.flushLoggedErrors(RuntimeError)

    async def test_a_bad_line_gets_an_error_and_the_connection_stays(self) -> None:
        replies = await self.raw(b"not json\n", b'{"op": "add"}\n', b'{"id": 1, "op": "add", "a": 1, "b": 2}\n', replies=3)
        self.assertEqual([r["ok"] for r in replies], [False, False, True])
        self.assertEqual([r["id"] for r in replies], [None, None, 1])
        self.assertEqual(replies[0]["error"]["type"], "BadRequest")

    async def test_replies_of_waiting_ops_come_when_they_are_done(self) -> None:
        client = await self.client()
        slow = client.call("wait")
        self.assertEqual(await client.call("add", a=1, b=1), 2)
        self.assertFalse(slow.called)
        self.waiting.callback("late")
        self.assertEqual(await slow, "late")

    async def test_several_clients_are_served(self) -> None:
        a, b = await self.client(), await self.client()
        results = await defer.gatherResults([a.call("add", a=1, b=0), b.call("add", a=2, b=0)])
        self.assertEqual(results, [1, 2])

    async def test_pending_calls_fail_when_the_connection_is_lost(self) -> None:
        client = await self.client()
        slow = client.call("wait")
        await client.disconnect()
        await self.assertFailure(slow, ConnectionDone)
        self.waiting.callback(None)

    async def test_named_methods_send_their_ops(self) -> None:
        self.handlers["eject"] = lambda domid, vdev: [domid, vdev]
        self.handlers["destroy"] = lambda domids, mode, **kw: [domids, mode, kw]
        client = await self.client()
        self.assertEqual(await client.eject(3, "hdc"), [3, "hdc"])
        self.assertEqual(await client.destroy((1, 2), "rate", rate=5), [[1, 2], "rate", {"rate": 5}])


class _HostCase(TestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.host = SimHost(self.clock)
        self.addCleanup(self.assertReactorClean)
        self.addCleanup(self.host.close)

    def assertReactorClean(self) -> None:
        self.settle()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def settle(self, seconds: float = 0.0) -> None:
        self.clock.advance(seconds)
        for _ in range(50):
            if not any(c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls()):
                return
            self.clock.advance(0)


class CreateOpTests(_HostCase):
    def test_create_domain_returns_domid_uuid_and_name(self) -> None:
        result = self.host.create_domain(name="web1")
        self.assertEqual(sorted(result), ["domid", "name", "uuid"])
        self.assertEqual((result["domid"], result["name"]), (1, "web1"))

    def test_a_created_domain_runs_unless_asked_paused(self) -> None:
        running = self.host.create_domain(name="a")
        paused = self.host.create_domain(name="b", paused=True)
        self.assertEqual(self.host.info(domid=running["domid"])["state"], "running")
        self.assertEqual(self.host.info(domid=paused["domid"])["state"], "paused")

    def test_create_domains_names_them_after_the_prefix(self) -> None:
        self.host.create_domain(name="guest2")
        created = self.host.create_domains(count=3, vifs=1)
        self.assertEqual([d["name"] for d in created], ["guest1", "guest3", "guest4"])

    def test_a_later_create_domains_continues_the_numbering(self) -> None:
        self.host.create_domains(count=2)
        self.assertEqual([d["name"] for d in self.host.create_domains(count=1)], ["guest3"])

    def test_create_domains_checks_its_count_and_arguments(self) -> None:
        self.assertRaises(BadRequest, self.host.create_domains, count=0)
        self.assertRaises(BadRequest, self.host.create_domains, count="3")
        self.assertRaises(BadRequest, self.host.create_domains, count=2, name="x")

    def test_a_duplicate_name_is_a_conflict(self) -> None:
        self.host.create_domain(name="web1")
        self.assertRaises(Conflict, self.host.create_domain, name="web1")

    def test_a_destroyed_domains_name_is_free_again(self) -> None:
        domid = self.host.create_domain(name="web1")["domid"]
        self.host.destroy(domids=[domid])
        self.host.create_domain(name="web1")

    def test_list_shows_domain_0_and_every_domain(self) -> None:
        self.host.create_domain(name="web1", type="hvm")
        listed = self.host.list()
        self.assertEqual([(d["domid"], d["name"], d["type"]) for d in listed], [(0, "Domain-0", "pv"), (1, "web1", "hvm")])
        self.assertEqual(sorted(listed[1]), ["domid", "name", "shutdown_reason", "state", "type", "uuid"])


class LifecycleOpTests(_HostCase):
    def setUp(self) -> None:
        super().setUp()
        self.domid = self.host.create_domain(name="web1")["domid"]

    def test_shutdown_makes_the_guest_shut_down_with_the_reason(self) -> None:
        for i, reason in enumerate(("poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset")):
            domid = self.host.create_domain(name="g%d" % i)["domid"]
            info = self.host.shutdown(domid=domid, reason=reason)
            self.assertEqual((info["state"], info["shutdown_reason"]), ("shutdown", reason))
            self.assertEqual(self.host.hypervisor.get(domid).shutdown_reason, ShutdownReason[reason.upper()])

    def test_resume_after_suspend_runs_the_domain_again(self) -> None:
        self.host.shutdown(domid=self.domid, reason="suspend")
        info = self.host.resume(domid=self.domid)
        self.assertEqual((info["state"], info["shutdown_reason"]), ("running", None))
        self.assertEqual(self.host.shutdown(domid=self.domid, reason="suspend")["shutdown_reason"], "suspend")
        self.assertRaises(NoSuchDomain, self.host.resume, domid=4242)

    def test_an_unknown_reason_is_a_bad_request(self) -> None:
        self.assertRaises(BadRequest, self.host.shutdown, domid=self.domid, reason="explode")

    def test_crash_pause_and_unpause(self) -> None:
        self.assertEqual(self.host.pause(domid=self.domid)["state"], "paused")
        self.assertEqual(self.host.unpause(domid=self.domid)["state"], "running")
        self.assertEqual(self.host.crash(domid=self.domid)["shutdown_reason"], "crash")

    def test_unpausing_a_running_domain_is_a_conflict(self) -> None:
        self.assertRaises(Conflict, self.host.unpause, domid=self.domid)

    def test_ops_on_a_missing_domain_are_nosuchdomain(self) -> None:
        for op in (self.host.crash, self.host.pause, self.host.info):
            self.assertRaises(NoSuchDomain, op, domid=99)
        self.assertRaises(NoSuchDomain, self.host.eject, domid=99, vdev="hdc")

    def test_a_domid_must_be_an_integer(self) -> None:
        self.assertRaises(BadRequest, self.host.crash, domid="1")

    def test_eject_writes_the_eject_node(self) -> None:
        domid = self.host.create_domain(name="cd", disks=[{"vdev": "hdc", "cdrom": True}])["domid"]
        self.host.eject(domid=domid, vdev="hdc")
        self.assertEqual(self.host.store.read("/local/domain/%d/device/vbd/5632/eject" % domid), b"eject")


class DestroyOpTests(_HostCase):
    def setUp(self) -> None:
        super().setUp()
        self.domids = [d["domid"] for d in self.host.create_domains(count=3, disks=[{"vdev": "xvda"}], vifs=1)]
        self.changes = []
        self.host.hypervisor.subscribe(lambda domain, what: self.changes.append((domain.domid, what.value)))
        self.releases = []
        self.host.store.watch("@releaseDomain", lambda path: self.releases.append(self.alive()))
        self.settle()
        self.releases.clear()

    def alive(self):
        return [d["domid"] for d in self.host.list()]

    def test_burst_destroys_all_before_any_release_is_seen(self) -> None:
        self.assertEqual(self.host.destroy(domids=self.domids), self.domids)
        self.assertEqual(self.alive(), [0])
        self.settle()
        # xenstored fires @releaseDomain once per released domain; every
        # watcher's first look already finds them all gone.
        self.assertEqual(self.releases, [[0], [0], [0]])

    def test_destroy_removes_the_domains_trees(self) -> None:
        self.host.destroy(domids=self.domids)
        store = self.host.store
        self.assertEqual(store.directory("/local/domain"), ["0"])
        self.assertEqual(store.directory("/libxl"), [])
        self.assertEqual(store.directory("/vm"), [])
        self.assertFalse(store.exists("/local/domain/0/backend/vbd"))

    def test_lockstep_destroys_one_after_the_others_release_was_sent(self) -> None:
        done = self.host.destroy(domids=self.domids, mode="lockstep")
        self.assertEqual(self.alive(), [0, self.domids[1], self.domids[2]])
        self.settle()
        self.assertEqual(self.successResultOf(done), self.domids)
        self.assertEqual(self.alive(), [0])
        # Each release was seen before the next domain died.
        self.assertEqual(self.releases, [[0, self.domids[1], self.domids[2]], [0, self.domids[2]], [0]])

    def test_rate_destroys_so_many_per_second(self) -> None:
        done = self.host.destroy(domids=self.domids, mode="rate", rate=2)
        self.assertEqual(len(self.alive()), 3)
        self.settle(0.5)
        self.assertEqual(len(self.alive()), 2)
        self.settle(0.5)
        self.assertEqual(self.successResultOf(done), self.domids)

    def test_a_domain_that_died_meanwhile_is_skipped(self) -> None:
        done = self.host.destroy(domids=self.domids, mode="rate", rate=1)
        self.host.hypervisor.destroy(self.domids[1])
        self.settle(1)
        self.settle(1)
        self.assertEqual(self.successResultOf(done), [self.domids[0], self.domids[2]])

    def test_bad_destroy_requests_change_nothing(self) -> None:
        for args in (
            {"domids": []},
            {"domids": self.domids, "mode": "slowly"},
            {"domids": self.domids, "mode": "rate"},
            {"domids": self.domids, "mode": "burst", "rate": 3},
            {"domids": [self.domids[0], "x"]},
        ):
            self.assertRaises(BadRequest, self.host.destroy, **args)
        self.assertRaises(NoSuchDomain, self.host.destroy, domids=[self.domids[0], 77])
        self.assertRaises(Conflict, self.host.destroy, domids=[0])
        self.assertEqual(len(self.alive()), 4)

    def test_closing_the_host_cancels_a_running_destroy(self) -> None:
        done = self.host.destroy(domids=self.domids, mode="rate", rate=0.1)
        self.host.close()
        self.failureResultOf(done, defer.CancelledError)


class FaultOpTests(_HostCase):
    def setUp(self) -> None:
        super().setUp()
        self.domid = self.host.create_domain(name="web1", disks=[{"vdev": "xvda"}])["domid"]
        self.settle()

    def request_poweroff(self) -> None:
        self.host.store.write("/local/domain/%d/control/shutdown" % self.domid, b"poweroff")
        self.settle()

    def test_guest_ignore_shutdown(self) -> None:
        self.host.fault(kind="guest_ignore_shutdown", domid=self.domid)
        self.request_poweroff()
        self.settle(100)
        self.assertEqual(self.host.info(domid=self.domid)["state"], "running")

    def test_guest_delay(self) -> None:
        self.host.fault(kind="guest_delay", domid=self.domid, seconds=2)
        self.request_poweroff()
        self.assertEqual(self.host.info(domid=self.domid)["state"], "running")
        self.settle(2)
        self.assertEqual(self.host.info(domid=self.domid)["shutdown_reason"], "poweroff")

    def test_slow_backend_and_clear(self) -> None:
        self.host.fault(kind="slow_backend", seconds=4)
        self.assertEqual(self.host.agents.backends.close_delay, 4)
        self.host.fault(kind="clear")
        self.assertEqual(self.host.agents.backends.close_delay, 0)

    def test_bad_faults_are_bad_requests(self) -> None:
        self.assertRaises(BadRequest, self.host.fault, kind="meteor")
        self.assertRaises(BadRequest, self.host.fault, kind="slow_backend")
        self.assertRaises(BadRequest, self.host.fault, kind="slow_backend", seconds=-1)
        self.assertRaises(BadRequest, self.host.fault, kind="guest_delay", domid=self.domid, seconds=1, extra=2)
        self.assertRaises(NoSuchDomain, self.host.fault, kind="guest_ignore_shutdown", domid=99)

    def test_xenstored_faults_need_a_running_xenstored(self) -> None:
        self.assertRaises(Conflict, self.host.fault, kind="xenstored_stall", seconds=1)
        self.assertRaises(Conflict, self.host.fault, kind="xenstored_die")
        self.assertRaises(Conflict, self.host.fault, kind="xenstored_restart")

    def test_stop_replies_then_asks_the_process_to_exit(self) -> None:
        self.assertEqual(self.host.stop(), "stopping")
        self.assertFalse(self.host.stop_requested.called)
        self.settle()
        self.assertTrue(self.host.stop_requested.called)


class ScenarioTests(_HostCase):
    def run_scenario(self, data):
        runner = ScenarioRunner(self.clock, self.host.call)
        return runner, runner.run(Scenario.from_dict(data))

    def test_steps_run_at_their_time_and_resolve_domain_names(self) -> None:
        runner, done = self.run_scenario(
            {
                "name": "t",
                "steps": [
                    {"at": 0, "op": "create_domain", "name": "web1"},
                    {"at": 2, "op": "crash", "domain": "web1"},
                    {"at": 3, "op": "destroy", "domains": ["web1"]},
                ],
            }
        )
        self.settle()
        domid = runner.names["web1"]
        self.assertEqual(self.host.info(domid=domid)["state"], "running")
        self.settle(2)
        self.assertEqual(self.host.info(domid=domid)["state"], "shutdown")
        self.settle(1)
        self.assertEqual(self.successResultOf(done)[-1], [domid])

    def test_create_domains_results_are_learnt_too(self) -> None:
        runner, done = self.run_scenario({"steps": [{"at": 0, "op": "create_domains", "count": 2, "prefix": "n"}]})
        self.settle()
        self.assertEqual(sorted(runner.names), ["n1", "n2"])
        self.successResultOf(done)

    def test_a_failing_step_stops_the_run(self) -> None:
        _, done = self.run_scenario(
            {"steps": [{"at": 0, "op": "crash", "domid": 42}, {"at": 1, "op": "create_domain", "name": "x"}]}
        )
        self.settle(2)
        failure = self.failureResultOf(done, ScenarioError)
        self.assertIn("step 0 (crash)", str(failure.value))
        self.assertEqual(len(self.host.list()), 1)

    def test_an_unknown_domain_name_fails_the_step(self) -> None:
        _, done = self.run_scenario({"steps": [{"at": 0, "op": "crash", "domain": "ghost"}]})
        self.settle()
        self.failureResultOf(done, ScenarioError)

    def test_malformed_scenarios_are_refused(self) -> None:
        for data in ([], {"steps": {}}, {"steps": [{"op": "ping"}]}, {"steps": [{"at": -1, "op": "ping"}]},
                     {"steps": [{"at": 0}]}, {"steps": [{"at": 0, "op": "crash", "domain": 3}]}):
            self.assertRaises(ScenarioError, Scenario.from_dict, data)

    def test_the_shipped_demo_scenario_plays_to_the_end(self) -> None:
        from txlibxl.sim.scenario import load

        path = os.path.join(os.path.dirname(__import__("txlibxl.sim").sim.__file__), "scenarios", "demo.json")
        runner = ScenarioRunner(self.clock, self.host.call)
        done = runner.run(load(path))
        self.settle(10)
        self.successResultOf(done)
        self.assertEqual([d["domid"] for d in self.host.list()], [0])
