"""
Moving domains through txlibxl on real Xen: a booted PV guest saved to a
file and restored from it, and a booted PV guest live-migrated to this
same dom0 (the source :meth:`~txlibxl.context.Context.migrate` and the
target :func:`~txlibxl.migration.listen_for_migrations`, over a unix
socket), each Deferred firing once, the guest running after it.

Runs only in a Xen control domain with the guest kernel and initrd of the
image ``xen/runner.py`` boots; skipped anywhere else, and where Debian's
save helper is missing.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, List

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SkipTest

from .guests import poll
from .test_building import BuildingTestCase

HELPER = "/usr/lib/xen-4.17/bin/libxl-save-helper"


def _once(d: defer.Deferred, fired: List[Any]) -> defer.Deferred:
    return d.addCallback(lambda result: fired.append(result) or result)


class MovingTestCase(BuildingTestCase):
    def setUp(self) -> None:
        if not os.access(HELPER, os.X_OK):
            raise SkipTest(f"{HELPER} is not installed")
        super().setUp()
        self.files = tempfile.mkdtemp(prefix="realxen-move-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.files, True)

    async def booted_pv(self, what: str) -> tuple:
        config, domid, _ = await self.start_pv(what)
        await self.ctx.unpause(domid)
        await self.guests.booted(domid)
        return config, domid

    async def assertRuns(self, domid: int) -> None:
        """Domain C{domid} runs: not paused, not shut down, and its vCPU
        time goes on."""
        info = self.ctx.domain_info(domid)
        self.assertFalse(info.paused or info.shutdown, info)
        before = info.cpu_time_ns
        await poll(reactor, lambda: defer.succeed(self.ctx.domain_info(domid).cpu_time_ns > before),
                   f"domain {domid} to run", 60)

    def timed(self, what: str, started: float) -> None:
        print(f"MOVING {what} in {reactor.seconds() - started:.1f} s", flush=True)


class SaveRestoreTests(MovingTestCase):
    def test_a_pv_guest_is_saved_to_a_file_and_restored_running(self) -> Any:
        return defer.ensureDeferred(self._save_restore())

    async def _save_restore(self) -> None:
        _, domid = await self.booted_pv("save")
        saved = await self.ctx.domain_config(domid)
        path = os.path.join(self.files, "guest.save")
        fired: List[Any] = []
        started = reactor.seconds()
        await _once(self.ctx.save(domid, path), fired)
        self.timed(f"save of {os.path.getsize(path)} bytes", started)
        self.assertEqual(len(fired), 1)
        await self.assertGone(domid)
        fired = []
        started = reactor.seconds()
        restored = await _once(self.ctx.restore(saved, path), fired)
        self.timed("restore", started)
        self.assertEqual(fired, [restored])
        self.guests.names[restored] = saved["c_info"]["name"]
        self.assertEqual(self.ctx.domain_info(restored).uuid, saved["c_info"]["uuid"])
        await self.ctx.unpause(restored)
        await self.assertRuns(restored)
        # Let the fired Deferreds' reactor turns pass: nothing fires twice.
        await task.deferLater(reactor, 1, lambda: None)
        self.assertEqual(fired, [restored])
        await self.ctx.destroy(restored)
        await self.assertGone(restored)


class LocalMigrationTests(MovingTestCase):
    """
    Migrations to this same dom0.  A live migration needs the hypervisor
    to track the guest's dirty pages (log-dirty mode): for a PV guest
    that is shadow paging, which a hypervisor built without it refuses
    (``XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY``: ``EOPNOTSUPP``); a PVH
    guest's is done with nested paging (HAP).
    """

    # libxl's and libxc's messages (the save helper's, through libxl) of
    # the migration go to dom0's console: what a failure says is there.
    log_level = "debug"

    def setUp(self) -> None:
        from twisted.logger import globalLogPublisher

        super().setUp()
        self.messages: List[str] = []

        def keep(event: Any) -> None:
            if "text" in event:
                self.messages.append(event["text"])

        globalLogPublisher.addObserver(keep)
        self.addCleanup(globalLogPublisher.removeObserver, keep)

    def test_a_pv_guest_migrates_to_this_host_and_runs_there(self) -> Any:
        return defer.ensureDeferred(self._migrate("pv", live=False))

    def test_a_pv_guest_migrates_live_to_this_host_and_runs_there(self) -> Any:
        return defer.ensureDeferred(self._migrate("pv", live=True))

    def test_a_pvh_guest_migrates_live_to_this_host_and_runs_there(self) -> Any:
        from .test_building import _hvm_capable

        caps = _hvm_capable() or ""
        if "hvm" not in caps:
            raise SkipTest(f"the hypervisor offers no HVM containers for PVH (capabilities: {caps})")
        return defer.ensureDeferred(self._migrate("pvh", live=True))

    async def _booted(self, type: str) -> tuple:
        if type == "pv":
            return await self.booted_pv("migrate")
        config = self.guests.config(self.guests.name("pvh-migrate"), type="pvh")
        domid, _, _ = await self.guests.create(config)
        await self.ctx.unpause(domid)
        await self.guests.booted(domid)
        return config, domid

    async def _migrate(self, type: str, live: bool) -> None:
        from txlibxl.migration import MigrationFailed, listen_for_migrations

        config, domid = await self._booted(type)
        name = config["c_info"]["name"]
        uuid = self.ctx.domain_info(domid).uuid
        path = os.path.join(self.files, "in.sock")
        arrived: List[int] = []
        listener = await listen_for_migrations(self.ctx, unix=path, on_arrival=lambda d, c: arrived.append(d))
        self.addCleanup(listener.stop)
        fired: List[Any] = []
        started = reactor.seconds()
        self.tracing = True
        try:
            there = await _once(self.ctx.migrate(domid, f"unix:path={path}", live=live), fired)
        except MigrationFailed as e:
            refused = [m for m in self.messages if "Failed to enable logdirty: 95" in m]
            if not (live and refused):
                raise
            # The failure is typed, and the domain runs on where it was.
            self.assertEqual(e.side, "source")
            await self.assertRuns(domid)
            self.assertEqual(arrived, [])
            self.assertEqual([d.name for d in self.ctx.list_domains()].count(name), 1)
            print(f"MOVING live migration of a {type} guest refused by the hypervisor in "
                  f"{reactor.seconds() - started:.1f} s: {refused[0].strip()}", flush=True)
            raise SkipTest(f"this hypervisor cannot track a {type.upper()} guest's dirty pages "
                           "(log-dirty: EOPNOTSUPP, no shadow paging), so it cannot migrate one live; "
                           "the domain runs on") from None
        finally:
            self.tracing = False
        self.timed(f"{'live ' if live else ''}migration of a {type} guest to localhost", started)
        self.guests.names[there] = name
        self.assertEqual(fired, [there])
        self.assertNotEqual(there, domid)
        await self.assertGone(domid)
        await poll(reactor, lambda: defer.succeed(arrived == [there]), "the arrival to be reported", 60)
        info = self.ctx.domain_info(there)
        self.assertEqual((info.uuid, info.name), (uuid, name))
        await self.assertRuns(there)
        await task.deferLater(reactor, 1, lambda: None)
        self.assertEqual(fired, [there])
        await self.ctx.destroy(there)
        await self.assertGone(there)
