"""
The asyncio page's example (docs/examples/asyncio_tour.py) runs as
written, on a plain asyncio loop, and prints what docs/asyncio.rst says.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import defer, utils
from twisted.trial.unittest import SkipTest, TestCase

from txlibxl.loop.asyncio_children import pidfd_unavailable_reason

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "examples", "asyncio_tour.py")


class AsyncioExampleTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_the_asyncio_tour_runs_and_prints_what_the_page_says(self) -> Any:
        reason = pidfd_unavailable_reason()
        if reason is not None:
            raise SkipTest(reason)
        out, err, code = yield utils.getProcessOutputAndValue(sys.executable, [EXAMPLE], env=dict(os.environ))
        self.assertEqual(code, 0, err.decode(errors="replace")[-2000:])
        lines = out.decode().splitlines()
        self.assertEqual([line.split("(")[0] for line in lines],
                         ["DomainShutdown", "DomainDeath", "cancelled; libxl completed it anyway: False",
                          "a child of our own"])
        self.assertIn("reason=<ShutdownReason.POWEROFF: 0>", lines[0])
