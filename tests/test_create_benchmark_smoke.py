"""
The create benchmark keeps working: two creates and destroys per client,
checked for the shape of the results (never for the numbers).
"""
from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase

from benchmarks.create import measure, render_inc


class CreateBenchmarkSmokeTests(TestCase):
    timeout = 180

    async def test_a_tiny_run_times_both_clients_and_leaves_nothing(self) -> None:
        from tests.cclient import CClientUnavailable

        try:
            results = await measure(reactor, 2, 1, lambda text: None)
        except CClientUnavailable as e:
            raise SkipTest(str(e))
        self.assertEqual((results["scenario"], results["creates"], results["reps"]), ("create", 2, 1))
        for kind in ("c", "python"):
            row = results["results"][kind]
            self.assertEqual(len(row["runs"]), 1)
            self.assertEqual(set(row["wall_s"]), {"median", "min", "max"})
            self.assertGreater(row["wall_s"]["median"], 0)
        self.assertGreater(results["results"]["wall_ratio"], 0)
        self.assertIn(".. list-table::", render_inc(results))
