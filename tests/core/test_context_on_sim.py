"""
The Context against the real libxenlight, on a simulated Xen host.

Each test starts its own simulated host (a separate process) and a Context
on the reactor trial runs (select, poll, epoll or asyncio), and closes both.
"""
from __future__ import annotations

import os
import sys
from typing import Any, List

from twisted.internet import defer, error as ierror, protocol, reactor, utils
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, TestCase

from txlibxl import errors
from txlibxl.events import DiskEject, DomainDeath, DomainShutdown, ShutdownReason
from txlibxl.watches import WatchCancelled, WatchEnded

try:
    from txlibxl.testing import SimulatedHostTestCase
except ImportError as e:  # pragma: no cover - the fixture is part of the package
    raise SkipTest(f"txlibxl.testing is unavailable: {e}")


class ContextTestCase(SimulatedHostTestCase):
    """
    A simulated host plus a Context on the running reactor, closed after
    each test.
    """

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        from txlibxl.context import Context

        self.ctx = Context(reactor)
        self.addCleanup(self.ctx.close)

    def create(self, name: str = "guest", **kw: Any) -> Any:
        """The domid of a new running domain."""
        d = self.host.control.create_domain(name=name, **kw)
        d.addCallback(lambda r: r["domid"])
        return d


class QueryTests(ContextTestCase):
    @defer.inlineCallbacks
    def test_list_domains_shows_domain0_and_created_domains(self) -> Any:
        domid = yield self.create("web1")
        names = {d.domid: d.name for d in self.ctx.list_domains()}
        self.assertEqual(names[0], "Domain-0")
        self.assertEqual(names[domid], "web1")

    @defer.inlineCallbacks
    def test_domain_info_reports_what_the_hypervisor_has(self) -> Any:
        domid = yield self.create("db", memory_kb=524288, vcpus=2)
        info = self.ctx.domain_info(domid)
        self.assertEqual((info.domid, info.type, info.shutdown, info.dying), (domid, "pv", False, False))
        self.assertEqual(info.max_memkb, 524288)
        self.assertEqual(info.vcpus_online, 2)

    @defer.inlineCallbacks
    def test_names_and_domids_translate_both_ways(self) -> Any:
        domid = yield self.create("cache")
        self.assertEqual(self.ctx.domid_to_name(domid), "cache")
        self.assertEqual(self.ctx.name_to_domid("cache"), domid)

    def test_info_on_a_missing_domain_is_a_typed_error(self) -> None:
        self.assertRaises(errors.LibxlError, self.ctx.domain_info, 4242)
        self.assertEqual(self.ctx.domain_info(0).name, "Domain-0")  # still working

    def test_bad_domids_are_refused_before_libxl(self) -> None:
        for bad in (-1, 2**32, "7"):
            self.assertRaises((errors.LibxlError, TypeError, ValueError), self.ctx.watch_domain, bad)
        self.assertEqual(self.ctx.domain_info(0).domid, 0)


class DomidRuleTests(ContextTestCase):
    """
    A domid that is not an int (bool included) is a TypeError, a negative
    or reserved one a ValueError, wherever the public API takes one:
    raised by watches and synchronous calls, through the Deferred of an
    operation.  Neither is a LibxlError: libxl is never called.
    """

    NOT_INTS = ("7", 7.0, None, True)
    OUT_OF_RANGE = (-1, 0x7FF0, 0x7FF4, 2**32)

    def assertRefused(self, call: Any, *args: Any) -> None:
        for bad, error in [(b, TypeError) for b in self.NOT_INTS] + [(b, ValueError) for b in self.OUT_OF_RANGE]:
            try:
                result = call(bad, *args)
            except Exception as e:
                raised = e
            else:
                raised = self.failureResultOf(result).value
            self.assertIsInstance(raised, error, (call, bad))
            self.assertFalse(isinstance(raised, errors.LibxlError), (call, bad, raised))
            self.assertNotIn("libxl_", str(raised), (call, bad))

    def test_watches_raise(self) -> None:
        self.assertRefused(self.ctx.watch_domain)
        self.assertRefused(self.ctx.watch_disk_eject, "hdc")

    def test_queries_and_synchronous_calls_raise(self) -> None:
        self.assertRefused(self.ctx.domain_info)
        self.assertRefused(self.ctx.domid_to_name)
        self.assertRefused(self.ctx.memory_target)
        self.assertRefused(self.ctx.set_memory_target, 262144)
        self.assertRefused(self.ctx.rename, "other")
        self.assertRefused(self.ctx.console_tty)

    def test_operations_fail_their_deferred(self) -> None:
        for op in (self.ctx.shutdown, self.ctx.reboot, self.ctx.destroy, self.ctx.pause, self.ctx.unpause,
                   self.ctx.domain_config):
            self.assertRefused(op)
        self.assertRefused(self.ctx.set_vcpus, 1)
        self.assertRefused(self.ctx.add_disk, "phy:/dev/null,xvdb,w")
        self.assertRefused(self.ctx.remove_disk, "xvdb")
        self.assertRefused(self.ctx.add_nic, {})
        self.assertRefused(self.ctx.remove_nic, 0)
        self.assertRefused(self.ctx.insert_cdrom, "hdc", "")
        self.assertEqual(self.ctx.operations_in_flight, 0)


class DomainWatchTests(ContextTestCase):
    @defer.inlineCallbacks
    def assertShutdownReported(self, reason: str, expected: ShutdownReason) -> Any:
        domid = yield self.create()
        watch = self.ctx.watch_domain(domid)
        yield self.host.control.shutdown(domid, reason)
        event = yield watch.when_shutdown()
        self.assertEqual(event, DomainShutdown(domid, event.uuid, expected))
        yield self.host.control.destroy([domid])
        death = yield watch.when_dead()
        self.assertEqual(death, DomainDeath(domid, event.uuid))

    def test_poweroff_is_reported_then_death(self) -> Any:
        return self.assertShutdownReported("poweroff", ShutdownReason.POWEROFF)

    def test_reboot_is_reported_then_death(self) -> Any:
        return self.assertShutdownReported("reboot", ShutdownReason.REBOOT)

    def test_suspend_is_reported_then_death(self) -> Any:
        return self.assertShutdownReported("suspend", ShutdownReason.SUSPEND)

    def test_crash_is_reported_then_death(self) -> Any:
        return self.assertShutdownReported("crash", ShutdownReason.CRASH)

    def test_watchdog_is_reported_then_death(self) -> Any:
        return self.assertShutdownReported("watchdog", ShutdownReason.WATCHDOG)

    @defer.inlineCallbacks
    def test_a_destroyed_domain_reports_only_its_death(self) -> Any:
        domid = yield self.create()
        watch = self.ctx.watch_domain(domid)
        shutdown = watch.when_shutdown()
        yield self.host.control.destroy([domid])
        death = yield watch.when_dead()
        self.assertEqual(death.domid, domid)
        self.failureResultOf(shutdown)
        events = [(yield watch.next_event())]
        self.assertEqual(events, [death])

    def test_watching_a_missing_domain_raises_domain_not_found(self) -> None:
        error = self.assertRaises(errors.DomainNotFound, self.ctx.watch_domain, 4242)
        self.assertIn("4242", str(error))
        self.assertEqual(self.ctx.watches, 0)

    @defer.inlineCallbacks
    def test_a_watch_and_its_cancel_name_the_domain_by_domid_and_uuid(self) -> Any:
        dom = yield self.host.control.create_domain(name="named")
        watch = self.ctx.watch_domain(dom["domid"])
        self.assertEqual(watch.uuid, dom["uuid"])
        self.assertIn(f"domain {dom['domid']} ({dom['uuid']})", repr(watch))
        waiting = watch.next_event()
        watch.cancel()
        failure = self.failureResultOf(waiting, WatchCancelled)
        self.assertEqual(str(failure.value), f"the watch on domain {dom['domid']} ({dom['uuid']}) was cancelled")
        self.assertIn("cancelled", repr(watch))

    @defer.inlineCallbacks
    def test_close_raises_context_closed_through_async_for_and_next_event(self) -> Any:
        domid = yield self.create()
        watch = self.ctx.watch_domain(domid)
        seen: List[Any] = []

        async def consume() -> None:
            async for event in watch:
                seen.append(event)

        consuming = defer.ensureDeferred(consume())
        yield self.ctx.close()
        failure = yield self.assertFailure(consuming, errors.ContextClosed)
        self.assertIn(f"domain {domid}", str(failure))
        self.assertEqual(seen, [])
        self.failureResultOf(watch.next_event(), errors.ContextClosed)
        self.failureResultOf(watch.when_dead(), errors.ContextClosed)

    @defer.inlineCallbacks
    def test_a_death_still_ends_async_for_quietly(self) -> Any:
        domid = yield self.create()
        watch = self.ctx.watch_domain(domid)
        seen: List[Any] = []

        async def consume() -> None:
            async for event in watch:
                seen.append(event)

        consuming = defer.ensureDeferred(consume())
        yield self.host.control.destroy([domid])
        yield consuming
        self.assertEqual([type(e) for e in seen], [DomainDeath])

    @defer.inlineCallbacks
    def test_after_suspend_the_watch_still_sees_death_and_no_repeat(self) -> Any:
        domid = yield self.create()
        watch = self.ctx.watch_domain(domid)
        yield self.host.control.shutdown(domid, "suspend")
        first = yield watch.next_event()
        self.assertEqual(first.reason, ShutdownReason.SUSPEND)
        yield self.host.control.destroy([domid])
        second = yield watch.next_event()
        self.assertIsInstance(second, DomainDeath)

    @defer.inlineCallbacks
    def scanned(self, probe: Any) -> Any:
        """
        Once libxl has looked at the domains after a shutdown: C{probe}, a
        fresh watch, reports it in the same scan as every other generator;
        a round trip later that whole batch is dispatched.
        """
        yield probe.when_shutdown()
        yield self.host.control.ping()

    @defer.inlineCallbacks
    def test_a_domain_suspended_again_after_a_resume_is_reported_again(self) -> Any:
        domid = yield self.create()
        watch = self.ctx.watch_domain(domid)
        yield self.host.control.shutdown(domid, "suspend")
        first = yield watch.next_event()  # the watch has re-armed
        yield self.host.control.resume(domid)
        probe = self.ctx.watch_domain(domid)
        # Suspended again before libxl's new generator first looked: its
        # first look reports the domain suspended, as it would a repeat.
        yield self.host.control.shutdown(domid, "suspend")
        yield self.scanned(probe)
        second = self.successResultOf(watch.next_event())
        self.assertEqual((first.reason, second.reason), (ShutdownReason.SUSPEND, ShutdownReason.SUSPEND))
        yield self.host.control.destroy([domid])
        self.assertIsInstance((yield watch.next_event()), DomainDeath)

    @defer.inlineCallbacks
    def test_the_repeat_of_a_suspend_is_not_reported_and_the_next_shutdown_is(self) -> Any:
        domid = yield self.create()
        other = yield self.create("other")
        watch = self.ctx.watch_domain(domid)
        yield self.host.control.shutdown(domid, "suspend")
        yield watch.next_event()
        # Another domain's shutdown makes libxl look again: the re-armed
        # generator reports the suspended domain, a repeat.
        other_probe = self.ctx.watch_domain(other)
        yield self.host.control.shutdown(other, "poweroff")
        yield self.scanned(other_probe)
        waiting = watch.next_event()
        self.assertNoResult(waiting)
        # The repeat used up that generator; the next shutdown is seen all the same.
        yield self.host.control.resume(domid)
        probe = self.ctx.watch_domain(domid)
        yield self.host.control.shutdown(domid, "poweroff")
        yield self.scanned(probe)
        self.assertEqual(self.successResultOf(waiting).reason, ShutdownReason.POWEROFF)

    @defer.inlineCallbacks
    def test_a_cancelled_watch_gets_nothing_more(self) -> Any:
        domid = yield self.create()
        watch = self.ctx.watch_domain(domid)
        waiting = watch.next_event()
        watch.cancel()
        self.failureResultOf(waiting)
        other = self.ctx.watch_domain(domid)
        yield self.host.control.destroy([domid])
        yield other.when_dead()
        self.assertEqual(self.ctx.watches, 0)

    @defer.inlineCallbacks
    def test_two_watches_on_one_domain_each_see_every_event(self) -> Any:
        domid = yield self.create()
        a, b = self.ctx.watch_domain(domid), self.ctx.watch_domain(domid)
        yield self.host.control.destroy([domid])
        deaths = yield defer.gatherResults([a.when_dead(), b.when_dead()])
        self.assertEqual([d.domid for d in deaths], [domid, domid])


class DiskEjectTests(ContextTestCase):
    @defer.inlineCallbacks
    def test_an_eject_is_reported_with_its_disk(self) -> Any:
        domid = yield self.create(disks=[{"vdev": "hdc", "cdrom": True, "target": "/srv/cd.iso"}])
        watch = self.ctx.watch_disk_eject(domid, "hdc")
        yield self.host.control.eject(domid, "hdc")
        event = yield watch.next_event()
        self.assertIsInstance(event, DiskEject)
        self.assertEqual((event.domid, event.vdev), (domid, "hdc"))
        self.assertEqual(event.disk.vdev, "hdc")
        watch.cancel()

    @defer.inlineCallbacks
    def test_watching_a_disk_that_is_not_there_is_a_typed_error(self) -> Any:
        domid = yield self.create()
        self.assertRaises(errors.LibxlError, self.ctx.watch_disk_eject, domid, "xvdz")
        self.assertRaises((errors.LibxlError, ValueError), self.ctx.watch_disk_eject, domid, "")

    @defer.inlineCallbacks
    def test_an_eject_watch_ends_when_its_domain_dies(self) -> Any:
        domid = yield self.create(disks=[{"vdev": "hdc", "cdrom": True}])
        watch = self.ctx.watch_disk_eject(domid, "hdc")
        yield self.host.control.eject(domid, "hdc")
        eject = yield watch.next_event()
        seen: List[Any] = []

        async def consume() -> None:
            async for event in watch:
                seen.append(event)

        consuming = defer.ensureDeferred(consume())
        yield self.host.control.destroy([domid])
        yield consuming  # ends, does not hang until close
        self.assertEqual(seen, [])
        self.assertFalse(watch.active)
        failure = self.failureResultOf(watch.next_event(), WatchEnded)
        self.assertEqual(failure.value.args[0], DomainDeath(domid, eject.uuid))
        self.assertEqual(self.ctx.watches, 0)

    @defer.inlineCallbacks
    def test_the_eject_watches_of_a_domain_share_one_death_generator(self) -> Any:
        domid = yield self.create(disks=[{"vdev": "hdc", "cdrom": True}, {"vdev": "hdd", "cdrom": True}])
        hdc = self.ctx.watch_disk_eject(domid, "hdc")
        hdd = self.ctx.watch_disk_eject(domid, "hdd")
        self.assertEqual(self.ctx.watches, 3)
        hdc.cancel()
        self.assertEqual(self.ctx.watches, 2)
        again = self.ctx.watch_disk_eject(domid, "hdc")
        self.assertEqual(self.ctx.watches, 3)
        yield self.host.control.destroy([domid])
        for watch in (hdd, again):
            yield self.assertFailure(watch.next_event(), WatchEnded)
        self.assertEqual(self.ctx.watches, 0)

    def test_watching_a_disk_of_a_missing_domain_raises_domain_not_found(self) -> None:
        self.assertRaises(errors.DomainNotFound, self.ctx.watch_disk_eject, 4242, "hdc")
        self.assertEqual(self.ctx.watches, 0)

    @defer.inlineCallbacks
    def test_an_eject_watch_names_its_disk_and_domain(self) -> Any:
        dom = yield self.host.control.create_domain(name="cd", disks=[{"vdev": "hdc", "cdrom": True}])
        watch = self.ctx.watch_disk_eject(dom["domid"], "hdc")
        self.assertIn(f"disk hdc of domain {dom['domid']} ({dom['uuid']})", repr(watch))
        watch.cancel()


class OperationTests(ContextTestCase):
    @defer.inlineCallbacks
    def test_shutdown_completes_when_the_guest_acknowledges(self) -> Any:
        domid = yield self.create()
        watch = self.ctx.watch_domain(domid)
        result = yield self.ctx.shutdown(domid)
        self.assertIsNone(result)
        event = yield watch.when_shutdown()
        self.assertEqual(event.reason, ShutdownReason.POWEROFF)

    @defer.inlineCallbacks
    def test_reboot_completes_and_the_domain_reboots(self) -> Any:
        domid = yield self.create()
        watch = self.ctx.watch_domain(domid)
        yield self.ctx.reboot(domid)
        event = yield watch.when_shutdown()
        self.assertEqual(event.reason, ShutdownReason.REBOOT)

    @defer.inlineCallbacks
    def test_destroy_completes_and_the_domain_is_gone(self) -> Any:
        domid = yield self.create(disks=[{"vdev": "xvda"}], vifs=1)
        watch = self.ctx.watch_domain(domid)
        yield self.ctx.destroy(domid)
        yield watch.when_dead()
        listed = yield self.host.control.list()
        self.assertNotIn(domid, [d["domid"] for d in listed])

    @defer.inlineCallbacks
    def test_pause_and_unpause_complete(self) -> Any:
        domid = yield self.create()
        yield self.ctx.pause(domid)
        self.assertTrue(self.ctx.domain_info(domid).paused)
        yield self.ctx.unpause(domid)
        self.assertFalse(self.ctx.domain_info(domid).paused)

    @defer.inlineCallbacks
    def test_an_operation_on_a_missing_domain_fails_typed(self) -> Any:
        with self.assertRaises(errors.LibxlError):
            yield self.ctx.pause(4242)
        yield self.create()  # the context still works

    @defer.inlineCallbacks
    def test_cancel_aborts_the_operation(self) -> Any:
        domid = yield self.create()
        yield self.host.control.fault("guest_ignore_shutdown", domid=domid)
        d = self.ctx.shutdown(domid)
        yield self.host.control.ping()  # let libxl start waiting
        d.cancel()
        failure = self.failureResultOf(d, errors.OperationAborted)
        self.assertIsInstance(failure.value, defer.CancelledError)
        self.assertEqual(failure.value.code, errors.ERROR_ABORTED)

    @defer.inlineCallbacks
    def test_a_cancelled_destroy_still_destroys_and_settled_says_so(self) -> Any:
        domid = yield self.create(disks=[{"vdev": "xvda"}], vifs=1)
        watch = self.ctx.watch_domain(domid)
        yield self.host.control.fault("slow_backend", seconds=2)
        d = self.ctx.destroy(domid)
        yield self.host.control.ping()  # libxl waits for the backends
        d.cancel()
        cancelled = self.failureResultOf(d, errors.OperationAborted).value
        completed = yield cancelled.settled
        self.assertIs(completed, True)
        yield watch.when_dead()
        listed = yield self.host.control.list()
        self.assertNotIn(domid, [dom["domid"] for dom in listed])

    @defer.inlineCallbacks
    def test_a_cancelled_shutdown_leaves_the_request_to_the_guest(self) -> Any:
        from txlibxl._libxl.xenstore import XenstoreConnection

        domid = yield self.create()
        yield self.host.control.fault("guest_ignore_shutdown", domid=domid)
        d = self.ctx.shutdown(domid)
        yield self.host.control.ping()
        d.cancel()
        cancelled = self.failureResultOf(d, errors.OperationAborted).value
        self.assertIs((yield cancelled.settled), False)
        xs = XenstoreConnection.open()
        self.addCleanup(xs.close)
        self.assertEqual(xs.read(f"/local/domain/{domid}/control/shutdown"), "poweroff")

    @defer.inlineCallbacks
    def test_operations_libxl_completes_inside_the_call_ignore_a_cancel(self) -> Any:
        domid = yield self.create(vcpus=2)
        for start in (lambda: self.ctx.pause(domid), lambda: self.ctx.unpause(domid),
                      lambda: self.ctx.set_vcpus(domid, 1), lambda: self.ctx.domain_config(domid)):
            d = start()
            d.cancel()
            self.assertFalse(isinstance(self.successResultOf(d), Exception))
        self.assertEqual(self.ctx.operations_in_flight, 0)

    @defer.inlineCallbacks
    def test_a_cancel_after_libxl_completed_the_operation_gets_its_result(self) -> Any:
        from txlibxl._libxl import binding

        domid = yield self.create()
        # An event queued ahead of the completion (for a generator long gone):
        # the cancel must find the completion behind it.
        self.ctx._libxl_event(binding.RawEvent(binding.EVENT_DOMAIN_DEATH, domid, binding.NIL_UUID, 10**6))
        d = self.ctx.pause(domid)  # libxl completes a pause before returning
        d.cancel()
        self.assertIsNone(self.successResultOf(d))
        self.assertTrue(self.ctx.domain_info(domid).paused)

    @defer.inlineCallbacks
    def test_libxl_children_and_spawned_processes_are_both_reaped(self) -> Any:
        domid = yield self.create(disks=[{"vdev": "xvda"}])
        ended: defer.Deferred = defer.Deferred()

        class Ended(protocol.ProcessProtocol):
            def processEnded(self, reason: Any) -> None:
                ended.callback(reason.value)

        reactor.spawnProcess(Ended(), sys.executable, [sys.executable, "-c", "import time; time.sleep(0.2)"], env=None)
        yield self.ctx.destroy(domid)  # forks the hotplug script and the destroy child
        status = yield ended
        self.assertIsInstance(status, ierror.ProcessDone)
        self.assertEqual(self.ctx.children_running, len(self.ctx.running_children))


class NoXenTests(ContextTestCase):
    def test_without_xenstored_the_context_says_so_and_points_at_the_simulated_host(self) -> None:
        from txlibxl.context import Context

        saved = os.environ["XENSTORED_PATH"]
        os.environ["XENSTORED_PATH"] = "/nonexistent/xenstored.sock"  # libxenstore reads it
        self.addCleanup(os.environ.__setitem__, "XENSTORED_PATH", saved)
        error = self.assertRaises(errors.XenUnavailable, Context, reactor)
        self.assertEqual(error.missing, "xenstored")
        self.assertIsInstance(error, errors.LibxlError)
        for words in ("no Xen here", "xenstored", "/nonexistent/xenstored.sock", "cannot connect to xenstore",
                      "txlibxl.testing", "twistd libxl-events --simulate"):
            self.assertIn(words, str(error))

    @defer.inlineCallbacks
    def test_without_privcmd_the_context_says_so(self) -> Any:
        if os.path.exists("/dev/xen/privcmd"):
            raise SkipTest("this machine has Xen")
        # A process of its own, without the simulated host's shim: the real
        # libxenctrl looks for the hypervisor.
        env = {k: v for k, v in os.environ.items()
               if k not in ("LD_PRELOAD", "XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT")}
        code = (
            "from txlibxl import errors\n"
            "from txlibxl.context import Context\n"
            "try:\n"
            "    Context()\n"
            "except errors.XenUnavailable as e:\n"
            "    print(e.missing)\n"
            "    print(e)\n"
        )
        out, err, status = yield utils.getProcessOutputAndValue(sys.executable, ["-c", code], env=env)
        self.assertEqual(status, 0, err)
        missing, message = out.decode().split("\n", 1)
        self.assertEqual(missing, "privcmd")
        for words in ("no Xen here", "privcmd", "cannot open libxc handle", "txlibxl.testing", "--simulate"):
            self.assertIn(words, message)


class AsyncWithTests(ContextTestCase):
    async def test_async_with_closes_the_context_at_the_end_of_the_block(self) -> None:
        from txlibxl.context import Context

        async with Context(reactor) as ctx:
            self.assertEqual(ctx.domain_info(0).domid, 0)
        self.assertRaises(errors.ContextClosed, ctx.list_domains)

    async def test_async_with_closes_the_context_when_the_block_fails(self) -> None:
        from txlibxl.context import Context

        with self.assertRaises(ZeroDivisionError):
            async with Context(reactor) as ctx:
                watch = ctx.watch_domain(0)
                1 / 0
        self.assertRaises(errors.ContextClosed, ctx.list_domains)
        self.failureResultOf(watch.next_event(), errors.ContextClosed)


class LogTests(ContextTestCase):
    @defer.inlineCallbacks
    def test_libxls_messages_are_logged_with_libxls_own_prefix_once(self) -> Any:
        events: List[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        with self.assertRaises(errors.LibxlError):
            yield self.ctx.pause(4242)  # libxl logs why at error level
        said = [formatEvent(e) for e in events if e.get("log_namespace", "").startswith("txlibxl.context")]
        # "libxl: libxl_domain.c:587:libxl_domain_pause: Domain 4242:Pausing domain: ..."
        self.assertTrue([line for line in said if line.startswith("libxl: libxl_domain.c:")], said)
        self.assertEqual([line for line in said if line.startswith("libxl: libxl:")], [])


class TeardownTests(ContextTestCase):
    @defer.inlineCallbacks
    def test_close_aborts_operations_in_flight(self) -> Any:
        domid = yield self.create()
        yield self.host.control.fault("guest_ignore_shutdown", domid=domid)
        d = self.ctx.shutdown(domid)
        watch = self.ctx.watch_domain(domid)
        yield self.ctx.close()
        self.failureResultOf(d, errors.OperationAborted)
        self.failureResultOf(watch.next_event())
        self.assertEqual(self.ctx.operations_in_flight, 0)

    @defer.inlineCallbacks
    def test_calls_after_close_raise_context_closed(self) -> Any:
        yield self.ctx.close()
        self.assertRaises(errors.ContextClosed, self.ctx.list_domains)
        self.assertRaises(errors.ContextClosed, self.ctx.watch_domain, 0)


class DisasterTests(ContextTestCase):
    @defer.inlineCallbacks
    def test_losing_xenstored_fails_every_waiter_with_the_disaster(self) -> Any:
        domid = yield self.create()
        yield self.host.control.fault("guest_ignore_shutdown", domid=domid)
        watch = self.ctx.watch_domain(domid)
        op = self.ctx.shutdown(domid)
        waiting = [watch.when_dead(), watch.next_event(), op]
        yield self.host.control.fault("xenstored_die")
        results = yield defer.DeferredList(waiting, consumeErrors=True)
        for ok, failure in results:
            self.assertFalse(ok)
            failure.trap(errors.LibxlDisaster)
        self.assertIsInstance(self.ctx.failed, errors.LibxlDisaster)
        self.assertRaises(errors.ContextFailed, self.ctx.watch_domain, domid)


class StormTests(ContextTestCase):
    timeout = 240

    @defer.inlineCallbacks
    def test_a_thousand_deaths_reach_their_watches_exactly_once(self) -> Any:
        created = yield self.host.control.create_domains(count=1000, prefix="storm")
        domids = [c["domid"] for c in created]
        watches = {domid: self.ctx.watch_domain(domid) for domid in domids}
        seen: List[Any] = []
        for watch in watches.values():
            watch.when_dead().addCallback(seen.append)
        yield self.host.control.destroy(domids, mode="burst")
        deaths = yield defer.gatherResults([w.when_dead() for w in watches.values()])
        self.assertEqual(sorted(d.domid for d in deaths), sorted(domids))
        self.assertEqual(len(seen), 1000)
        leftovers = [w.next_event() for w in watches.values()]
        self.assertEqual(sum(1 for d in leftovers if isinstance(self.successResultOf(d), DomainDeath)), 1000)
        for w in watches.values():
            self.failureResultOf(w.next_event())
