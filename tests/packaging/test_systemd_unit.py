"""
``contrib/txlibxl-events.service``: ordered against the units a Debian 12
dom0 really has, sandboxed as far as libxl lets it (measured with
``systemd-analyze security``), documented where it says.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

from twisted.trial.unittest import SkipTest, TestCase

from . import unitfile

OPERATIONS = os.path.join(unitfile.CHECKOUT, "docs", "operations.rst")

#: The most ``systemd-analyze security`` may rate the unit.
MAX_EXPOSURE = 5.0

#: The units Debian's Xen tools give a dom0: xen-utils-common ships no unit
#: files, only /etc/init.d/xen and /etc/init.d/xendomains, from which
#: systemd's SysV generator makes these (tests.realxen.test_debian_units
#: checks it in the real Debian dom0).
XEN_SYSV_UNITS = {"xen.service", "xendomains.service"}

#: ExecStart as the daemon's options are today (another part of txlibxl).
EXEC_START = (
    "/opt/txlibxl/venv/bin/twistd -n --pidfile= libxl-events --listen tcp:8089:interface=127.0.0.1 "
    "--listen unix:/run/txlibxl/events.sock --output /var/log/txlibxl/events.jsonl"
)


def _systemd_major() -> int:
    out = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True, timeout=60).stdout
    match = re.match(r"systemd (\d+)", out)
    return int(match.group(1)) if match else 0


def measured_exposure() -> float:
    """The unit's overall exposure by ``systemd-analyze security --offline=yes``."""
    if shutil.which("systemd-analyze") is None:
        raise SkipTest("systemd-analyze is not installed (Debian: apt-get install systemd)")
    if _systemd_major() < 250:
        raise SkipTest("systemd-analyze security --offline needs systemd 250 or later")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", unitfile.UNIT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if match is None:
        raise AssertionError(f"no exposure figure from systemd-analyze:\n{result.stdout}\n{result.stderr}")
    return float(match.group(1))


class ExposureTests(TestCase):
    def test_systemd_analyze_security_rates_it_at_most_5(self) -> None:
        exposure = measured_exposure()
        self.assertLessEqual(exposure, MAX_EXPOSURE)

    def test_the_operations_page_gives_the_figure_systemd_analyze_measures(self) -> None:
        with open(OPERATIONS) as f:
            text = f.read()
        match = re.search(r"rates it\s+\*\*(\d+\.\d+) \w+\*\*\s+\(systemd (\d+)", text)
        self.assertIsNotNone(match, "docs/operations.rst does not give the unit's exposure figure")
        exposure = measured_exposure()
        if _systemd_major() != int(match.group(2)):
            raise SkipTest(f"the page gives the figure of systemd {match.group(2)}, this is {_systemd_major()}")
        self.assertEqual(float(match.group(1)), exposure)


class DependencyTests(TestCase):
    def test_it_orders_itself_only_against_units_a_debian_dom0_has(self) -> None:
        host = unitfile.units_on("/")
        if not os.path.exists("/lib/systemd/system/multi-user.target"):
            raise SkipTest("this host has no systemd units to compare with")
        unknown = sorted(u for u in unitfile.dependencies() if u not in host and u not in XEN_SYSV_UNITS)
        self.assertEqual(unknown, [], "no Debian 12 package provides these units")

    def test_it_starts_after_xen_and_before_the_guests_are_started(self) -> None:
        s = unitfile.settings()
        after = " ".join(s.get("After", [])).split()
        self.assertIn("xen.service", after)
        self.assertIn("xen.service", " ".join(s.get("Wants", [])).split())
        self.assertIn("xendomains.service", " ".join(s.get("Before", [])).split())


class ServiceTests(TestCase):
    def test_it_has_its_state_directory(self) -> None:
        self.assertEqual(unitfile.settings().get("StateDirectory"), ["txlibxl-events"])

    def test_exec_start_keeps_the_daemons_options(self) -> None:
        self.assertEqual(unitfile.settings()["ExecStart"], [EXEC_START])
