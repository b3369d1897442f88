"""
The building-domains page's example (docs/examples/build.py) runs as
written and shows what the page says it shows.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import defer, utils
from twisted.trial.unittest import TestCase

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "examples", "build.py")


class BuildingExampleTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_the_example_builds_changes_and_destroys_a_guest(self) -> Any:
        out, err, code = yield utils.getProcessOutputAndValue(sys.executable, [EXAMPLE], env=dict(os.environ))
        self.assertEqual(code, 0, err.decode(errors="replace")[-2000:])
        lines = dict(line.split(": ", 1) for line in out.decode().splitlines())
        self.assertEqual(
            list(lines), ["console", "created", "uuid given", "disks", "changed", "refused", "cancelled", "destroyed"]
        )
        self.assertIn(f"ConsoleAvailable(domid={lines['created']}", lines["console"])
        self.assertEqual(lines["uuid given"], "True")
        self.assertEqual(lines["disks"], "['xvda', 'xvdb'] nics: [0, 1]")
        self.assertEqual(lines["changed"], f"db1 131072 /dev/pts/sim{lines['created']}")
        self.assertEqual(lines["refused"], "('b_info.max_vcpu',)")
        self.assertEqual(lines["cancelled"], "['Domain-0', 'db1']")
        self.assertEqual(lines["destroyed"], "['Domain-0']")
