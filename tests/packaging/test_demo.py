"""
``make demo`` (``contrib/demo.py``): the demo scenario's records, printed
as they happen, and an end as soon as the scenario is over.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

from twisted.internet import defer, reactor, utils
from twisted.trial.unittest import SkipTest, TestCase

from . import unitfile

DEMO = os.path.join(unitfile.CHECKOUT, "contrib", "demo.py")

#: What the demo scenario (txlibxl/sim/scenarios/demo.json) makes the daemon publish.
EXPECTED = [
    ("new", "web1", None), ("new", "db1", None), ("new", "batch1", None), ("new", "desk1", None),
    ("shutdown", "web1", "reboot"), ("disk_eject", "db1", None), ("shutdown", "batch1", "poweroff"),
    ("shutdown", "db1", "crash"), ("disk_eject", "desk1", None), ("shutdown", "desk1", "suspend"),
    ("death", "web1", None), ("death", "db1", None), ("death", "batch1", None), ("death", "desk1", None),
]  # fmt: skip


class DemoTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_the_demo_prints_the_scenarios_14_records_and_stops_when_it_is_over(self) -> Any:
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.path.exists(twistd):
            raise SkipTest(f"no {twistd}: txlibxl is not installed in a virtualenv here")
        log = os.path.join(tempfile.mkdtemp(prefix="txlibxl-demo-test-"), "twistd.log")
        started = reactor.seconds()
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, [DEMO, "--twistd", twistd, "--logfile", log, "--timeout", "90"], env=dict(os.environ)
        )
        took = reactor.seconds() - started
        self.assertEqual(code, 0, err.decode(errors="replace")[-3000:])
        records = [json.loads(line) for line in out.decode().splitlines()]
        self.assertEqual([(r["type"], r["name"], r["reason"]) for r in records], EXPECTED)
        self.assertEqual([r["seq"] for r in records], list(range(1, 15)))
        # The scenario lasts 5.5 s; the old fixed wait was 15 s.
        self.assertLess(took, 60)

    def test_make_demo_waits_for_no_fixed_time(self) -> None:
        with open(os.path.join(unitfile.CHECKOUT, "Makefile")) as f:
            makefile = f.read()
        recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
        self.assertIn("contrib/demo.py", recipe)
        self.assertNotRegex(recipe, r"\b(timeout|sleep)\b")
