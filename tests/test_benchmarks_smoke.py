"""
The benchmarks keep working: a smoke run at tiny sizes, every client on a
simulated host, checked for the shape of its results (never for the
numbers: no timing assertion belongs in the test suite).
"""
from __future__ import annotations

import json
import os
import tempfile
import tracemalloc
from typing import Any, Dict

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase

from benchmarks import asyncioclient, bindingclient, clientcommon, pyclient
from benchmarks.__main__ import write_outputs
from benchmarks.report import render_table
from benchmarks.runner import (
    CLIENTS,
    SCENARIOS,
    STORM_CLIENTS,
    Config,
    evaluate,
    percentile,
    run_benchmarks,
)
from txlibxl.frameworks import TwistedLoop
from txlibxl.watches import DomainWatch


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class SmokeRunTests(TestCase):
    """
    One smoke run (shared by the tests of this class: it takes seconds).
    """

    timeout = 120
    results: Dict[str, Any] = {}

    async def setUp(self) -> None:
        if not SmokeRunTests.results:
            from tests.cclient import CClientUnavailable
            from txlibxl.testing import SimulatedHostUnavailable

            try:
                SmokeRunTests.results = await run_benchmarks(reactor, Config.smoke())
            except (CClientUnavailable, SimulatedHostUnavailable) as e:
                raise SkipTest(f"the benchmarks cannot run here: {e}")
        self.results = SmokeRunTests.results

    def test_results_name_the_machine_the_date_and_the_config(self) -> None:
        for key in ("schema", "date", "machine", "config", "elapsed_s", "sim_cpu_total_s"):
            self.assertIn(key, self.results)
        self.assertEqual(self.results["config"]["reps"], 1)
        self.assertIn("cpus", self.results["machine"])

    def test_every_scenario_is_reported(self) -> None:
        self.assertEqual(sorted(self.results["scenarios"]), sorted(SCENARIOS))

    def test_each_death_storm_has_both_clients_and_their_ratios(self) -> None:
        rows = self.results["scenarios"]["death_storm"]
        self.assertEqual(sorted({r["mode"] for r in rows}), ["burst", "lockstep"])
        for row in rows:
            for kind in CLIENTS:
                for key in ("wall_s", "cpu_s", "sim_cpu_s", "wall_us_per_domain", "cpu_us_per_domain"):
                    self.assertTrue(_number(row[kind][key]), (kind, key, row[kind]))
                self.assertEqual(len(row[kind]["runs"]), 1)
            self.assertTrue(_number(row["wall_ratio"]))

    def test_each_death_storm_also_runs_the_python_floor(self) -> None:
        for row in self.results["scenarios"]["death_storm"]:
            self.assertEqual(sorted(k for k in STORM_CLIENTS if k in row), sorted(STORM_CLIENTS))
            self.assertTrue(_number(row["binding"]["cpu_s"]))
            self.assertTrue(_number(row["binding_cpu_ratio"]))

    def test_each_death_storm_also_runs_txlibxl_on_asyncio(self) -> None:
        for row in self.results["scenarios"]["death_storm"]:
            for key in ("wall_s", "cpu_s", "wall_us_per_domain", "cpu_us_per_domain"):
                self.assertTrue(_number(row["asyncio"][key]), (key, row["asyncio"]))
            self.assertEqual(len(row["asyncio"]["runs"]), 1)
            self.assertTrue(_number(row["asyncio_wall_ratio"]))
            self.assertTrue(_number(row["asyncio_cpu_ratio"]))

    def test_the_table_has_the_storms_on_asyncio(self) -> None:
        self.assertIn("The same storms on asyncio", render_table(self.results))

    def test_the_machine_load_is_recorded_before_and_after(self) -> None:
        machine = self.results["machine"]
        for key in ("loadavg_before", "loadavg_after"):
            self.assertEqual(len(machine[key]), 3)
            self.assertTrue(all(_number(x) for x in machine[key]))
        self.assertIn("Load average", render_table(self.results))

    def test_the_python_clients_report_their_garbage_collection(self) -> None:
        for row in self.results["scenarios"]["death_storm"]:
            for kind in ("binding", "python", "asyncio"):
                self.assertGreaterEqual(row[kind]["gc_s"], 0.0)
                self.assertGreaterEqual(row[kind]["gc_full"], 0)
            self.assertNotIn("gc_s", row["c"])

    def test_the_table_splits_a_death_between_libxl_python_and_txlibxl(self) -> None:
        self.assertIn("Where a death's CPU goes", render_table(self.results))

    def test_latency_has_percentiles_and_every_sample_for_both_clients(self) -> None:
        latency = self.results["scenarios"]["latency"]
        self.assertEqual(latency["samples"], 3)
        for kind in CLIENTS:
            self.assertEqual(len(latency[kind]["samples_ms"]), 3)
            self.assertLessEqual(latency[kind]["p50_ms"], latency[kind]["p99_ms"])
        self.assertTrue(_number(latency["p99_delta_ms"]))

    def test_op_churn_times_shutdowns_and_destroys_separately(self) -> None:
        [row] = self.results["scenarios"]["op_churn"]
        for kind in CLIENTS:
            for op in ("shutdown", "destroy"):
                self.assertTrue(_number(row[kind][op]["wall_s"]))
                self.assertTrue(_number(row[kind][op]["cpu_s"]))

    def test_memory_reports_rss_for_both_and_the_python_heap(self) -> None:
        memory = self.results["scenarios"]["memory"]
        self.assertTrue(_number(memory["c"]["rss_per_domain_b"]))
        self.assertTrue(_number(memory["python"]["heap_per_domain_b"]))
        self.assertNotIn("heap_per_domain_b", memory["c"])

    def test_memory_splits_the_python_heap_into_the_librarys_and_the_clients(self) -> None:
        python = self.results["scenarios"]["memory"]["python"]
        parts = [python[f"heap_{part}_per_domain_b"] for part in ("library", "client", "other")]
        # Every watch has a txlibxl watch and a Deferred with the client's callbacks.
        self.assertGreater(parts[0], 0)
        self.assertGreater(parts[1], 0)
        # The split is of a snapshot taken just after the total was read.
        self.assertLessEqual(abs(sum(parts) - python["heap_per_domain_b"]), python["heap_per_domain_b"] / 100)

    def test_targets_are_evaluated(self) -> None:
        targets = self.results["targets"]
        n = self.results["config"]["storm_sizes"][0]
        for name in (f"storm_wall_ratio_n{n}", f"storm_cpu_ratio_n{n}", f"storm_batch_cpu_ratio_n{n}",
                     "latency_p50_delta_ms", "latency_p99_delta_ms", "heap_per_domain_b",
                     "heap_library_per_domain_b"):
            self.assertIn(name, targets)
            self.assertIsInstance(targets[name]["met"], bool)

    def test_results_are_written_as_json_and_a_docs_table(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "r.json")
            written = write_outputs(self.results, out, os.path.join(tmp, "docs"))
            with open(out) as f:
                self.assertEqual(json.load(f)["schema"], self.results["schema"])
            self.assertIn(os.path.join(tmp, "docs", "results.inc"), written)
        self.assertIn("Death storm", render_table(self.results))


class HelperTests(TestCase):
    def test_percentile_interpolates_between_ranks(self) -> None:
        self.assertEqual(percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0)
        self.assertAlmostEqual(percentile([0.0, 10.0], 0.99), 9.9)

    def test_percentile_of_nothing_is_an_error(self) -> None:
        self.assertRaises(ValueError, percentile, [], 0.5)

    def test_evaluate_marks_a_missed_target(self) -> None:
        results = {"scenarios": {"latency": {"p99_delta_ms": 0.7}}}
        self.assertEqual(evaluate(results)["latency_p99_delta_ms"]["met"], False)

    def test_the_python_client_refuses_an_unknown_command(self) -> None:
        self.assertRaises(pyclient.Usage, pyclient.parse, ["watch-death", "1", "frobnicate"])

    def test_the_python_client_refuses_an_unknown_operation(self) -> None:
        self.assertRaises(pyclient.Usage, pyclient.parse, ["ops", "explode", "1"])

    def test_the_floor_client_takes_only_the_death_storm_commands(self) -> None:
        self.assertEqual(
            bindingclient.parse(["quiet", "watch-death", "3", "rusage", "wait-events", "1", "5"]),
            [("quiet",), ("watch-death", [3]), ("rusage",), ("wait-events", 1, 5.0)],
        )
        self.assertRaises(pyclient.Usage, bindingclient.parse, ["ops", "shutdown", "3"])

    def test_the_asyncio_client_takes_only_the_death_storm_commands(self) -> None:
        self.assertEqual(
            asyncioclient.parse(["quiet", "watch-death", "3", "rusage", "wait-events", "1", "5"]),
            [("quiet",), ("watch-death", [3]), ("rusage",), ("wait-events", 1, 5.0)],
        )
        self.assertRaises(clientcommon.Usage, asyncioclient.parse, ["ops", "shutdown", "3"])

    def test_the_asyncio_client_module_imports_no_twisted(self) -> None:
        # In a fresh interpreter: this one runs trial, on a reactor.
        import subprocess
        import sys

        code = ("import sys, benchmarks.asyncioclient; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))")
        out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.assertEqual(out.stdout.decode().strip(), "[]")

    def test_the_python_client_keeps_the_shared_helpers_under_their_old_names(self) -> None:
        self.assertIs(pyclient.Usage, clientcommon.Usage)
        self.assertIs(pyclient.parse, clientcommon.parse)
        self.assertIs(pyclient.rusage_line, clientcommon.rusage_line)

    def test_the_python_client_parses_cclient_style_commands(self) -> None:
        self.assertEqual(
            pyclient.parse(["quiet", "watch-death", "3", "4", "wait-events", "2", "10", "rusage"]),
            [("quiet",), ("watch-death", [3, 4]), ("wait-events", 2, 10.0), ("rusage",)],
        )


class HeapLineTests(TestCase):
    def setUp(self) -> None:
        if tracemalloc.is_tracing():
            raise SkipTest("tracemalloc is already tracing in this process")
        self.addCleanup(tracemalloc.stop)
        self.assertEqual(clientcommon.trace_heap_line(), {"cmd": "trace-heap", "frames": clientcommon.HEAP_FRAMES})

    def test_a_waiter_is_the_librarys_and_the_callbacks_on_it_the_callers(self) -> None:
        watches = [DomainWatch(TwistedLoop(reactor).tx, 7, lambda w: None) for _ in range(200)]
        clientcommon.heap_line()  # its own first-call allocations, before the counts
        before = clientcommon.heap_line()
        # Each Deferred is made by txlibxl (through txaio): the library's.
        waiters = [watch.next_event() for watch in watches]
        made = clientcommon.heap_line()
        # A callback on each, added here (neither the library nor the
        # benchmark client): the rest's.
        for d in waiters:
            d.addCallback(lambda event, d=d: None)
        after = clientcommon.heap_line()
        self.assertGreater(made["library"] - before["library"], 200 * 100)
        self.assertGreater(after["other"] - made["other"], 200 * 100)
        self.assertLess(abs(after["library"] - made["library"]), 200 * 10)


class StormSettlingTests(TestCase):
    def test_every_storm_client_takes_a_sleep_before_its_window(self) -> None:
        # The storm's window opens after the clients ran their loop for a
        # while: libxl's first look at the watched domains is not in it.
        for module in (bindingclient, asyncioclient, pyclient):
            self.assertEqual(module.parse(["watch-death", "3", "sleep", "0.5", "rusage"]),
                             [("watch-death", [3]), ("sleep", 0.5), ("rusage",)])


class ProfileStormTests(TestCase):
    """``python -m benchmarks.profile_storm``'s run, at a tiny size."""

    timeout = 120

    async def test_a_profiled_storm_names_the_dispatch_and_counts_every_death(self) -> None:
        from benchmarks.profile_storm import profile_storm, report
        from tests.cclient import CClientUnavailable
        from txlibxl.testing import SimulatedHostUnavailable

        out = os.path.join(tempfile.mkdtemp(prefix="txlx-profile-test-"), "storm.prof")
        try:
            result = await profile_storm(reactor, "batch", 5, out, timeout=60)
        except (CClientUnavailable, SimulatedHostUnavailable) as e:
            raise SkipTest(f"the benchmarks cannot run here: {e}")
        self.assertEqual(result["seen"], 5)
        self.assertTrue(_number(result["cpu_s"]))
        self.assertIn("_dispatch_reports", report(out, 200))

    def test_only_the_reactor_clients_can_be_profiled(self) -> None:
        from benchmarks.profile_storm import profile_storm

        with self.assertRaises(ValueError):
            profile_storm(reactor, "c", 5, "/dev/null").send(None)
