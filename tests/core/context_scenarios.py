"""
Integration scenarios of the Context against the real libxenlight and a
simulated host, written once for both frameworks.

Each scenario is a coroutine ``scenario(kit)`` that only awaits what the
context and the host's control client return (Deferreds on Twisted,
``asyncio.Future`` objects and coroutines on asyncio) and calls ``cancel()``
on futures, so the same code runs under trial on every reactor
(``test_scenarios_on_twisted``) and on a plain asyncio loop in a process of
its own (``asyncio_scenarios``, run by ``test_scenarios_on_asyncio``).
What differs between the frameworks is in the :class:`Kit`: sleeping and
running a child process of the application's own.
"""
from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from typing import Any, Awaitable, Callable, Dict, List

# The Deferred module only (its CancelledError): no reactor.
from twisted.internet import defer

from txlibxl import errors
from txlibxl.events import DiskEject, DomainDeath, DomainShutdown, ShutdownReason
from txlibxl.operations import OperationCancelled
from txlibxl.watches import WatchEnded

__all__ = ["Kit", "SCENARIOS"]


class Kit:
    """
    What a scenario gets: the context, the host's control client, a test
    case for its assertions, and the framework's own ways to sleep and
    to run a process.
    """

    def __init__(self, ctx: Any, control: Any, check: Any,
                 sleep: Callable[[float], Awaitable[None]],
                 run_process: Callable[[List[str]], Awaitable[int]],
                 spawn: Callable[[Awaitable[Any]], Any]) -> None:
        self.ctx = ctx
        self.control = control
        self.check = check
        self.sleep = sleep
        self.run_process = run_process
        #: Runs a coroutine as the framework does (a Deferred, an asyncio
        #: Task), cancellable.
        self.spawn = spawn
        self.files = tempfile.mkdtemp(prefix="txlibxl-scenario-")
        self._made = 0

    async def create(self, name: str = "", **kw: Any) -> int:
        """The domid of a new running domain made by the host (named C{name}, or a fresh name)."""
        self._made += 1
        return int((await self.control.create_domain(name=name or f"guest{self._made}", **kw))["domid"])

    async def until(self, condition: Callable[[], bool], seconds: float = 10.0) -> None:
        for _ in range(int(seconds / 0.02)):
            if condition():
                return
            await self.sleep(0.02)
        self.check.fail("the condition was not met in time")

    def file(self, name: str, size: int = 1 << 20, content: bytes = b"") -> str:
        path = os.path.join(self.files, name)
        with open(path, "wb") as f:
            f.write(content)
            f.truncate(max(size, len(content)))
        return path

    def disk(self, vdev: str = "xvda") -> Dict[str, Any]:
        image = self.file(f"{vdev}-{uuid.uuid4().hex[:8]}.img")
        return {"pdev_path": image, "vdev": vdev, "format": "raw", "readwrite": 1}

    def config(self, name: str = "built", vcpus: int = 2) -> Dict[str, Any]:
        """A PV guest's configuration as ``xl -N create`` prints it."""
        return {
            "c_info": {"type": "pv", "name": name},
            "b_info": {"max_vcpus": vcpus, "max_memkb": 262144, "target_memkb": 262144,
                       "kernel": self.file("vmlinuz", 0, b"\x7fELF simulated kernel"), "type.pv": {}},
            "disks": [self.disk()],
            "nics": [{"devid": 0, "bridge": "xenbr0"}],
        }


def _is_done(future: Any) -> bool:
    done = getattr(future, "done", None)
    return bool(done()) if callable(done) else bool(future.called)


async def _outcome(future: Any) -> Any:
    """What C{future} ends with: its result, or the exception it raises."""
    try:
        return await future
    except BaseException as e:  # asyncio's CancelledError is a BaseException
        return e


# The scenarios.


async def every_shutdown_reason_then_death(kit: Kit) -> None:
    for reason, expected in [("poweroff", ShutdownReason.POWEROFF), ("reboot", ShutdownReason.REBOOT),
                             ("suspend", ShutdownReason.SUSPEND), ("crash", ShutdownReason.CRASH),
                             ("watchdog", ShutdownReason.WATCHDOG)]:
        domid = await kit.create(reason)
        watch = kit.ctx.watch_domain(domid)
        await kit.control.shutdown(domid, reason)
        event = await watch.when_shutdown()
        kit.check.assertEqual(event, DomainShutdown(domid, event.uuid, expected))
        await kit.control.destroy([domid])
        kit.check.assertEqual(await watch.when_dead(), DomainDeath(domid, event.uuid))


async def a_destroyed_domain_reports_only_its_death(kit: Kit) -> None:
    domid = await kit.create()
    watch = kit.ctx.watch_domain(domid)
    shutdown = watch.when_shutdown()
    await kit.control.destroy([domid])
    death = await watch.when_dead()
    kit.check.assertEqual(death.domid, domid)
    kit.check.assertIsInstance(await _outcome(shutdown), Exception)
    kit.check.assertEqual(await watch.next_event(), death)


async def a_disk_eject_is_reported_with_its_disk(kit: Kit) -> None:
    domid = await kit.create(disks=[{"vdev": "hdc", "cdrom": True, "target": "/srv/cd.iso"}])
    watch = kit.ctx.watch_disk_eject(domid, "hdc")
    await kit.control.eject(domid, "hdc")
    event = await watch.next_event()
    kit.check.assertIsInstance(event, DiskEject)
    kit.check.assertEqual((event.domid, event.vdev, event.disk.vdev), (domid, "hdc", "hdc"))
    watch.cancel()


async def the_power_operations_complete(kit: Kit) -> None:
    ctx = kit.ctx
    domid = await kit.create(disks=[{"vdev": "xvda"}], vifs=1)
    watch = ctx.watch_domain(domid)
    kit.check.assertIsNone(await ctx.pause(domid))
    kit.check.assertTrue(ctx.domain_info(domid).paused)
    await ctx.unpause(domid)
    kit.check.assertFalse(ctx.domain_info(domid).paused)
    await ctx.reboot(domid)
    kit.check.assertEqual((await watch.when_shutdown()).reason, ShutdownReason.REBOOT)
    await ctx.destroy(domid)
    await watch.when_dead()
    other = await kit.create()
    watch = ctx.watch_domain(other)
    await ctx.shutdown(other)
    kit.check.assertEqual((await watch.when_shutdown()).reason, ShutdownReason.POWEROFF)
    error = await _outcome(ctx.pause(4242))
    kit.check.assertIsInstance(error, errors.LibxlError)


async def a_built_domain_is_changed_and_its_devices_come_and_go(kit: Kit) -> None:
    ctx = kit.ctx
    consoles: List[Any] = []
    domid = await ctx.create(kit.config(), on_console=consoles.append)
    kit.check.assertEqual([c.domid for c in consoles], [domid])
    await ctx.unpause(domid)
    config = await ctx.domain_config(domid)
    kit.check.assertEqual(config["c_info"]["name"], "built")
    await ctx.set_vcpus(domid, 1)
    await kit.until(lambda: ctx.domain_info(domid).vcpus_online == 1)
    added = await ctx.add_disk(domid, kit.disk("xvdb"))
    kit.check.assertEqual(added["vdev"], "xvdb")
    await ctx.remove_disk(domid, "xvdb")
    nic = await ctx.add_nic(domid, {"bridge": "xenbr0"})
    kit.check.assertEqual(nic["devid"], 1)
    await ctx.remove_nic(domid, nic["mac"])
    config = await ctx.domain_config(domid)
    kit.check.assertEqual(([d["vdev"] for d in config["disks"]], [n["devid"] for n in config["nics"]]),
                          (["xvda"], [0]))
    await ctx.destroy(domid)
    kit.check.assertEqual([d.domid for d in ctx.list_domains()], [0])


async def cancel_aborts_the_operation(kit: Kit) -> None:
    ctx = kit.ctx
    domid = await kit.create()
    await kit.control.fault("guest_ignore_shutdown", domid=domid)
    op = ctx.shutdown(domid)
    await kit.control.ping()  # let libxl start waiting
    op.cancel()
    kit.check.assertTrue(_is_done(op))
    cancelled = await _outcome(op)
    kit.check.assertIsInstance(cancelled, OperationCancelled)
    kit.check.assertEqual(cancelled.code, errors.ERROR_ABORTED)
    kit.check.assertIs(await cancelled.settled, False)  # the request stays for the guest
    # A destroy goes on in spite of the abort, and settled says so.
    victim = await kit.create(disks=[{"vdev": "xvda"}], vifs=1)
    watch = ctx.watch_domain(victim)
    await kit.control.fault("slow_backend", seconds=2)
    op = ctx.destroy(victim)
    await kit.control.ping()
    op.cancel()
    cancelled = await _outcome(op)
    kit.check.assertIsInstance(cancelled, OperationCancelled)
    kit.check.assertIs(await cancelled.settled, True)
    await watch.when_dead()
    # Completed inside the call: the cancel changes nothing.
    other = await kit.create(vcpus=2)
    op = ctx.pause(other)
    op.cancel()
    kit.check.assertIsNone(await op)
    kit.check.assertEqual(ctx.operations_in_flight, 0)


async def cancelling_the_awaiting_task_aborts_the_operation(kit: Kit) -> None:
    ctx = kit.ctx
    domid = await kit.create()
    await kit.control.fault("guest_ignore_shutdown", domid=domid)
    reached: List[Any] = []

    async def waits() -> None:
        await ctx.shutdown(domid)
        reached.append("after")

    task = kit.spawn(waits())
    await kit.control.ping()
    kit.check.assertEqual(ctx.operations_in_flight, 1)
    task.cancel()
    outcome = await _outcome(task)
    kit.check.assertIsInstance(outcome, (asyncio.CancelledError, defer.CancelledError))
    kit.check.assertEqual(reached, [])
    await kit.until(lambda: ctx.operations_in_flight == 0)  # libxl ended the aborted wait


async def losing_xenstored_fails_every_waiter(kit: Kit) -> None:
    ctx = kit.ctx
    domid = await kit.create()
    await kit.control.fault("guest_ignore_shutdown", domid=domid)
    watch = ctx.watch_domain(domid)
    waiting = [watch.when_dead(), watch.next_event(), ctx.shutdown(domid)]
    await kit.control.fault("xenstored_die")
    for future in waiting:
        kit.check.assertIsInstance(await _outcome(future), errors.LibxlDisaster)
    kit.check.assertIsInstance(ctx.failed, errors.LibxlDisaster)
    kit.check.assertRaises(errors.ContextFailed, ctx.watch_domain, domid)


async def close_with_work_in_flight(kit: Kit) -> None:
    ctx = kit.ctx
    domid = await kit.create()
    await kit.control.fault("guest_ignore_shutdown", domid=domid)
    op = ctx.shutdown(domid)
    create = ctx.create(kit.config("half-built"))
    watch = ctx.watch_domain(domid)
    await ctx.close()
    kit.check.assertIsInstance(await _outcome(op), errors.OperationAborted)
    kit.check.assertIsInstance(await _outcome(watch.next_event()), errors.ContextClosed)
    await _outcome(create)
    kit.check.assertEqual(ctx.operations_in_flight, 0)
    listed = await kit.control.list()
    kit.check.assertNotIn("half-built", [d.get("name") for d in listed])
    kit.check.assertRaises(errors.ContextClosed, ctx.list_domains)


async def a_thousand_deaths_reach_their_watches_exactly_once(kit: Kit) -> None:
    ctx = kit.ctx
    created = await kit.control.create_domains(count=1000, prefix="storm")
    domids = [c["domid"] for c in created]
    watches = [ctx.watch_domain(domid) for domid in domids]
    await kit.control.destroy(domids, mode="burst")
    deaths = [await w.when_dead() for w in watches]
    kit.check.assertEqual(sorted(d.domid for d in deaths), sorted(domids))
    kit.check.assertTrue(all(isinstance(d, DomainDeath) for d in deaths))
    # Each watch has its death once in its stream, then nothing.
    for w in watches:
        kit.check.assertIsInstance(await w.next_event(), DomainDeath)
        kit.check.assertIsInstance(await _outcome(w.next_event()), Exception)


async def a_storm_reaches_a_batch_subscription_exactly_once_in_order(kit: Kit) -> None:
    ctx = kit.ctx
    created = await kit.control.create_domains(count=300, prefix="batched")
    domids = [c["domid"] for c in created]
    batches: List[List[Any]] = []
    failures: List[BaseException] = []
    subscription = ctx.subscribe(batches.append, failures.append)
    watches = [ctx.watch_domain(domid, buffered=False) for domid in domids]
    await kit.control.destroy(domids, mode="burst")
    await kit.until(lambda: sum(len(b) for b in batches) >= len(domids))
    await kit.control.ping()
    events = [e for b in batches for e in b]
    kit.check.assertEqual(sorted(e.domid for e in events), sorted(domids))  # each once
    kit.check.assertTrue(all(isinstance(e, DomainDeath) for e in events))
    kit.check.assertEqual({e.uuid for e in events}, {w.uuid for w in watches})
    # Fewer batches than deaths: the deaths libxl reported in one call
    # came as one batch.
    kit.check.assertLess(len(batches), len(domids))
    # The watches ended with their deaths, and kept nothing for later.
    kit.check.assertTrue(all(not w.active for w in watches))
    kit.check.assertEqual(await watches[0].when_dead(), DomainDeath(domids[0], watches[0].uuid))
    kit.check.assertIsInstance(await _outcome(watches[0].next_event()), Exception)
    kit.check.assertEqual(ctx.watches, 0)
    subscription.cancel()
    await ctx.close()
    kit.check.assertEqual(failures, [])  # a cancelled subscription hears nothing more


async def _with_cdroms(kit: Kit, count: int) -> List[int]:
    """C{count} new domains, each with a CD-ROM ``hdc``."""
    return [await kit.create(disks=[{"vdev": "hdc", "cdrom": True, "target": "/srv/cd.iso"}])
            for _ in range(count)]


async def a_storm_mixed_with_ejects_and_completions_keeps_libxls_order(kit: Kit) -> None:
    ctx = kit.ctx
    with_cd = await _with_cdroms(kit, 3)
    created = await kit.control.create_domains(count=60, prefix="mixed")
    domids = [c["domid"] for c in created]
    paused = await kit.create()
    batches: List[List[Any]] = []
    ctx.subscribe(batches.append)
    ejects = [ctx.watch_disk_eject(domid, "hdc") for domid in with_cd]
    watches = [ctx.watch_domain(domid) for domid in domids]
    taken = [e.next_event() for e in ejects]
    for domid in with_cd:
        await kit.control.eject(domid, "hdc")
    pause = ctx.pause(paused)
    await kit.control.destroy(domids, mode="burst")
    await kit.until(lambda: sum(len(b) for b in batches) >= len(domids) + len(with_cd))
    kit.check.assertIsNone(await pause)
    events = [e for b in batches for e in b]
    kit.check.assertEqual([e for e in events if isinstance(e, DiskEject)],
                          sorted([e for e in events if isinstance(e, DiskEject)],
                                 key=lambda e: with_cd.index(e.domid)))
    kit.check.assertEqual(sorted(e.domid for e in events if isinstance(e, DomainDeath)), sorted(domids))
    # Every eject was reported before the storm began, and libxl's order is kept.
    first_death = next(i for i, e in enumerate(events) if isinstance(e, DomainDeath))
    kit.check.assertTrue(all(isinstance(e, DiskEject) for e in events[:first_death]))
    kit.check.assertEqual(len(events), len(domids) + len(with_cd))
    # The waiters got the same events, once each.
    kit.check.assertEqual([await t for t in taken], [e for e in events if isinstance(e, DiskEject)])
    for w in watches:
        kit.check.assertEqual(await w.next_event(), await w.when_dead())


async def a_storm_ends_the_eject_watches_of_its_domains_too(kit: Kit) -> None:
    # One burst kills domains followed by domain watches and domains
    # followed only by disk-eject watches (whose end is a death generator
    # of their own): each watch ends once, with its own domain's death.
    ctx = kit.ctx
    with_cd = await _with_cdroms(kit, 2)
    created = await kit.control.create_domains(count=20, prefix="ending")
    domids = [c["domid"] for c in created]
    ejects = [ctx.watch_disk_eject(domid, "hdc") for domid in with_cd]
    watches = [ctx.watch_domain(domid) for domid in domids + with_cd[:1]]
    ended = [_outcome(e.next_event()) for e in ejects]
    await kit.control.destroy(domids + with_cd, mode="burst")
    deaths = [await w.when_dead() for w in watches]
    kit.check.assertEqual(deaths, [DomainDeath(w.domid, w.uuid) for w in watches])
    kit.check.assertEqual([hash(d) for d in deaths], [hash(DomainDeath(w.domid, w.uuid)) for w in watches])
    outcomes = [await e for e in ended]
    kit.check.assertTrue(all(isinstance(o, WatchEnded) for o in outcomes), outcomes)
    kit.check.assertEqual([o.args[0] for o in outcomes], [DomainDeath(e.domid, e.uuid) for e in ejects])
    await kit.until(lambda: ctx.watches == 0)
    kit.check.assertEqual(ctx._ctx.generators_enabled, 0)


async def own_children_beside_libxls(kit: Kit) -> None:
    domid = await kit.create(disks=[{"vdev": "xvda"}])
    running = kit.run_process([sys.executable, "-c", "import sys, time; time.sleep(0.2); sys.exit(3)"])
    await kit.ctx.destroy(domid)  # forks the hotplug script and the destroy child
    kit.check.assertEqual(await running, 3)
    await kit.until(lambda: not kit.ctx.running_children)
    kit.check.assertEqual(kit.ctx.children_running, 0)


#: Every scenario by name, in the order they run.
SCENARIOS: Dict[str, Callable[[Kit], Awaitable[None]]] = {
    f.__name__: f for f in [
        every_shutdown_reason_then_death,
        a_destroyed_domain_reports_only_its_death,
        a_disk_eject_is_reported_with_its_disk,
        the_power_operations_complete,
        a_built_domain_is_changed_and_its_devices_come_and_go,
        cancel_aborts_the_operation,
        cancelling_the_awaiting_task_aborts_the_operation,
        losing_xenstored_fails_every_waiter,
        close_with_work_in_flight,
        a_thousand_deaths_reach_their_watches_exactly_once,
        a_storm_reaches_a_batch_subscription_exactly_once_in_order,
        a_storm_mixed_with_ejects_and_completions_keeps_libxls_order,
        a_storm_ends_the_eject_watches_of_its_domains_too,
        own_children_beside_libxls,
    ]
}
