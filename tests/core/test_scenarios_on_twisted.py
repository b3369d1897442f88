"""
The shared integration scenarios (:mod:`tests.core.context_scenarios`) on
the reactor trial runs: Deferreds, a simulated host of the Twisted
fixture.  ``test_scenarios_on_asyncio`` runs the same scenarios on asyncio.
"""
from __future__ import annotations

import sys
from typing import Any, List

from twisted.internet import defer, protocol, reactor, task
from twisted.trial.unittest import SkipTest

from .context_scenarios import SCENARIOS, Kit

try:
    from txlibxl.testing import SimulatedHostTestCase
except ImportError as e:  # pragma: no cover - the fixture is part of the package
    raise SkipTest(f"txlibxl.testing is unavailable: {e}")


def _run_process(argv: List[str]) -> defer.Deferred:
    """Spawn C{argv} with the reactor; a Deferred of its exit code."""
    ended: defer.Deferred = defer.Deferred()

    class Ended(protocol.ProcessProtocol):
        def processEnded(self, reason: Any) -> None:
            ended.callback(reason.value.exitCode)

    reactor.spawnProcess(Ended(), argv[0], argv, env=None)
    return ended


def _sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


class TwistedScenarioTests(SimulatedHostTestCase):
    timeout = 240

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        from txlibxl.context import Context

        self.ctx = Context(reactor)
        self.addCleanup(self.ctx.close)
        self.kit = Kit(self.ctx, self.host.control, self, _sleep, _run_process, defer.Deferred.fromCoroutine)


def _test(name: str) -> Any:
    def test(self: TwistedScenarioTests) -> Any:
        self.assertEqual(self.ctx.framework, "twisted")
        return defer.Deferred.fromCoroutine(SCENARIOS[name](self.kit))

    test.__name__ = f"test_{name}"
    return test


for _name in SCENARIOS:
    setattr(TwistedScenarioTests, f"test_{_name}", _test(_name))
