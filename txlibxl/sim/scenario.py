"""
Scenarios: timed scripts of control ops for a simulated host.

A scenario file is JSON::

    {"name": "demo",
     "steps": [{"at": 0,   "op": "create_domain", "name": "web1"},
               {"at": 2.5, "op": "shutdown", "domain": "web1", "reason": "reboot"}]}

``at`` is in seconds from the start.  A step starts at its time, or when
the step before it has finished if that is later, so steps run one at a
time and in order.  Instead of ``domid`` a step may name a domain created
by an earlier step: ``"domain": "web1"`` (``destroy`` also takes
``"domains": ["web1", ...]`` for ``domids``).  The first failing step stops
the run with a :class:`ScenarioError`.

:class:`ScenarioRunner` runs a scenario against any ``call(op, args) ->
Deferred`` (a ``ControlClient`` or the host's own dispatcher).
"""
import json
from typing import Any, Callable, Dict, List, Tuple

import attr
from twisted.internet import defer
from twisted.logger import Logger

__all__ = ["ScenarioError", "Step", "Scenario", "ScenarioRunner", "load"]

log = Logger()

Call = Callable[[str, Dict[str, Any]], defer.Deferred]


class ScenarioError(Exception):
    """A scenario that is malformed, or a step of it that failed."""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Step:
    """One op to send at C{at} seconds, with its arguments."""

    at: float
    op: str
    args: Dict[str, Any] = attr.ib(factory=dict, hash=False)

    @classmethod
    def from_dict(cls, index: int, data: Any) -> "Step":
        if not isinstance(data, dict):
            raise ScenarioError("step %d must be an object" % index)
        args = dict(data)
        at = args.pop("at", None)
        op = args.pop("op", None)
        if isinstance(at, bool) or not isinstance(at, (int, float)) or at < 0:
            raise ScenarioError("step %d needs a non-negative number 'at', got %r" % (index, at))
        if not isinstance(op, str) or not op:
            raise ScenarioError("step %d needs an 'op'" % index)
        if "domain" in args and not isinstance(args["domain"], str):
            raise ScenarioError("step %d: 'domain' must be a domain name" % index)
        if "domains" in args and not (
            isinstance(args["domains"], list) and all(isinstance(n, str) for n in args["domains"])
        ):
            raise ScenarioError("step %d: 'domains' must be a list of domain names" % index)
        return cls(float(at), op, args)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Scenario:
    """A named list of steps, in file order."""

    name: str
    steps: Tuple[Step, ...]

    @classmethod
    def from_dict(cls, data: Any) -> "Scenario":
        """
        @raise ScenarioError: not an object with a name and a list of steps.
        """
        if not isinstance(data, dict):
            raise ScenarioError("a scenario must be a JSON object")
        name = data.get("name", "")
        steps = data.get("steps")
        if not isinstance(name, str):
            raise ScenarioError("the scenario's name must be a string")
        if not isinstance(steps, list):
            raise ScenarioError("a scenario needs a list of steps")
        return cls(name, tuple(Step.from_dict(i, s) for i, s in enumerate(steps)))


def load(path: str) -> Scenario:
    """
    Read a scenario file.

    @raise ScenarioError: unreadable, not JSON, or malformed.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ScenarioError("cannot read scenario %s: %s" % (path, e)) from None
    return Scenario.from_dict(data)


class ScenarioRunner:
    """
    Runs scenarios through C{call(op, args)} on C{reactor}'s clock.

    ``names`` maps the domain names created so far to their domids.
    """

    def __init__(self, reactor, call: Call):
        self._reactor = reactor
        self._call = call
        self.names: Dict[str, int] = {}
        self._sleep = None

    def run(self, scenario: Scenario) -> defer.Deferred:
        """
        Run every step; fires with the list of their results, or fails with
        L{ScenarioError} naming the first step that failed.  Cancelling the
        Deferred stops the run.
        """
        return defer.ensureDeferred(self._run(scenario))

    async def _run(self, scenario: Scenario) -> List[Any]:
        start = self._reactor.seconds()
        results = []
        log.info("scenario {name}: {n} steps", name=scenario.name, n=len(scenario.steps))
        for index, step in enumerate(scenario.steps):
            wait = start + step.at - self._reactor.seconds()
            if wait > 0:
                await _sleep(self._reactor, wait)
            args = self._resolve(index, step)
            log.info("scenario step {index}: {op} {args}", index=index, op=step.op, args=args)
            try:
                result = await self._call(step.op, args)
            except Exception as e:
                raise ScenarioError("step %d (%s) failed: %s" % (index, step.op, e)) from e
            self._learn(result)
            results.append(result)
        return results

    def _resolve(self, index: int, step: Step) -> Dict[str, Any]:
        args = dict(step.args)
        if "domain" in args:
            args["domid"] = self._domid(index, args.pop("domain"))
            if step.op == "destroy":
                args["domids"] = [args.pop("domid")]
        if "domains" in args:
            args["domids"] = [self._domid(index, n) for n in args.pop("domains")]
        return args

    def _domid(self, index: int, name: str) -> int:
        try:
            return self.names[name]
        except KeyError:
            raise ScenarioError("step %d names domain %r, which no earlier step created" % (index, name)) from None

    def _learn(self, result: Any) -> None:
        created = result if isinstance(result, list) else [result]
        for item in created:
            if isinstance(item, dict) and "name" in item and "domid" in item:
                self.names[item["name"]] = item["domid"]


def _sleep(reactor, seconds: float) -> defer.Deferred:
    d = defer.Deferred(lambda d: call.cancel())
    call = reactor.callLater(seconds, d.callback, None)
    return d
