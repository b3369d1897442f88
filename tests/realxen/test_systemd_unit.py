"""
``contrib/txlibxl-events.service`` against a real Debian dom0 (the image
``xen/runner.py`` boots, which has Debian's Xen packages but no systemd):

* every service the unit orders itself against is one Debian's Xen
  packages give a dom0 (``xen-utils-common``'s SysV scripts, which systemd
  turns into ``xen.service`` and ``xendomains.service``);
* ``twistd libxl-events`` with the unit's privileges (its capability
  bounding set and ``NoNewPrivileges=``, applied with ``setpriv`` as
  systemd would) still streams a real guest's lifecycle: libxl needs root,
  not capabilities.

Skipped anywhere but in a Xen control domain.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import List

from twisted.trial.unittest import SkipTest, TestCase

from tests.packaging import unitfile

from . import test_twistd_events as events
from .guests import real_xen_unavailable

_UNAVAILABLE = real_xen_unavailable()


def unit_privileges(path: str = unitfile.UNIT) -> List[str]:
    """``setpriv`` arguments for the unit's capability settings."""
    settings = unitfile.settings(path)
    if "CapabilityBoundingSet" not in settings:
        raise ValueError("the unit sets no capability bounding set to apply")
    # The last setting wins; an empty one means no capability at all.
    bounding = settings["CapabilityBoundingSet"][-1].split()
    ambient = " ".join(settings.get("AmbientCapabilities", [""])).split()
    if bounding and bounding[0].startswith("~"):
        raise ValueError("a ~list (capabilities to drop) is not applied here")
    keep = ",".join("+" + c.lower() for c in bounding)
    args = ["--bounding-set=-all" + ("," + keep if keep else ""), "--inh-caps=-all", "--ambient-caps=-all"]
    if ambient:
        raise ValueError("ambient capabilities are not applied here")
    if settings.get("NoNewPrivileges", ["no"])[-1] in ("yes", "true", "1", "on"):
        args.append("--no-new-privs")
    return args


def _status(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


class UnitPrivilegesTests(TestCase):
    """On any machine: what the sandboxed twistd below is started with."""

    def test_the_units_privileges_are_no_capability_and_no_new_privileges(self) -> None:
        self.assertEqual(
            unit_privileges(),
            ["--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs"],
        )


class DebianUnitsTests(TestCase):
    if _UNAVAILABLE:
        skip = _UNAVAILABLE

    def test_every_service_it_orders_against_is_a_sysv_script_of_debians_xen_packages(self) -> None:
        services = sorted(u for u in unitfile.dependencies() if u.endswith(".service"))
        self.assertTrue(services)
        have = unitfile.units_on("/")
        self.assertEqual([s for s in services if s not in have], [], "not in this Debian dom0")
        if shutil.which("dpkg") is None:
            raise SkipTest("no dpkg to say which package ships them")
        for service in services:
            script = "/etc/init.d/" + service[: -len(".service")]
            owner = subprocess.run(["dpkg", "-S", script], capture_output=True, text=True, timeout=60).stdout
            self.assertTrue(owner.startswith("xen-utils-common:"), f"{script}: {owner!r}")


class SandboxedTwistdTests(events.TwistdEventStreamTests):
    """
    The lifecycle test of :mod:`tests.realxen.test_twistd_events`, with
    twistd under the unit's privileges, which it checks in twistd's
    ``/proc/<pid>/status`` once twistd answers.
    """

    if _UNAVAILABLE:
        skip = _UNAVAILABLE
    elif shutil.which("setpriv") is None:
        skip = "no setpriv (util-linux) to apply the unit's privileges"
    else:
        launcher = [shutil.which("setpriv")] + unit_privileges() + ["--"]

    async def _start_twistd(self) -> str:
        base = await super()._start_twistd()
        # The sandbox holds: twistd, answering, has no capability left.
        status = _status(self.twistd_pid)
        print(f"SANDBOXED-TWISTD CapEff={status['CapEff']} CapBnd={status['CapBnd']} "
              f"NoNewPrivs={status.get('NoNewPrivs')}", flush=True)  # fmt: skip
        self.assertEqual(int(status["CapEff"], 16), 0, status)
        self.assertEqual(int(status["CapBnd"], 16), 0, status)
        self.assertEqual(status.get("NoNewPrivs", "").strip(), "1", status)
        return base
