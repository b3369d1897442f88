"""
The rules a watch keeps towards its waiters, without libxl: each event
reaches exactly one ``next_event`` waiter, in order; shutdown and death
waiters see their event; late and repeated reports from libxl are dropped.
"""
from __future__ import annotations

from typing import List

import txaio
from twisted.trial.unittest import SynchronousTestCase

from txlibxl import errors
from txlibxl.events import Disk, DiskEject, DomainDeath, DomainShutdown, ShutdownReason
from txlibxl.watches import DiskEjectWatch, DomainWatch, WatchCancelled, WatchEnded

txaio.use_twisted()
TX = txaio.with_config(loop=None)
UUID = "00000000-0000-0000-0000-000000000007"


def shutdown(reason: ShutdownReason = ShutdownReason.POWEROFF) -> DomainShutdown:
    return DomainShutdown(7, UUID, reason)


DEATH = DomainDeath(7, UUID)


class DomainWatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cancelled: List[object] = []
        self.watch = DomainWatch(TX, 7, self.cancelled.append)

    def feed(self, event: object) -> bool:
        """Deliver C{event} as the context does: only if the watch accepts it."""
        if self.watch.active and self.watch._accept(event):
            self.watch._deliver(event)
            return True
        return False

    def test_events_reach_next_event_waiters_in_order(self) -> None:
        first, second = self.watch.next_event(), self.watch.next_event()
        self.feed(shutdown())
        self.feed(DEATH)
        self.assertEqual(self.successResultOf(first), shutdown())
        self.assertEqual(self.successResultOf(second), DEATH)

    def test_events_before_a_waiter_are_kept_for_it(self) -> None:
        self.feed(shutdown())
        self.assertEqual(self.successResultOf(self.watch.next_event()), shutdown())

    def test_each_event_reaches_exactly_one_next_event_waiter(self) -> None:
        first, second = self.watch.next_event(), self.watch.next_event()
        self.feed(shutdown())
        self.successResultOf(first)
        self.assertNoResult(second)

    def test_every_shutdown_waiter_sees_the_first_shutdown(self) -> None:
        a, b = self.watch.when_shutdown(), self.watch.when_shutdown()
        self.feed(shutdown(ShutdownReason.CRASH))
        self.assertEqual(self.successResultOf(a).reason, ShutdownReason.CRASH)
        self.assertEqual(self.successResultOf(b).reason, ShutdownReason.CRASH)
        self.assertEqual(self.successResultOf(self.watch.when_shutdown()).reason, ShutdownReason.CRASH)

    def test_each_call_gives_a_fresh_deferred(self) -> None:
        self.assertIsNot(self.watch.when_dead(), self.watch.when_dead())

    def test_death_fires_death_waiters_and_ends_the_watch(self) -> None:
        dead = self.watch.when_dead()
        self.feed(DEATH)
        self.assertEqual(self.successResultOf(dead), DEATH)
        self.assertFalse(self.watch.active)
        self.successResultOf(self.watch.next_event())  # the death itself, buffered
        self.failureResultOf(self.watch.next_event(), WatchEnded)

    def test_waiters_resumed_by_the_death_see_the_watch_already_ended(self) -> None:
        seen: List[object] = []

        def look(_: object) -> None:
            seen.append(self.watch.active)
            seen.append(self.watch.when_shutdown())

        self.watch.when_dead().addCallback(look)
        self.feed(DEATH)
        self.assertEqual(seen[0], False)
        self.failureResultOf(seen[1], WatchEnded)

    def test_shutdown_waiters_fail_before_death_waiters_resume(self) -> None:
        shutdown = self.watch.when_shutdown()
        seen: List[object] = []
        self.watch.when_dead().addCallback(lambda _: seen.append(shutdown.called))
        self.feed(DEATH)
        self.assertEqual(seen, [True])
        self.failureResultOf(shutdown, WatchEnded)

    def test_death_without_shutdown_fails_shutdown_waiters_with_the_death(self) -> None:
        waiting = self.watch.when_shutdown()
        self.feed(DEATH)
        failure = self.failureResultOf(waiting, WatchEnded)
        self.assertEqual(failure.value.args[0], DEATH)

    def test_a_second_shutdown_without_rearm_is_a_duplicate(self) -> None:
        self.assertTrue(self.feed(shutdown()))
        self.assertFalse(self.feed(shutdown()))

    def test_after_a_rearm_in_the_shutdown_the_same_reason_may_be_a_repeat(self) -> None:
        self.feed(shutdown(ShutdownReason.SUSPEND))
        self.watch._rearmed_at(5000)
        # the context compares the domain's CPU time now with this one
        self.assertEqual(self.watch._repeat_check(shutdown(ShutdownReason.SUSPEND)), 5000)
        self.assertIsNone(self.watch._repeat_check(shutdown(ShutdownReason.POWEROFF)))

    def test_after_a_rearm_a_shutdown_found_news_is_reported_once(self) -> None:
        self.feed(shutdown(ShutdownReason.SUSPEND))
        self.watch._rearmed_at(5000)
        self.assertTrue(self.feed(shutdown(ShutdownReason.SUSPEND)))
        self.assertFalse(self.feed(shutdown(ShutdownReason.SUSPEND)))  # no re-arm since

    def test_after_a_rearm_once_the_domain_left_its_shutdown_the_next_report_is_news(self) -> None:
        self.feed(shutdown(ShutdownReason.SUSPEND))
        self.watch._rearmed_at(None)
        self.assertIsNone(self.watch._repeat_check(shutdown(ShutdownReason.SUSPEND)))
        self.assertTrue(self.feed(shutdown(ShutdownReason.SUSPEND)))

    def test_after_rearm_a_new_shutdown_is_reported(self) -> None:
        self.feed(shutdown(ShutdownReason.SUSPEND))
        self.watch._rearmed_at(5000)
        self.assertTrue(self.feed(shutdown(ShutdownReason.POWEROFF)))

    def test_nothing_is_reported_after_death(self) -> None:
        self.feed(DEATH)
        self.assertFalse(self.feed(DEATH))
        self.assertFalse(self.feed(shutdown()))

    def test_cancel_fails_waiters_and_tells_the_context_once(self) -> None:
        waiting = self.watch.next_event()
        self.watch.cancel()
        self.watch.cancel()
        self.failureResultOf(waiting, WatchCancelled)
        self.assertEqual(self.cancelled, [self.watch])
        self.failureResultOf(self.watch.when_dead(), WatchCancelled)

    def test_a_cancel_names_the_domain(self) -> None:
        watch = DomainWatch(TX, 7, self.cancelled.append, UUID)
        waiting = watch.next_event()
        watch.cancel()
        failure = self.failureResultOf(waiting, WatchCancelled)
        self.assertEqual(str(failure.value), f"the watch on domain 7 ({UUID}) was cancelled")
        self.assertIs(failure.value.watch, watch)

    def test_the_repr_names_the_domain_and_the_state(self) -> None:
        self.assertEqual(repr(self.watch), "<DomainWatch on domain 7, active>")
        watch = DomainWatch(TX, 7, self.cancelled.append, UUID)
        self.assertEqual(repr(watch), f"<DomainWatch on domain 7 ({UUID}), active>")
        watch._fail(errors.ContextClosed("closed"))
        self.assertEqual(repr(watch), f"<DomainWatch on domain 7 ({UUID}), context closed>")

    def test_async_iteration_raises_a_closed_context(self) -> None:
        async def consume() -> None:
            async for event in self.watch:
                pass

        from twisted.internet.defer import ensureDeferred

        consuming = ensureDeferred(consume())
        self.watch._fail(errors.ContextClosed("closed"))
        self.failureResultOf(consuming, errors.ContextClosed)

    def test_async_iteration_ends_quietly_on_cancel(self) -> None:
        async def consume() -> None:
            async for event in self.watch:
                pass

        from twisted.internet.defer import ensureDeferred

        consuming = ensureDeferred(consume())
        self.watch.cancel()
        self.assertIsNone(self.successResultOf(consuming))

    def test_a_context_failure_reaches_every_waiter(self) -> None:
        waiters = [self.watch.next_event(), self.watch.when_shutdown(), self.watch.when_dead()]
        self.watch._fail(RuntimeError("disaster"))
        for d in waiters:
            self.failureResultOf(d, RuntimeError)

    def test_a_cancelled_waiter_does_not_take_an_event(self) -> None:
        gone, kept = self.watch.next_event(), self.watch.next_event()
        gone.cancel()
        self.failureResultOf(gone)
        self.feed(shutdown())
        self.assertEqual(self.successResultOf(kept), shutdown())

    def test_async_iteration_ends_with_the_death(self) -> None:
        self.feed(shutdown())
        self.feed(DEATH)
        seen: List[object] = []

        async def consume() -> None:
            async for event in self.watch:
                seen.append(event)

        from twisted.internet.defer import ensureDeferred

        self.successResultOf(ensureDeferred(consume()))
        self.assertEqual(seen, [shutdown(), DEATH])


class DiskEjectWatchTests(SynchronousTestCase):
    def test_every_eject_is_reported(self) -> None:
        watch = DiskEjectWatch(TX, 7, "hdc", lambda w: None)
        eject = DiskEject(7, UUID, "hdc", Disk(vdev="hdc", is_cdrom=1))
        for _ in range(2):
            self.assertTrue(watch._accept(eject))
            watch._deliver(eject)
        self.assertEqual(self.successResultOf(watch.next_event()), eject)
        self.assertEqual(self.successResultOf(watch.next_event()), eject)

    def test_the_domains_death_ends_it_after_the_ejects_before(self) -> None:
        watch = DiskEjectWatch(TX, 7, "hdc", lambda w: None, UUID)
        eject = DiskEject(7, UUID, "hdc", Disk(vdev="hdc", is_cdrom=1))
        watch._deliver(eject)
        waiting: List[object] = []

        async def consume() -> None:
            async for event in watch:
                waiting.append(event)

        from twisted.internet.defer import ensureDeferred

        consuming = ensureDeferred(consume())
        watch._end(DEATH)
        self.assertIsNone(self.successResultOf(consuming))
        self.assertEqual(waiting, [eject])
        self.assertFalse(watch.active)
        self.assertEqual(self.failureResultOf(watch.next_event(), WatchEnded).value.args[0], DEATH)
        self.assertIn("ended", repr(watch))

    def test_the_repr_names_the_disk_and_its_domain(self) -> None:
        watch = DiskEjectWatch(TX, 7, "hdc", lambda w: None, UUID)
        self.assertEqual(repr(watch), f"<DiskEjectWatch on disk hdc of domain 7 ({UUID}), active>")

    def test_only_ejects_are_accepted(self) -> None:
        watch = DiskEjectWatch(TX, 7, "hdc", lambda w: None)
        self.assertFalse(watch._accept(DEATH))
