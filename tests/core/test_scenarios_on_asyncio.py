"""
The shared integration scenarios (:mod:`tests.core.context_scenarios`) on a
plain asyncio loop: each runs in a child process
(:mod:`tests.core.asyncio_scenarios`), where txaio uses asyncio and no
Twisted reactor is installed, against a simulated host of the asyncio
fixture (:mod:`txlibxl.testing.asyncio_host`).  One test per scenario, on
the epoll loop; one more runs a scenario on the select loop.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import defer, utils
from twisted.trial.unittest import SkipTest, TestCase

from txlibxl.loop.asyncio_children import pidfd_unavailable_reason

from .context_scenarios import SCENARIOS

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class AsyncioScenarioTests(TestCase):
    timeout = 300

    def setUp(self) -> None:
        reason = pidfd_unavailable_reason()
        if reason is not None:
            raise SkipTest(f"libxl's children on asyncio need pidfds: {reason}")

    @defer.inlineCallbacks
    def run_scenario(self, name: str, loop: str = "epoll") -> Any:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (CHECKOUT, env.get("PYTHONPATH")) if p)
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "tests.core.asyncio_scenarios", "--loop", loop, name], env=env, path=CHECKOUT
        )
        said = out.decode(errors="replace") + err.decode(errors="replace")[-4000:]
        self.assertEqual((code, out.decode(errors="replace").splitlines()[:1]), (0, [f"ok {name}"]), said)

    def test_on_the_select_loop_too(self) -> Any:
        return self.run_scenario("every_shutdown_reason_then_death", loop="select")


def _test(name: str) -> Any:
    def test(self: AsyncioScenarioTests) -> Any:
        return self.run_scenario(name)

    test.__name__ = f"test_{name}"
    return test


for _name in SCENARIOS:
    setattr(AsyncioScenarioTests, f"test_{_name}", _test(_name))
