"""
The moving benchmark keeps working: one repetition with a tiny image,
checked for the shape of the results (never for the numbers).
"""
from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase

from benchmarks.moving import BenchmarkUnavailable, measure, render_inc


class MovingBenchmarkSmokeTests(TestCase):
    timeout = 180

    async def test_a_tiny_run_times_xl_txlibxl_migration_and_the_copy(self) -> None:
        try:
            results = await measure(reactor, 2048, 1, lambda text: None)
        except BenchmarkUnavailable as e:
            raise SkipTest(str(e))
        self.assertEqual((results["scenario"], results["image_kb"], results["reps"]), ("moving", 2048, 1))
        self.assertGreater(results["stream_bytes"], 2048 * 1024)
        self.assertGreater(results["live_stream_bytes"], results["stream_bytes"])
        r = results["results"]
        for key in ("xl_save_s", "xl_restore_s", "txlibxl_save_s", "txlibxl_restore_s", "copy_s", "pipe_save_s"):
            self.assertEqual(len(r[key]["runs"]), 1, key)
            self.assertGreater(r[key]["median"], 0, key)
        self.assertEqual(len(r["migration_s"]["runs"]), 2)  # there and back
        for key in ("save_ratio", "restore_ratio", "migration_to_copy_ratio", "migration_to_pipe_save_ratio"):
            self.assertGreater(r[key], 0, key)
        self.assertEqual(len(results["machine"]["load_before"]), 3)
        self.assertIn(".. list-table::", render_inc(results))
