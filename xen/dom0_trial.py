"""
Run trial tests in the real-Xen dom0 and mark each result on the console.

    python3 xen/dom0_trial.py [test names]

Without names it runs every module of ``tests/realxen`` that runs in dom0
(:func:`realxen_modules`): a new module there runs without being named.

Besides trial's usual verbose output, each finished test prints one line
that xen/runner.py parses from the serial log::

    REALXEN-TEST <PASS|FAIL|ERROR|SKIP|XFAIL|UXPASS> <seconds> <test id> [reason]

followed, for FAIL and ERROR, by the traceback as ``REALXEN-TB <line>``
lines.  The recordings the scenario tests keep (``REALXEN_RECORD``) are
printed as ``REALXEN-SEQUENCE <json>`` lines, and the run ends with
``REALXEN-SUMMARY <json>``.  The exit status is 0 when every test passed
or was skipped.
"""
from __future__ import annotations

import ast
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, List

from twisted.trial import reporter, runner

STATUSES = ("PASS", "FAIL", "ERROR", "SKIP", "XFAIL", "UXPASS")

REALXEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "realxen")


def _runs_in_dom0(path: str) -> bool:
    """False if the module says ``RUNS_IN_DOM0 = False`` (read, not imported)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RUNS_IN_DOM0" for t in node.targets):
            return bool(ast.literal_eval(node.value))
    return True


def realxen_modules(directory: str = REALXEN, package: str = "tests.realxen") -> List[str]:
    """
    Every ``test_*.py`` module of C{directory} (as C{package}.name), but
    those that run on the host instead (``RUNS_IN_DOM0 = False``: the
    runner's own tests, the simulator-fidelity tests).
    """
    names = sorted(n[:-3] for n in os.listdir(directory) if n.startswith("test_") and n.endswith(".py"))
    return [f"{package}.{n}" for n in names if _runs_in_dom0(os.path.join(directory, n + ".py"))]


def _emit(line: str) -> None:
    sys.stdout.flush()
    os.write(1, (line.rstrip("\n") + "\n").encode("utf-8", "replace"))


def _traceback(err: Any) -> str:
    if hasattr(err, "getTraceback"):
        return err.getTraceback()
    import traceback

    return "".join(traceback.format_exception(*err))


class MarkerReporter(reporter.VerboseTextReporter):
    """
    trial's verbose reporter, plus one REALXEN-TEST line per test.
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._started: Dict[str, float] = {}
        self._outcome: Dict[str, tuple] = {}
        self.counts = {status: 0 for status in STATUSES}

    def startTest(self, test: Any) -> None:
        self._started[test.id()] = time.monotonic()
        super().startTest(test)

    def _note(self, test: Any, status: str, detail: str = "", tb: str = "") -> None:
        previous = self._outcome.get(test.id())
        if previous and previous[0] in ("FAIL", "ERROR"):
            return  # a later cleanup error does not hide the first failure
        self._outcome[test.id()] = (status, detail, tb)

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._note(test, "PASS")

    def addFailure(self, test: Any, fail: Any) -> None:
        super().addFailure(test, fail)
        self._note(test, "FAIL", tb=_traceback(fail))

    def addError(self, test: Any, error: Any) -> None:
        super().addError(test, error)
        self._note(test, "ERROR", tb=_traceback(error))
        if test.id() not in self._started:  # an import error: no startTest
            self._flush(test)

    def addSkip(self, test: Any, reason: Any) -> None:
        super().addSkip(test, reason)
        self._note(test, "SKIP", detail=str(reason))

    def addExpectedFailure(self, test: Any, failure: Any, todo: Any = None) -> None:
        super().addExpectedFailure(test, failure, todo)
        self._note(test, "XFAIL")

    def addUnexpectedSuccess(self, test: Any, todo: Any = None) -> None:
        super().addUnexpectedSuccess(test, todo)
        self._note(test, "UXPASS")

    def stopTest(self, test: Any) -> None:
        super().stopTest(test)
        self._flush(test)

    def _flush(self, test: Any) -> None:
        status, detail, tb = self._outcome.pop(test.id(), ("ERROR", "no result reported", ""))
        seconds = time.monotonic() - self._started.pop(test.id(), time.monotonic())
        self.counts[status] += 1
        detail = " ".join(detail.split())
        _emit(f"REALXEN-TEST {status} {seconds:.1f} {test.id()} {detail}".rstrip())
        for line in tb.splitlines():
            _emit(f"REALXEN-TB {line}")


def main(argv: Any) -> int:
    names = argv[1:] or realxen_modules()
    record = os.environ.setdefault(
        "REALXEN_RECORD", os.path.join(tempfile.mkdtemp(prefix="realxen-record-"), "record.jsonl")
    )
    suite = runner.TestLoader().loadByNames(names, recurse=True)
    holder: Dict[str, MarkerReporter] = {}

    def factory(*args: Any, **kw: Any) -> MarkerReporter:
        holder["r"] = MarkerReporter(*args, **kw)
        return holder["r"]

    trial = runner.TrialRunner(
        factory, stream=sys.stdout, workingDirectory=os.path.join(tempfile.mkdtemp(prefix="trial-"), "_trial_temp"), tracebackFormat="default"
    )
    started = time.monotonic()
    _emit(f"REALXEN-TESTS-BEGIN {' '.join(names)}")
    result = trial.run(suite)
    if os.path.exists(record):
        with open(record) as f:
            for line in f:
                _emit(f"REALXEN-SEQUENCE {line.strip()}")
    counts = holder["r"].counts if "r" in holder else {}
    ok = result.wasSuccessful()
    _emit(
        "REALXEN-SUMMARY "
        + json.dumps({"ok": ok, "seconds": round(time.monotonic() - started, 1), "counts": counts})
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
