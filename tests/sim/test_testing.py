"""
The trial fixtures of :mod:`txlibxl.testing`: starting, stopping and using
a simulated host.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any, List

from twisted.internet import defer, reactor, task, utils
from twisted.trial.unittest import SkipTest, TestCase

from txlibxl import testing
from txlibxl.testing import simhost
from txlibxl.testing import (
    SimulatedHost,
    SimulatedHostStartError,
    SimulatedHostTestCase,
    SimulatedHostTimeout,
    SimulatedHostUnavailable,
    start_simulated_host,
)


async def started(test: TestCase, **kw: Any) -> SimulatedHost:
    """A host for this test (skipped if the simulator is missing), stopped in cleanup."""
    try:
        host = await start_simulated_host(reactor, **kw)
    except SimulatedHostUnavailable as e:
        raise SkipTest(str(e))
    test.addCleanup(host.stop)
    return host


async def names_eventually(host: SimulatedHost, name: str, tries: int = 100) -> List[str]:
    """The host's domain names, once C{name} is among them (or after C{tries} polls)."""
    for _ in range(tries):
        names = [d["name"] for d in await host.control.list()]
        if name in names:
            break
        await task.deferLater(reactor, 0.05, lambda: None)
    return names


class StartTests(TestCase):
    timeout = 60

    async def test_a_started_host_answers_on_its_control_socket(self) -> None:
        host = await started(self)
        self.assertEqual(await host.control.ping(), "pong")

    async def test_a_started_host_lists_domain0(self) -> None:
        host = await started(self)
        domains = await host.control.list()
        self.assertEqual([(d["domid"], d["name"]) for d in domains], [(0, "Domain-0")])

    async def test_info_is_the_hosts_host_json_and_names_sockets_in_the_rundir(self) -> None:
        host = await started(self)
        self.assertEqual(host.info["rundir"], host.rundir)
        for key in ("xenstored", "hypercall", "control"):
            self.assertEqual(os.path.dirname(host.info[key]), host.rundir)
            self.assertTrue(os.path.exists(host.info[key]), key)
        self.assertTrue(os.path.isfile(host.info["shim"]))

    async def test_environment_names_the_xenstored_the_hypercall_socket_and_the_root(self) -> None:
        host = await started(self)
        self.assertEqual(
            host.environment(),
            {
                "XENSTORED_PATH": host.info["xenstored"],
                "TXLIBXL_SIM_HYPERCALL": host.info["hypercall"],
                "TXLIBXL_SIM_ROOT": host.info["root"],
            },
        )

    async def test_environment_with_preload_puts_the_shim_first_in_ld_preload(self) -> None:
        host = await started(self)
        env = host.environment(preload=True)
        self.assertEqual(env["LD_PRELOAD"].split()[0], host.shim)

    async def test_a_host_not_ready_in_time_is_killed_and_reported(self) -> None:
        try:
            d = start_simulated_host(reactor, timeout=1e-6)
        except SimulatedHostUnavailable as e:
            raise SkipTest(str(e))
        error = await self.assertFailure(d, SimulatedHostTimeout)
        self.assertIn("killed", str(error))

    async def test_a_host_that_exits_at_start_is_reported_with_its_stderr(self) -> None:
        scenario = self.mktemp() + ".json"
        with open(scenario, "w") as f:
            f.write("this is not a scenario")
        try:
            d = start_simulated_host(reactor, scenario=scenario)
        except SimulatedHostUnavailable as e:
            raise SkipTest(str(e))
        error = await self.assertFailure(d, SimulatedHostStartError)
        self.assertIn("exited", str(error))
        self.assertTrue(error.stderr_tail, "no stderr in the error")

    async def test_a_host_plays_the_scenario_it_was_given(self) -> None:
        scenario = self.mktemp() + ".json"
        with open(scenario, "w") as f:
            json.dump({"name": "one", "steps": [{"at": 0, "op": "create_domain", "name": "from-scenario"}]}, f)
        host = await started(self, scenario=scenario)
        self.assertIn("from-scenario", await names_eventually(host, "from-scenario"))

    async def test_a_shipped_scenario_is_found_by_name(self) -> None:
        host = await started(self, scenario="demo")
        self.assertIn("web1", await names_eventually(host, "web1"))

    async def test_cancelling_the_start_kills_the_host_and_removes_its_rundir(self) -> None:
        # A private temporary directory, to see what the fixture leaves.
        private = tempfile.mkdtemp(prefix="txlibxl-test-")
        self.addCleanup(shutil.rmtree, private)
        self.patch(tempfile, "tempdir", private)
        try:
            d = start_simulated_host(reactor)
        except SimulatedHostUnavailable as e:
            raise SkipTest(str(e))
        self.assertEqual(len(os.listdir(private)), 1)
        d.cancel()
        await self.assertFailure(d, defer.CancelledError)
        self.assertEqual(os.listdir(private), [])

    def test_a_run_directory_too_long_for_sockets_is_refused(self) -> None:
        self.assertRaises(ValueError, start_simulated_host, reactor, rundir="/tmp/" + "x" * 120)

    def test_an_unknown_scenario_is_refused(self) -> None:
        self.assertRaises(ValueError, start_simulated_host, reactor, scenario="no-such-scenario")

    def test_an_unknown_log_level_is_refused(self) -> None:
        self.assertRaises(ValueError, start_simulated_host, reactor, log_level="chatty")


class StopTests(TestCase):
    timeout = 60

    async def test_stop_ends_the_process_and_removes_a_temporary_rundir(self) -> None:
        host = await started(self)
        await host.stop()
        self.assertFalse(host.running)
        self.assertFalse(os.path.exists(host.rundir))

    async def test_stop_keeps_a_rundir_given_by_the_caller(self) -> None:
        # Short enough for socket paths (trial's temp paths are not).
        parent = tempfile.mkdtemp(prefix="txlibxl-test-")
        self.addCleanup(shutil.rmtree, parent)
        rundir = os.path.join(parent, "run")
        host = await started(self, rundir=rundir)
        await host.stop()
        self.assertFalse(host.running)
        self.assertTrue(os.path.isdir(rundir))

    async def test_stop_keeps_a_temporary_rundir_when_asked(self) -> None:
        host = await started(self, keep_rundir=True)
        await host.stop()
        self.assertTrue(os.path.isdir(host.rundir))
        shutil.rmtree(host.rundir)

    async def test_stopping_twice_waits_for_the_same_exit(self) -> None:
        host = await started(self)
        first, second = host.stop(), host.stop()
        status = await first
        self.assertEqual(await second, status)
        self.assertEqual(await host.stop(), status)

    async def test_a_host_that_ignores_the_stop_op_is_terminated(self) -> None:
        host = await started(self)
        os.kill(host.info["pid"], 19)  # SIGSTOP: it can neither answer nor exit
        status = await host.stop(grace=0.5)
        self.assertFalse(host.running)
        self.assertIn("signal", status)


class InProcessTests(SimulatedHostTestCase):
    """use_simulated_host, through the TestCase's in-process default."""

    timeout = 60

    def test_the_environment_points_at_the_host_during_the_test(self) -> None:
        for name, value in self.host.environment().items():
            self.assertEqual(os.environ.get(name), value)

    def test_libxenlight_and_the_shim_are_loaded_in_this_process(self) -> None:
        with open("/proc/self/maps") as f:
            maps = f.read()
        self.assertIn("libxenlight", maps)
        self.assertIn(os.path.realpath(self.host.shim), maps)

    def test_undo_restores_the_environment(self) -> None:
        before = {name: os.environ.get(name) for name in self.host.environment()}
        undo = testing.use_simulated_host(self.host)
        undo()
        self.assertEqual({name: os.environ.get(name) for name in before}, before)

    async def test_libxenlight_loaded_without_the_shim_is_refused(self) -> None:
        script = (
            "import ctypes, sys\n"
            "ctypes.CDLL('libxenlight.so.4.17')\n"
            "from txlibxl.testing.inprocess import _load_shim, ShimLoadOrderError\n"
            "try:\n"
            "    _load_shim(sys.argv[1])\n"
            "except ShimLoadOrderError as e:\n"
            "    print('refused:', e)\n"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD",) + tuple(self.host.environment())}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (simhost._package_parent(), env.get("PYTHONPATH")) if p)
        out, err, code = await utils.getProcessOutputAndValue(
            sys.executable, ["-c", script, self.host.shim], env=env
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"refused: libxenlight is already loaded", out)
