"""
The device model stand-in as the process libxl spawns (``python -m
txlibxl.sim.devicemodel`` with libxl's command line and environment),
against a simulated host: it says in xenstore that it runs, serves QMP on
the socket under the host's root, follows the guest's eject, and ends —
tidying up — on ``SIGHUP``, on ``quit``, when its domain is destroyed and
when its host goes.  A command line QEMU would refuse ends it at once.
"""
from __future__ import annotations

import itertools
import os
import sys
from typing import Any, Dict, List, Optional

from twisted.internet import defer, error, reactor, task
from twisted.internet.protocol import ProcessProtocol

from tests.sim.qmp_client import qmp_connect, qmp_open
from tests.sim.test_devicemodel_qmp import libxl_argv
from tests.sim.test_libxl_on_sim import LibxlOnSimTestCase
from txlibxl.sim.host_root import GUEST_EJECT
from txlibxl.testing import start_simulated_host


_names = itertools.count(1)


class _Process(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred = defer.Deferred()
        self.err = b""

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        value = reason.value
        code = 0 if isinstance(value, error.ProcessDone) else (value.exitCode if value.exitCode is not None else -value.signal)
        self.ended.callback(code)


class StandInTestCase(LibxlOnSimTestCase):
    timeout = 60

    def spawn(self, argv: List[str], env: Optional[Dict[str, str]] = None) -> _Process:
        proc = _Process()
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        full.update(env if env is not None else self.host.environment())
        reactor.spawnProcess(proc, sys.executable, [sys.executable, "-m", "txlibxl.sim.devicemodel", *argv], env=full)

        def kill() -> Any:
            if not proc.ended.called:
                os.kill(proc.transport.pid, 9)
                return proc.ended

        self.addCleanup(kill)
        return proc

    def socket(self, domid: int, root: Optional[str] = None) -> str:
        return os.path.join(root or self.host.info["root"], "var/run/xen/qmp-libxl-%d" % domid)

    async def read(self, path: str) -> Optional[str]:
        try:
            return (await self.xenstore("xenstore-read", path)).strip()
        except self.failureException:
            return None

    async def until(self, condition: Any, seconds: float = 20.0) -> None:
        for _ in range(int(seconds / 0.05)):
            result = condition()
            if isinstance(result, defer.Deferred) or hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await task.deferLater(reactor, 0.05, lambda: None)
        self.fail("the condition was not met in time")

    async def domain(self) -> int:
        """A domain for the stand-in (a PV one: the host plays the device
        model of its own HVM domains)."""
        return (await self.create("guest%d" % next(_names), paused=True))["domid"]

    async def started(self, domid: int, **kw: Any) -> _Process:
        proc = self.spawn(libxl_argv(domid=domid, **kw))
        state = "/local/domain/0/device-model/%d/state" % domid
        await self.until(lambda: self.read(state))
        self.assertEqual(await self.read(state), "running")
        return proc


class StandInTests(StandInTestCase):
    async def test_it_says_it_runs_and_serves_qmp_under_the_hosts_root(self) -> None:
        domid = await self.domain()
        await self.started(domid)
        client = await qmp_connect(self.socket(domid))
        self.assertEqual((await client.call("query-status"))["status"], "running")
        self.assertEqual((await client.call("query-name")), {"name": "hvm1"})
        await client.close()

    async def test_sighup_ends_it_and_removes_its_socket(self) -> None:
        domid = await self.domain()
        proc = await self.started(domid)
        os.kill(proc.transport.pid, 1)
        self.assertEqual(await proc.ended, 0)
        self.assertFalse(os.path.exists(self.socket(domid)))
        self.assertIn(b"stopping (signal 1)", proc.err)

    async def test_quit_ends_it(self) -> None:
        domid = await self.domain()
        proc = await self.started(domid)
        client = await qmp_connect(self.socket(domid))
        self.assertEqual(await client.call("quit"), {})
        self.assertEqual(await proc.ended, 0)

    async def test_the_guest_ejecting_empties_the_drive_and_tells_libxl(self) -> None:
        domid = await self.domain()
        await self.started(domid)
        client = await qmp_connect(self.socket(domid))
        # What the host's eject op writes for a device model it did not start.
        request = GUEST_EJECT % (domid, 5632)
        await self.xenstore("xenstore-write", request, "eject")

        async def empty() -> bool:
            cd = (await client.call("query-block"))[1]
            return cd["tray_open"] and "inserted" not in cd

        await self.until(empty)
        await self.until(lambda: self.read("/local/domain/%d/device/vbd/5632/eject" % domid))
        self.assertEqual(await self.read("/local/domain/%d/device/vbd/5632/eject" % domid), "eject")
        self.assertIsNone(await self.read(request))
        [moved] = [m for m in client.messages if m.get("event") == "DEVICE_TRAY_MOVED"]
        self.assertEqual(moved["data"]["tray-open"], True)
        await client.close()

    async def test_its_domain_destroyed_it_ends_and_removes_its_node(self) -> None:
        domid = await self.domain()
        proc = await self.started(domid)
        await self.host.control.destroy([domid])
        self.assertEqual(await proc.ended, 0)
        self.assertIsNone(await self.read("/local/domain/0/device-model/%d" % domid))
        self.assertIn(b"is gone", proc.err)

    async def test_a_domain_that_does_not_exist_has_no_device_model(self) -> None:
        proc = self.spawn(libxl_argv(domid=4000))
        self.assertEqual(await proc.ended, 0)
        self.assertFalse(os.path.exists(self.socket(4000)))

    async def test_a_command_line_qemu_would_refuse_ends_it_at_once(self) -> None:
        proc = self.spawn(["-name", "nodomid"])
        self.assertEqual(await proc.ended, 1)
        self.assertIn(b"qemu-system-i386: -xen-domid", proc.err)

    async def test_the_mute_fault_says_it_runs_but_never_answers(self) -> None:
        await self.host.control.fault("device_model_mute")
        domid = await self.domain()
        await self.started(domid)
        client = await qmp_open(self.socket(domid))
        client.transport.write(b'{"execute": "qmp_capabilities", "id": 1}\r\n')
        await task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(client.messages, [])
        await client.close()


class StandInLifelineTests(StandInTestCase):
    async def test_it_ends_with_its_host(self) -> None:
        other = await start_simulated_host()
        env = {"XENSTORED_PATH": other.info["xenstored"], "TXLIBXL_SIM_HYPERCALL": other.info["hypercall"],
               "TXLIBXL_SIM_ROOT": other.info["root"]}
        dom = await other.control.create_domain(name="guest", paused=True)
        proc = self.spawn(libxl_argv(domid=dom["domid"]), env)
        await self.until(lambda: os.path.exists(self.socket(dom["domid"], other.info["root"])))
        await other.stop()
        self.assertEqual(await proc.ended, 0)
        self.assertIn(b"xenstore connection lost", proc.err)
