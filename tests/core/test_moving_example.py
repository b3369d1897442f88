"""
The moving-domains page's example (docs/examples/save_restore.py) runs
as written and prints what the page says it prints.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any

from twisted.internet import defer, utils
from twisted.trial.unittest import TestCase

DOCS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs")
EXAMPLE = os.path.join(DOCS, "examples", "save_restore.py")
PAGE = os.path.join(DOCS, "moving-domains.rst")


class MovingExampleTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_the_example_prints_what_the_page_shows(self) -> Any:
        out, err, code = yield utils.getProcessOutputAndValue(sys.executable, [EXAMPLE], env=dict(os.environ))
        self.assertEqual(code, 0, err.decode(errors="replace")[-2000:])
        with open(PAGE) as f:
            page = f.read()
        shown = re.search(r"It prints::\n\n((?:    .*\n)+)", page)
        self.assertIsNotNone(shown, "the page shows the example's output")
        expected = [line[4:] for line in shown.group(1).splitlines()]
        self.assertEqual(out.decode().splitlines(), expected)
