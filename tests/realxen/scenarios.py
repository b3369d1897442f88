"""
Guest lifecycle scenarios that run unchanged on real Xen and on the
simulated host, and what each one records.

A scenario drives a :class:`~txlibxl.context.Context` through one guest's
life and records two ordered streams in a :class:`Recording`: what the
Context's operations answered (``"unpause: ok"``, ``"shutdown:
cancelled"``, ``"paused=True"``) and what its watches reported
(``"shutdown poweroff"``, ``"death"``, ``"eject hdc cdrom=1"``).  The two
streams are kept apart because their interleaving depends on timing (a
destroy's completion and the domain's death race), while the order within
each one is libxl's contract.

Where the guest comes from and how it behaves is the job of a
:class:`GuestHost`: on real Xen a PV (or PVH) guest created with ``xl``
whose ``/init`` powers off, reboots or crashes itself
(:mod:`tests.realxen.guests`); on the simulated host, the simulator's
control API (:mod:`tests.realxen.test_sim_fidelity`).

What real Xen recorded is checked in as ``sequences.json``: the real-Xen
tests fail when real Xen records anything else, and the simulator
fidelity tests fail when the simulated host does.
"""
from __future__ import annotations

import json
import os
from typing import Any, Awaitable, Callable, Dict, List

import attr

from txlibxl import errors
from txlibxl.events import DiskEject, DomainDeath, DomainShutdown

__all__ = [
    "GuestSpec",
    "GuestHost",
    "Recording",
    "SCENARIOS",
    "SEQUENCES_PATH",
    "expected_sequences",
]

#: What real Xen recorded, by scenario name.
SEQUENCES_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sequences.json")

#: The CD-ROM the disk scenarios use, and its libxl device number.
CDROM_VDEV = "hdc"


@attr.s(frozen=True, auto_attribs=True)
class GuestSpec:
    """
    A guest to start, always paused.

    :ivar action: what the guest does once unpaused: ``"idle"`` (runs,
        answers shutdown and reboot requests), ``"poweroff"``,
        ``"reboot"`` or ``"crash"`` (does that by itself).
    :ivar type: ``"pv"`` or ``"pvh"``.
    :ivar cdrom: the guest has a CD-ROM ``hdc``.
    :ivar on_poweroff: what the toolstack does once the guest has powered
        off (xl's actions: ``"preserve"``, ``"destroy"``, ``"restart"``,
        ...).  ``"preserve"``, the default, leaves it to the test.
    :ivar on_reboot: likewise, once the guest has rebooted.
    :ivar on_crash: likewise, once the guest has crashed.
    """

    action: str = "idle"
    type: str = "pv"
    cdrom: bool = False
    on_poweroff: str = "preserve"
    on_reboot: str = "preserve"
    on_crash: str = "preserve"

    @property
    def preserved(self) -> bool:
        """Whether every shutdown leaves the domain as it is, for the test."""
        return self.on_poweroff == self.on_reboot == self.on_crash == "preserve"


class GuestHost:
    """
    Where the scenarios' guests live.  Every method returns an awaitable.
    """

    def start(self, spec: GuestSpec) -> Awaitable[int]:
        """A new paused guest; its domid."""
        raise NotImplementedError

    def ready(self, domid: int) -> Awaitable[None]:
        """Fires once the running guest can answer shutdown requests."""
        raise NotImplementedError

    def act(self, domid: int, action: str) -> Awaitable[None]:
        """Fires once the unpaused guest has been set on C{action}."""
        raise NotImplementedError

    def request_written(self, domid: int) -> Awaitable[None]:
        """Fires once libxl has asked the guest to shut down (control node)."""
        raise NotImplementedError

    def eject(self, domid: int, vdev: str) -> Awaitable[None]:
        """The device model ejects C{vdev}'s medium."""
        raise NotImplementedError


@attr.s(auto_attribs=True)
class Recording:
    """
    What one scenario saw, in two ordered streams.
    """

    ops: List[str] = attr.ib(factory=list)
    events: List[str] = attr.ib(factory=list)

    async def op(self, name: str, d: Any) -> None:
        """Await the operation's Deferred C{d} and record how it ended."""
        try:
            await d
        except errors.OperationAborted:
            self.ops.append(f"{name}: cancelled")
        except errors.LibxlError as e:
            self.ops.append(f"{name}: error {e.code}")
        else:
            self.ops.append(f"{name}: ok")

    def note(self, text: str) -> None:
        self.ops.append(text)

    def event(self, event: Any) -> None:
        self.events.append(describe(event))

    def as_dict(self) -> Dict[str, List[str]]:
        return {"ops": list(self.ops), "events": list(self.events)}


def describe(event: Any) -> str:
    """One event as a line of a recording."""
    if isinstance(event, DomainShutdown):
        return f"shutdown {event.reason.name.lower()}"
    if isinstance(event, DomainDeath):
        return "death"
    if isinstance(event, DiskEject):
        return f"eject {event.vdev} cdrom={event.disk.is_cdrom}"
    return repr(event)


Scenario = Callable[[Any, GuestHost, Recording], Awaitable[None]]


def _note_shut_down(ctx: Any, rec: Recording, event: Any) -> None:
    """What domain_info says of a domain that reported C{event} (a shutdown)."""
    info = ctx.domain_info(event.domid)
    reason = info.shutdown_reason.name.lower() if info.shutdown_reason is not None else None
    rec.note(f"info: shutdown={info.shutdown} reason={reason} dying={info.dying} same uuid={info.uuid == event.uuid}")


async def _shuts_itself_down(ctx: Any, host: GuestHost, rec: Recording, spec: GuestSpec) -> None:
    domid = await host.start(spec)
    watch = ctx.watch_domain(domid)
    await rec.op("unpause", ctx.unpause(domid))
    await host.act(domid, spec.action)
    event = await watch.next_event()
    rec.event(event)
    _note_shut_down(ctx, rec, event)
    await rec.op("destroy", ctx.destroy(domid))
    rec.event(await watch.next_event())


async def guest_poweroff(ctx: Any, host: GuestHost, rec: Recording) -> None:
    """A PV guest powers itself off; it is destroyed."""
    await _shuts_itself_down(ctx, host, rec, GuestSpec("poweroff"))


async def guest_reboot(ctx: Any, host: GuestHost, rec: Recording) -> None:
    """A PV guest reboots itself (kept shut down: nobody restarts it); destroyed."""
    await _shuts_itself_down(ctx, host, rec, GuestSpec("reboot"))


async def guest_crash(ctx: Any, host: GuestHost, rec: Recording) -> None:
    """A PV guest's kernel panics; it is destroyed."""
    await _shuts_itself_down(ctx, host, rec, GuestSpec("crash"))


async def pvh_guest_poweroff(ctx: Any, host: GuestHost, rec: Recording) -> None:
    """A PVH guest powers itself off; it is destroyed."""
    await _shuts_itself_down(ctx, host, rec, GuestSpec("poweroff", type="pvh"))


async def _asked(ctx: Any, host: GuestHost, rec: Recording, op: str) -> None:
    domid = await host.start(GuestSpec("idle"))
    watch = ctx.watch_domain(domid)
    await rec.op("unpause", ctx.unpause(domid))
    await host.ready(domid)
    await rec.op(op, getattr(ctx, op)(domid))
    event = await watch.next_event()
    rec.event(event)
    _note_shut_down(ctx, rec, event)
    await rec.op("destroy", ctx.destroy(domid))
    rec.event(await watch.next_event())


async def op_shutdown(ctx: Any, host: GuestHost, rec: Recording) -> None:
    """Context.shutdown of a running guest, which complies; it is destroyed."""
    await _asked(ctx, host, rec, "shutdown")


async def op_reboot(ctx: Any, host: GuestHost, rec: Recording) -> None:
    """Context.reboot of a running guest, which complies; it is destroyed."""
    await _asked(ctx, host, rec, "reboot")


async def op_destroy(ctx: Any, host: GuestHost, rec: Recording) -> None:
    """Context.destroy of a running guest."""
    domid = await host.start(GuestSpec("idle"))
    watch = ctx.watch_domain(domid)
    await rec.op("unpause", ctx.unpause(domid))
    await rec.op("destroy", ctx.destroy(domid))
    rec.event(await watch.next_event())


async def op_pause_unpause(ctx: Any, host: GuestHost, rec: Recording) -> None:
    """Context.pause and unpause of a guest, as domain_info sees it."""
    domid = await host.start(GuestSpec("idle"))
    watch = ctx.watch_domain(domid)
    rec.note(f"paused={ctx.domain_info(domid).paused}")
    await rec.op("unpause", ctx.unpause(domid))
    rec.note(f"paused={ctx.domain_info(domid).paused}")
    await rec.op("pause", ctx.pause(domid))
    rec.note(f"paused={ctx.domain_info(domid).paused}")
    await rec.op("unpause", ctx.unpause(domid))
    rec.note(f"paused={ctx.domain_info(domid).paused}")
    await rec.op("destroy", ctx.destroy(domid))
    rec.event(await watch.next_event())


async def cancel_shutdown(ctx: Any, host: GuestHost, rec: Recording) -> None:
    """
    Context.shutdown of a guest that does not answer (it stays paused),
    cancelled while libxl waits for the answer; the guest never shut down.
    """
    domid = await host.start(GuestSpec("idle"))
    watch = ctx.watch_domain(domid)
    d = ctx.shutdown(domid)
    await host.request_written(domid)
    rec.note(f"in flight={ctx.operations_in_flight}")
    d.cancel()
    await rec.op("shutdown", d)
    await rec.op("destroy", ctx.destroy(domid))
    rec.event(await watch.next_event())


async def disk_eject(ctx: Any, host: GuestHost, rec: Recording) -> None:
    """The device model ejects a guest's CD-ROM; the watch sees it, twice."""
    domid = await host.start(GuestSpec("idle", cdrom=True))
    watch = ctx.watch_disk_eject(domid, CDROM_VDEV)
    await host.eject(domid, CDROM_VDEV)
    rec.event(await watch.next_event())
    await host.eject(domid, CDROM_VDEV)
    rec.event(await watch.next_event())
    watch.cancel()


#: Every scenario by name, in the order the tests run them.
SCENARIOS: Dict[str, Scenario] = {
    f.__name__: f
    for f in (
        guest_poweroff,
        guest_reboot,
        guest_crash,
        op_shutdown,
        op_reboot,
        op_destroy,
        op_pause_unpause,
        cancel_shutdown,
        disk_eject,
        pvh_guest_poweroff,
    )
}


def expected_sequences(path: str = SEQUENCES_PATH) -> Dict[str, Dict[str, List[str]]]:
    """The recordings real Xen made, by scenario name."""
    with open(path) as f:
        data = json.load(f)
    return data["scenarios"]
