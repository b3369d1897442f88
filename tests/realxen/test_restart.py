"""
A guest the toolstack restarts, on real Xen: ``on_reboot = "restart"``
with xl's daemon carrying it out.  The watch sees the reboot and the old
domain's death; the toolstack builds a new domain of the same name, which
boots once more, idle: the guest's action happened once, not on every
restart (see :mod:`tests.realxen.guests`).

Skipped anywhere but in a Xen control domain.
"""
from __future__ import annotations

import tempfile
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from txlibxl.events import DomainDeath, DomainShutdown, ShutdownReason

from .guests import CommandFailed, RealGuestHost, poll, real_xen_unavailable, run
from .scenarios import GuestSpec

_UNAVAILABLE = real_xen_unavailable()


class RestartTests(TestCase):
    timeout = 420  # two guest boots and xl's restart, under TCG
    if _UNAVAILABLE:
        skip = _UNAVAILABLE

    def setUp(self) -> None:
        from txlibxl.context import Context

        self.guests = RealGuestHost(reactor, tempfile.mkdtemp(prefix="realxen-"))
        self.addCleanup(lambda: defer.ensureDeferred(self.guests.cleanup()))
        self.addCleanup(self._show)
        self.ctx = Context(reactor)
        self.addCleanup(self.ctx.close)

    def _show(self) -> None:
        """The guest's console and xl's log, on dom0's console (the serial log)."""
        for domid, name in self.guests.names.items():
            for line in self.guests.console(domid).splitlines()[-12:]:
                print(f"GUEST-CONSOLE {name}: {line}")
            try:
                with open(f"/var/log/xen/xl-{name}.log", errors="replace") as f:
                    for line in f.read().splitlines()[-20:]:
                        print(f"XL-LOG {name}: {line}")
            except OSError:
                pass

    async def _new_domid(self, name: str, old: int) -> int:
        found = []

        async def restarted() -> bool:
            try:
                domid = int((await run("xl", "domid", name)).strip())
            except (CommandFailed, ValueError):
                return False
            if domid != old:
                found.append(domid)
            return bool(found)

        await poll(reactor, restarted, f"xl to restart {name}", timeout=120)
        return found[0]

    @defer.inlineCallbacks
    def test_a_rebooting_guest_is_restarted_as_a_new_domain_that_boots_idle(self) -> Any:
        yield defer.ensureDeferred(self._restart())

    async def _restart(self) -> None:
        first = await self.guests.start(GuestSpec("reboot", on_reboot="restart"))
        name = self.guests.names[first]
        watch = self.ctx.watch_domain(first)
        await self.ctx.unpause(first)
        shutdown = await watch.next_event()
        self.assertIsInstance(shutdown, DomainShutdown)
        self.assertEqual(shutdown.reason, ShutdownReason.REBOOT)
        self.assertIsInstance(await watch.next_event(), DomainDeath)  # xl destroys it to restart it
        second = await self._new_domid(name, first)
        print(f"GUEST-RESTARTED {name} domid={first} -> {second}", flush=True)
        # xl builds the new domain paused and unpauses it when it is done:
        # unpausing it here, while xl still builds it, crashed it (#UD).
        await self.guests.ready(first, boot="restart")
        console = self.guests.console(first)
        self.assertIn("action=reboot boot=first", console)
        self.assertIn("action=idle boot=restart", console)
        self.assertEqual(console.count("GUEST-READY"), 2, console)
        info = self.ctx.domain_info(second)
        self.assertFalse(info.shutdown or info.dying, info)
        again = self.ctx.watch_domain(second)
        await self.ctx.destroy(second)
        self.assertIsInstance(await again.next_event(), DomainDeath)
