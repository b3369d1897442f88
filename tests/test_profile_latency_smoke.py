"""
``python -m benchmarks.profile_latency``: each sample split into the
stages of its way, for the C client and txlibxl, at a tiny size.
"""
from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase

from benchmarks.profile_latency import STAGES, profile_latency, render, stages
from benchmarks.runner import BenchmarkError


class StagesTests(TestCase):
    def test_a_txlibxl_sample_is_cut_at_each_stamp(self) -> None:
        line = {"t_woke": 10.001, "t_libxl": 10.0012, "t_libxl_done": 10.0015, "t": 10.0016}
        split = stages("probe", 10.0, line)
        self.assertEqual(list(split), ["woke", "to_libxl", "libxl", "to_waiter", "total"])
        self.assertAlmostEqual(split["woke"], 1.0, places=6)
        self.assertAlmostEqual(split["libxl"], 0.3, places=6)
        self.assertAlmostEqual(split["total"], 1.6, places=6)

    def test_a_c_sample_has_the_wake_and_libxl(self) -> None:
        split = stages("c", 10.0, {"t_woke": 10.0004, "t": 10.0006})
        self.assertEqual(list(split), ["woke", "libxl", "total"])
        self.assertAlmostEqual(split["libxl"], 0.2, places=6)

    def test_a_stamp_of_an_earlier_event_is_refused(self) -> None:
        # The poll that woke for this event must come after the change.
        with self.assertRaises(BenchmarkError):
            stages("c", 10.0, {"t_woke": 9.9, "t": 10.0006})

    def test_a_line_without_its_stamps_is_refused(self) -> None:
        with self.assertRaises(BenchmarkError):
            stages("probe", 10.0, {"t": 10.1})


class ProfileLatencyTests(TestCase):
    timeout = 180

    async def test_every_sample_of_both_clients_is_split_and_adds_up(self) -> None:
        from tests.cclient import CClientUnavailable
        from txlibxl.testing import SimulatedHostUnavailable

        try:
            result = await profile_latency(reactor, 3, 2, timeout=60)
        except (CClientUnavailable, SimulatedHostUnavailable) as e:
            raise SkipTest(f"the benchmarks cannot run here: {e}")
        self.assertEqual(result["samples_per_client"], 6)
        for kind, names in STAGES.items():
            self.assertEqual(len(result[kind]["samples_ms"]), 6)
            for sample in result[kind]["samples_ms"]:
                self.assertTrue(all(sample[name] >= 0 for name in names))
                self.assertLess(abs(sum(sample[name] for name in names) - sample["total"]), 0.001)
            self.assertEqual(set(result[kind]["p50_ms"]), set(names) | {"total"})
        self.assertIn("txlibxl", render(result))


class CommandLineTests(TestCase):
    timeout = 180

    def test_the_command_writes_its_json_and_prints_the_medians(self) -> None:
        import json
        import os
        import subprocess
        import sys

        out = os.path.abspath(self.mktemp())
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        run = subprocess.run([sys.executable, "-m", "benchmarks.profile_latency", "-n", "2", "--reps", "1",
                              "--out", out], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if run.returncode and (b"SimulatedHostUnavailable" in run.stderr or b"CClientUnavailable" in run.stderr):
            raise SkipTest(f"the benchmarks cannot run here: {run.stderr[-300:]!r}")
        self.assertEqual(run.returncode, 0, run.stderr[-2000:])
        with open(out) as f:
            result = json.load(f)
        self.assertEqual(result["samples_per_client"], 2)
        self.assertIn(b"txlibxl", run.stdout)
