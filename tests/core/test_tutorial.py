"""
The tutorial's tour (docs/examples/tour.py) runs as written and shows what
the tutorial says it shows.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import defer, utils
from twisted.trial.unittest import TestCase

TOUR = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "examples", "tour.py")


class TutorialTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_the_tour_runs_and_prints_each_event_of_the_tutorial(self) -> Any:
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, [TOUR], env=dict(os.environ)
        )
        self.assertEqual(code, 0, err.decode(errors="replace")[-2000:])
        lines = out.decode().splitlines()
        kinds = [line.split("(")[0].split(":")[0] for line in lines]
        self.assertEqual(
            kinds,
            ["DiskEject", "DomainShutdown", "DomainDeath", "DomainShutdown", "DomainDeath", "cancelled"],
        )
        self.assertIn("reason=<ShutdownReason.POWEROFF: 0>", lines[1])
        self.assertIn("reason=<ShutdownReason.CRASH: 3>", lines[3])
