"""
The host side of the real-Xen run (``xen/runner.py``): how it reads the
serial log, judges a run and finds the Debian mirror.  No QEMU needed.
"""
from __future__ import annotations

import importlib.util
import io
import os
import re
import sys
from contextlib import redirect_stdout
from typing import Any

from twisted.trial.unittest import SkipTest, TestCase

#: The host side of the run: nothing to do in dom0 (xen/dom0_trial.py reads this).
RUNS_IN_DOM0 = False

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "xen", "runner.py")


def _load_runner() -> Any:
    spec = importlib.util.spec_from_file_location("txlibxl_xen_runner", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


runner = _load_runner()

LOG = """\
(XEN) Xen version 4.17.7 (Debian 4.17.7+13-g2445b30a44-0+deb12u1)
REALXEN-DOM0-INIT uptime=11.2
REALXEN-TOOLSTACK-READY uptime=13.0
REALXEN-VERSIONS python 3.11.2 twisted 22.4.0 cffi 1.15.1 txaio 21.2.1
tests.realxen.test_lifecycle.T.test_a ... [OK]REALXEN-TEST PASS 2.3 tests.realxen.test_lifecycle.T.test_a
REALXEN-TEST FAIL 31.0 tests.realxen.test_lifecycle.T.test_b
REALXEN-TB Traceback (most recent call last):
REALXEN-TB   AssertionError: 1 != 2
REALXEN-TEST SKIP 0.0 tests.realxen.test_twistd_events.T.test_c the plugin is not there
REALXEN-SEQUENCE {"scenario": "op_destroy", "recording": {"ops": ["destroy: ok"], "events": ["death"]}}
REALXEN-SUMMARY {"ok": false, "seconds": 33.3, "counts": {}}
DOM0-TESTS-DONE rc=1 uptime=50.0
"""


def _parsed(text: str) -> Any:
    run = runner.Run(started=0.0)
    with redirect_stdout(io.StringIO()):
        for i, line in enumerate(text.splitlines()):
            run.feed(line, float(i))
    return run


def _judged(run: Any, **timings: float) -> Any:
    out = io.StringIO()
    with redirect_stdout(out):
        passed = runner.report(run, "tcg", dict(limit=600.0, **timings), "/nonexistent/serial.log")
    return passed, out.getvalue()


class SerialLogTests(TestCase):
    def test_each_test_marker_becomes_a_result_even_after_other_output(self) -> None:
        run = _parsed(LOG)
        self.assertEqual(
            [(t.status, t.test_id) for t in run.tests],
            [
                ("PASS", "tests.realxen.test_lifecycle.T.test_a"),
                ("FAIL", "tests.realxen.test_lifecycle.T.test_b"),
                ("SKIP", "tests.realxen.test_twistd_events.T.test_c"),
            ],
        )
        self.assertEqual(run.tests[2].detail, "the plugin is not there")

    def test_traceback_lines_belong_to_the_test_before_them(self) -> None:
        run = _parsed(LOG)
        self.assertEqual(run.tests[1].traceback, ["Traceback (most recent call last):", "  AssertionError: 1 != 2"])

    def test_boot_times_sequences_and_the_end_are_read(self) -> None:
        run = _parsed(LOG)
        self.assertEqual((run.xen_banner, run.dom0_init, run.toolstack), (0.0, 1.0, 2.0))
        self.assertEqual(run.sequences, {"op_destroy": {"ops": ["destroy: ok"], "events": ["death"]}})
        self.assertEqual(run.done_rc, 1)

    def test_a_dom0_crash_is_noticed(self) -> None:
        run = _parsed("(XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds.\n")
        self.assertIn("Dom0 crashed", run.crash)


class VerdictTests(TestCase):
    def test_a_failed_test_fails_the_run_and_is_named_with_its_traceback(self) -> None:
        passed, text = _judged(_parsed(LOG))
        self.assertFalse(passed)
        self.assertIn("tests.realxen.test_lifecycle.T.test_b ... [FAIL]", text)
        self.assertIn("AssertionError: 1 != 2", text)
        self.assertIn("FAILED (", text)

    def test_all_passed_or_skipped_with_the_done_marker_passes(self) -> None:
        text = LOG.replace("REALXEN-TEST FAIL", "REALXEN-TEST PASS").replace("rc=1", "rc=0")
        passed, out = _judged(_parsed(text), total=60.0)
        self.assertTrue(passed)
        self.assertIn("PASSED (skips=1, successes=2)", out)
        self.assertIn("QEMU start to dom0 toolstack ready 2.0s", out)

    def test_no_done_marker_is_a_failure_even_if_every_test_passed(self) -> None:
        text = "REALXEN-TOOLSTACK-READY\nREALXEN-TEST PASS 1.0 t.a\n"
        passed, out = _judged(_parsed(text))
        self.assertFalse(passed)
        self.assertIn("dom0 never finished the tests", out)

    def test_a_timeout_is_a_failure(self) -> None:
        run = _parsed("REALXEN-TOOLSTACK-READY\n")
        run.timed_out = True
        passed, out = _judged(run)
        self.assertFalse(passed)
        self.assertIn("timed out after 600 s", out)

    def test_no_tests_at_all_is_a_failure(self) -> None:
        passed, out = _judged(_parsed("REALXEN-TOOLSTACK-READY\nDOM0-TESTS-DONE rc=0\n"))
        self.assertFalse(passed)
        self.assertIn("no test reported a result", out)


class ImageKeyTests(TestCase):
    def test_the_key_hashes_the_image_inputs(self) -> None:
        self.assertRegex(runner.image_key(), r"^[0-9a-f]{16}$")
        self.assertEqual(runner.image_key(), runner.image_key())


def _load_dom0_trial() -> Any:
    path = os.path.join(os.path.dirname(_PATH), "dom0_trial.py")
    spec = importlib.util.spec_from_file_location("txlibxl_xen_dom0_trial", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Dom0ModulesTests(TestCase):
    """What dom0 runs when the runner names no tests."""

    def test_dom0_runs_every_module_of_tests_realxen_but_the_host_side_ones(self) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        every = sorted(f"tests.realxen.{n[:-3]}" for n in os.listdir(here) if n.startswith("test_") and n.endswith(".py"))
        host_side = {"tests.realxen.test_runner", "tests.realxen.test_sim_fidelity"}
        self.assertEqual(_load_dom0_trial().realxen_modules(), [m for m in every if m not in host_side])

    def test_a_new_module_runs_without_being_named_unless_it_says_it_runs_on_the_host(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        for name, text in (("test_new.py", "X = 1\n"), ("test_host.py", "RUNS_IN_DOM0 = False\n"), ("helper.py", "")):
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
        self.assertEqual(_load_dom0_trial().realxen_modules(directory, "pkg"), ["pkg.test_new"])

    def test_no_real_xen_test_class_overrides_what_trial_itself_uses(self) -> None:
        # Most of these classes only run in dom0, so a clash (a helper named
        # _run, say) would break the real-Xen run and nothing else.
        import inspect
        from importlib import import_module

        from twisted.trial.unittest import TestCase as TrialTestCase

        allowed = {"setUp", "tearDown", "skip", "timeout", "todo", "suppress"}
        allowed |= {"_classSetupFailed", "_class_cleanups"}  # unittest sets them as it runs
        clashes = []
        for name in _load_dom0_trial().realxen_modules():
            for cls_name, cls in inspect.getmembers(import_module(name), inspect.isclass):
                if issubclass(cls, TrialTestCase) and cls.__module__ == name:
                    for attr in vars(cls):
                        if hasattr(TrialTestCase, attr) and attr not in allowed and not attr.startswith("__"):
                            clashes.append(f"{name}.{cls_name}.{attr}")
        self.assertEqual(clashes, [])

    def test_run_tests_sh_names_no_module_of_its_own(self) -> None:
        with open(os.path.join(os.path.dirname(_PATH), "run-tests.sh")) as f:
            script = f.read()
        self.assertNotIn("tests.realxen.test_", script)

    def test_the_runners_help_says_what_runs_by_default(self) -> None:
        out = io.StringIO()
        with redirect_stdout(out):
            try:
                runner.main(["--help"])
            except SystemExit:
                pass
        self.assertIn("every module of tests/realxen that runs in dom0", " ".join(out.getvalue().split()))


class Dom0TimestampTests(TestCase):
    def test_each_line_of_the_dom0_tests_gets_dom0s_uptime(self) -> None:
        import shutil
        import subprocess

        if shutil.which("bash") is None:
            raise SkipTest("no bash")
        stamp = os.path.join(os.path.dirname(_PATH), "dom0-stamp")
        result = subprocess.run([stamp], input="one\nREALXEN-TEST PASS 1.0 t.a\n", capture_output=True, text=True, timeout=60)
        lines = result.stdout.splitlines()
        self.assertEqual(len(lines), 2)
        for line, text in zip(lines, ("one", "REALXEN-TEST PASS 1.0 t.a")):
            self.assertRegex(line, r"^\[\s*\d+\.\d\d\] " + re.escape(text) + "$")

    def test_a_line_is_stamped_when_it_is_written_not_when_a_buffer_fills(self) -> None:
        import select
        import subprocess
        import time

        stamp = os.path.join(os.path.dirname(_PATH), "dom0-stamp")
        proc = subprocess.Popen([stamp], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            proc.stdin.write("first\n")
            proc.stdin.flush()
            # Out before any more input comes: not held back in a buffer.
            ready, _, _ = select.select([proc.stdout], [], [], 10)
            self.assertTrue(ready, "dom0-stamp holds a written line back")
            first = proc.stdout.readline()
            time.sleep(1.0)
            proc.stdin.write("second\n")
            proc.stdin.close()
            second = proc.stdout.readline()
        finally:
            if not proc.stdin.closed:
                proc.stdin.close()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        times = [float(re.match(r"^\[\s*([\d.]+)\]", line).group(1)) for line in (first, second)]
        self.assertGreaterEqual(times[1] - times[0], 0.5)

    def test_markers_after_a_timestamp_are_read(self) -> None:
        run = _parsed("[  42.10] REALXEN-TEST PASS 2.5 t.a\n[  43.00] REALXEN-TB boom\n")
        self.assertEqual([(t.status, t.test_id) for t in run.tests], [("PASS", "t.a")])
        self.assertEqual(run.tests[0].traceback, ["boom"])
