"""
txlibxl on real Xen: the scenarios of :mod:`tests.realxen.scenarios` with
real PV and PVH guests, the real hypervisor, the real C xenstored and
Debian's libxenlight, each one checked against what ``sequences.json``
says real Xen records.

Runs only in a Xen control domain (the image ``xen/runner.py`` boots, or
any dom0 with the guest kernel and initrd in /var/lib/realxen); skipped
anywhere else.  When ``REALXEN_RECORD`` names a file, every recording is
appended to it as a JSON line, so the runner can show and keep them.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest, TestCase

from . import scenarios
from .guests import RealGuestHost, real_xen_unavailable

_UNAVAILABLE = real_xen_unavailable()


def _pvh_unavailable() -> Any:
    """Why PVH guests cannot run here (no HAP), or None."""
    try:
        with open("/sys/hypervisor/properties/capabilities") as f:
            caps = f.read()
    except OSError:
        return "cannot read the hypervisor's capabilities"
    if "hvm" not in caps:
        return f"the hypervisor offers no HVM containers (capabilities: {caps.strip()})"
    return None


class RealXenScenarioTests(TestCase):
    """
    One test per scenario, each with its own Context and guests.
    """

    # A guest's life takes 15-40 s on an idle machine, three times as long on
    # a loaded one (xl create alone: 60-80 s).
    timeout = 360
    if _UNAVAILABLE:
        skip = _UNAVAILABLE

    def setUp(self) -> Any:
        from txlibxl.context import Context

        workdir = tempfile.mkdtemp(prefix="realxen-")
        self.guests = RealGuestHost(reactor, workdir)
        self.addCleanup(lambda: defer.ensureDeferred(self.guests.cleanup()))
        self.addCleanup(self._show_consoles)
        self.ctx = Context(reactor)
        self.addCleanup(self.ctx.close)

    @defer.inlineCallbacks
    def assertScenario(self, name: str) -> Any:
        """Run scenario C{name}; it records what real Xen recorded before."""
        rec = scenarios.Recording()
        try:
            yield defer.ensureDeferred(scenarios.SCENARIOS[name](self.ctx, self.guests, rec))
        finally:
            self._keep(name, rec)
        expected = scenarios.expected_sequences()[name]
        self.assertEqual(rec.as_dict(), expected, self._consoles())

    def _keep(self, name: str, rec: scenarios.Recording) -> None:
        path = os.environ.get("REALXEN_RECORD")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({"scenario": name, "recording": rec.as_dict()}) + "\n")

    def _show_consoles(self) -> None:
        """The end of each guest's console, on dom0's console (the serial log)."""
        for domid, name in self.guests.names.items():
            for line in self.guests.console(domid).splitlines()[-8:]:
                print(f"GUEST-CONSOLE {name}: {line}")

    def _consoles(self) -> str:
        return "\n".join(
            f"--- console of domain {domid}:\n{self.guests.console(domid)[-2000:]}" for domid in self.guests.names
        )

    def test_guest_poweroff_is_a_poweroff_shutdown_then_death(self) -> Any:
        return self.assertScenario("guest_poweroff")

    def test_guest_reboot_is_a_reboot_shutdown_then_death(self) -> Any:
        return self.assertScenario("guest_reboot")

    def test_guest_kernel_panic_is_a_crash_shutdown_then_death(self) -> Any:
        return self.assertScenario("guest_crash")

    def test_shutdown_completes_when_the_guest_acknowledges(self) -> Any:
        return self.assertScenario("op_shutdown")

    def test_reboot_completes_and_the_guest_reboots(self) -> Any:
        return self.assertScenario("op_reboot")

    def test_destroy_of_a_running_guest_completes_with_only_its_death(self) -> Any:
        return self.assertScenario("op_destroy")

    def test_pause_and_unpause_complete_and_the_hypervisor_agrees(self) -> Any:
        return self.assertScenario("op_pause_unpause")

    def test_cancelling_a_shutdown_the_guest_ignores_aborts_it(self) -> Any:
        return self.assertScenario("cancel_shutdown")

    def test_a_cdrom_eject_through_the_xenstore_eject_node_is_seen(self) -> Any:
        return self.assertScenario("disk_eject")

    def test_pvh_guest_poweroff_is_a_poweroff_shutdown_then_death(self) -> Any:
        reason = _pvh_unavailable()
        if reason:
            raise SkipTest(reason)
        return self.assertScenario("pvh_guest_poweroff")


class RealXenQueryTests(TestCase):
    """
    The synchronous queries against the real hypervisor.
    """

    if _UNAVAILABLE:
        skip = _UNAVAILABLE

    def setUp(self) -> None:
        from txlibxl.context import Context

        self.ctx = Context(reactor)
        self.addCleanup(self.ctx.close)

    def test_domain0_is_listed_running_with_its_name(self) -> None:
        dom0 = [d for d in self.ctx.list_domains() if d.domid == 0]
        self.assertEqual(len(dom0), 1)
        self.assertEqual(dom0[0].name, "Domain-0")
        self.assertEqual(self.ctx.domid_to_name(0), "Domain-0")
        self.assertEqual(self.ctx.name_to_domid("Domain-0"), 0)
        self.assertFalse(dom0[0].dying)
