"""
Batched reports through a Context against the real libxenlight on a
simulated host: what the C queue holds when a context closes, reports
made on a worker thread, death generators disabled in C, and what a watch
costs.
"""
from __future__ import annotations

import threading
import tracemalloc
from typing import Any, List

from twisted.internet import defer, reactor, threads

from txlibxl._libxl import binding
from txlibxl._libxl.ctx_reports import event_counts
from txlibxl.events import DomainDeath

from .test_context_on_sim import ContextTestCase


class BatchedReportTests(ContextTestCase):
    def occur(self, kind: int, domid: int, for_user: int) -> None:
        """An event as libxl makes and reports it, on this thread."""
        ffi, lib = binding_native()
        event = lib.txl_event_make(kind, domid, for_user, ffi.NULL, 0)
        lib.txl_event_occurs(self.ctx._ctx._queue, event)

    @defer.inlineCallbacks
    def test_a_context_closed_mid_batch_frees_every_queued_event(self) -> Any:
        domid = yield self.create()
        watch = self.ctx.watch_domain(domid)
        received, freed, _ = event_counts()
        for i in range(20):  # deaths and ejects (kept whole in C) no one takes
            self.occur(binding.EVENT_DISK_EJECT if i % 2 else binding.EVENT_DOMAIN_DEATH, domid, 10**6 + i)
        self.assertEqual(self.ctx._ctx.reports_queued, 20)
        yield self.ctx.close()
        after = event_counts()
        self.assertEqual((after[0] - received, after[1] - freed), (20, 20))
        self.assertFalse(watch.active)

    @defer.inlineCallbacks
    def test_reports_of_a_worker_threads_libxl_call_reach_the_loop_once_in_order(self) -> Any:
        created = yield self.host.control.create_domains(count=3, prefix="threaded")
        domids = [c["domid"] for c in created]
        watches = [self.ctx.watch_domain(d) for d in domids]
        batches: List[List[Any]] = []
        self.ctx.subscribe(batches.append)
        users = {w: u for u, s in self.ctx._subscriptions.items() for w in [s.watch]}
        on_thread: List[bool] = []
        dead = [w.when_dead() for w in watches]
        for d in dead:
            d.addCallback(lambda death: on_thread.append(threading.current_thread() is threading.main_thread()) or death)

        def elsewhere() -> None:
            # libxl reports inside a call made on this thread; the batch is
            # taken when a call into libxl returns (this one, or one the
            # loop made meanwhile) and dispatched on the loop's thread.
            for w in watches:
                self.occur(binding.EVENT_DOMAIN_DEATH, w.domid, users[w])
            self.ctx._ctx.sigchld_occurred()

        yield threads.deferToThread(elsewhere)
        deaths = yield defer.gatherResults(dead)
        yield deferLater(0)  # the batch is handed once the drain that fired them ends
        self.assertEqual(deaths, [DomainDeath(w.domid, w.uuid) for w in watches])
        self.assertEqual([e for b in batches for e in b], deaths)  # each once, in libxl's order
        self.assertEqual(on_thread, [True, True, True])
        self.assertEqual(self.ctx._ctx.reports_queued, 0)

    @defer.inlineCallbacks
    def test_a_storm_disables_its_generators_in_c(self) -> Any:
        created = yield self.host.control.create_domains(count=200, prefix="spent")
        domids = [c["domid"] for c in created]
        watches = [self.ctx.watch_domain(d) for d in domids]
        self.assertEqual(self.ctx._ctx.generators_enabled, 200)
        _, _, disabled = event_counts()
        yield self.host.control.destroy(domids, mode="burst")
        deaths = yield defer.gatherResults([w.when_dead() for w in watches])
        self.assertEqual([d.domid for d in deaths], domids)
        self.assertEqual(event_counts()[2] - disabled, 200)
        self.assertEqual((self.ctx.watches, self.ctx._ctx.generators_enabled), (0, 0))

    @defer.inlineCallbacks
    def test_a_watch_costs_at_most_a_kibibyte_of_python_heap(self) -> Any:
        n = 500
        created = yield self.host.control.create_domains(count=n, prefix="heap")
        domids = [c["domid"] for c in created]
        self.ctx.watch_domain(domids[0]).cancel()  # first-use allocations
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            watches = [self.ctx.watch_domain(d) for d in domids]
            waiting = [w.when_dead() for w in watches]
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        per_watch = (after - before) / n
        self.assertLessEqual(per_watch, 1024, f"{per_watch:.0f} bytes per watch (with its when_dead waiter)")
        yield self.host.control.destroy(domids, mode="burst")
        yield defer.gatherResults(waiting)


def binding_native() -> Any:
    from txlibxl._libxl import native

    return native.load()


def deferLater(seconds: float) -> defer.Deferred:
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)
