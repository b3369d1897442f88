"""
The simulator's cost benchmark (benchmarks/sim_costs.py) still runs, at a
tiny size, and reports what docs/simulated-host.rst quotes.  Not a timing
check: only the shape of its output.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from twisted.internet import defer, utils
from twisted.trial.unittest import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SimCostsSmokeTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_reports_round_trip_and_watch_event_costs(self) -> Any:
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable,
            [os.path.join(ROOT, "benchmarks", "sim_costs.py"), "--domains", "20", "--calls", "10",
             "--watches", "3", "--writes", "5"],
            env=dict(os.environ, PYTHONPATH=ROOT),
        )
        self.assertEqual(code, 0, err.decode(errors="replace")[-2000:])
        results = json.loads(out)["results"]
        self.assertEqual(
            sorted(results), ["getinfolist_1", "getinfolist_1024", "getinfolist_200", "watch_event"]
        )
        self.assertEqual(results["getinfolist_200"]["rows"], 20)  # capped at the domains there are
        self.assertIn("server_cpu_us_per_event", results["watch_event"])
