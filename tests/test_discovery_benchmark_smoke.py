"""
The discovery latency benchmark keeps working: two domains, checked for
the shape of the results (never for the numbers).
"""
from __future__ import annotations

import os
import sys

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from benchmarks.discovery import measure


class DiscoverySmokeTests(TestCase):
    timeout = 120

    async def test_a_tiny_run_measures_each_domain(self) -> None:
        saved = os.environ.get("XENSTORED_PATH")

        def restore() -> None:
            if saved is None:
                os.environ.pop("XENSTORED_PATH", None)
            else:
                os.environ["XENSTORED_PATH"] = saved

        self.addCleanup(restore)
        results = await measure(reactor, 2, lambda text: None)
        self.assertEqual((results["scenario"], results["domains"], len(results["samples"])), ("discovery", 2, 2))
        for key in ("published", "received"):
            self.assertEqual(set(results[key]), {"median_ms", "p90_ms", "max_ms", "min_ms"})
        self.assertEqual([s["paused"] for s in results["samples"]], [False, True])
