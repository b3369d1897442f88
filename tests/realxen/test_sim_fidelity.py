"""
The simulator's fidelity, measured: every scenario of
:mod:`tests.realxen.scenarios` run on the simulated host must record what
real Xen recorded (``sequences.json``, written by real-Xen runs of
``xen/runner.py``).

The simulated guests do what the real ones do by themselves through the
simulator's control API: a guest that powers off, reboots or crashes is
told to by ``control.shutdown``/``crash``; a paused guest does not answer
shutdown requests; the device model's eject is ``control.eject``.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest

from . import scenarios

try:
    from txlibxl.testing import SimulatedHostTestCase
except ImportError as e:  # pragma: no cover - the fixture is part of the package
    raise SkipTest(f"txlibxl.testing is unavailable: {e}")

#: Runs on the host (make check), not in the real-Xen dom0: under TCG a
#: simulated host does not start within its fixture's timeout, and it
#: needs no Xen (xen/dom0_trial.py reads this).
RUNS_IN_DOM0 = False


class SimulatedGuestHost(scenarios.GuestHost):
    """
    The scenarios' guests on a simulated host (C{control}: its client).
    """

    def __init__(self, control: Any) -> None:
        self._control = control
        self._count = 0

    async def start(self, spec: scenarios.GuestSpec) -> int:
        if not spec.preserved:
            raise NotImplementedError("the simulated toolstack never destroys or restarts a domain by itself")
        self._count += 1
        args: dict = {"name": f"sim-{self._count}-{spec.action}", "type": spec.type, "paused": True}
        if spec.cdrom:
            args["disks"] = [{"vdev": scenarios.CDROM_VDEV, "cdrom": True, "target": "/srv/cd.iso"}]
        created = await self._control.create_domain(**args)
        return created["domid"]

    async def ready(self, domid: int) -> None:
        return None  # a simulated guest answers as soon as it runs

    async def act(self, domid: int, action: str) -> None:
        if action in ("poweroff", "reboot"):
            await self._control.shutdown(domid, action)
        elif action == "crash":
            await self._control.crash(domid)

    async def request_written(self, domid: int) -> None:
        await self._control.ping()  # the host has seen libxl's write

    async def eject(self, domid: int, vdev: str) -> None:
        await self._control.eject(domid, vdev)


class SimulatedHostFidelityTests(SimulatedHostTestCase):
    """
    One test per scenario: the simulated host records what real Xen did.
    """

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        from txlibxl.context import Context

        self.ctx = Context(reactor)
        self.addCleanup(self.ctx.close)

    @defer.inlineCallbacks
    def assertSameAsRealXen(self, name: str) -> Any:
        rec = scenarios.Recording()
        yield defer.ensureDeferred(
            scenarios.SCENARIOS[name](self.ctx, SimulatedGuestHost(self.host.control), rec)
        )
        self.assertEqual(rec.as_dict(), scenarios.expected_sequences()[name])

    def test_guest_poweroff_records_what_real_xen_does(self) -> Any:
        return self.assertSameAsRealXen("guest_poweroff")

    def test_guest_reboot_records_what_real_xen_does(self) -> Any:
        return self.assertSameAsRealXen("guest_reboot")

    def test_guest_crash_records_what_real_xen_does(self) -> Any:
        return self.assertSameAsRealXen("guest_crash")

    def test_shutdown_op_records_what_real_xen_does(self) -> Any:
        return self.assertSameAsRealXen("op_shutdown")

    def test_reboot_op_records_what_real_xen_does(self) -> Any:
        return self.assertSameAsRealXen("op_reboot")

    def test_destroy_op_records_what_real_xen_does(self) -> Any:
        return self.assertSameAsRealXen("op_destroy")

    def test_pause_unpause_records_what_real_xen_does(self) -> Any:
        return self.assertSameAsRealXen("op_pause_unpause")

    def test_cancelled_shutdown_records_what_real_xen_does(self) -> Any:
        return self.assertSameAsRealXen("cancel_shutdown")

    def test_disk_eject_records_what_real_xen_does(self) -> Any:
        return self.assertSameAsRealXen("disk_eject")

    def test_pvh_guest_poweroff_records_what_real_xen_does(self) -> Any:
        return self.assertSameAsRealXen("pvh_guest_poweroff")
