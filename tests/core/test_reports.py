"""
libxl's reports queued in C (``c/txl_queue.c``) and taken in batches
(:mod:`txlibxl._libxl.ctx_reports`), driven here with events made as
libxl makes them and handed to the ``event_occurs`` trampoline.
"""
from __future__ import annotations

from typing import Any, List

from twisted.trial import unittest

from txlibxl._libxl import binding
from txlibxl._libxl.ctx_reports import event_counts

from .test_binding import native, unallocated_ctx


class ReportQueueTests(unittest.TestCase):
    def setUp(self) -> None:
        self.ffi, self.lib = native()
        self.ctx = unallocated_ctx()
        self.batches: List[List[Any]] = []
        self.ctx.set_report_batches(lambda batch, delivering: self.batches.append(batch))

    def occur(self, kind: int, domid: int, for_user: int, detail: int = 0) -> None:
        event = self.lib.txl_event_make(kind, domid, for_user, self.ffi.NULL, detail)
        self.assertNotEqual(event, self.ffi.NULL)
        self.lib.txl_event_occurs(self.ctx._queue, event)

    def test_reports_wait_in_c_until_taken_then_cross_as_one_batch(self) -> None:
        self.occur(binding.EVENT_DOMAIN_SHUTDOWN, 4, 1, detail=3)
        self.occur(binding.EVENT_DOMAIN_DEATH, 4, 1)
        self.occur(binding.EVENT_DOMAIN_DEATH, 5, 2)
        self.assertEqual((self.batches, self.ctx.reports_queued), ([], 3))
        self.ctx._take_reports(True)
        self.assertEqual(self.batches, [[binding.EVENT_DOMAIN_SHUTDOWN, 4, 1, 3, 0,
                                         binding.EVENT_DOMAIN_DEATH, 4, 1, 0, 0,
                                         binding.EVENT_DOMAIN_DEATH, 5, 2, 0, 0]])
        self.assertEqual(self.ctx.reports_queued, 0)

    def test_an_event_with_more_than_scalars_is_read_then_freed(self) -> None:
        self.ctx._eject_vdevs[(9, 2)] = "hdc"
        received, freed, _ = event_counts()
        self.occur(binding.EVENT_DISK_EJECT, 9, 2)
        self.assertEqual(event_counts()[1], freed)  # kept in the queue
        self.ctx._take_reports(True)
        [batch] = self.batches
        self.assertEqual(batch[:4], [binding.EVENT_DISK_EJECT, 9, 2, 0])
        self.assertEqual((batch[4].type, batch[4].vdev), (binding.EVENT_DISK_EJECT, "hdc"))
        after = event_counts()
        self.assertEqual((after[0] - received, after[1] - freed), (1, 1))

    def test_an_operations_end_is_a_report_in_order(self) -> None:
        self.occur(binding.EVENT_DOMAIN_DEATH, 4, 1)
        self.lib.txl_queue_report(self.ctx._queue, binding.REPORT_OP_DONE, 0, 7, -3)
        self.occur(binding.EVENT_DOMAIN_DEATH, 5, 2)
        self.ctx._take_reports(True)
        self.assertEqual(self.batches[0][5:10], [binding.REPORT_OP_DONE, 0, 7, -3, 0])

    def test_a_take_counts_the_operation_ends_it_took(self) -> None:
        self.occur(binding.EVENT_DOMAIN_DEATH, 4, 1)
        self.lib.txl_queue_report(self.ctx._queue, binding.REPORT_OP_DONE, 0, 7, -3)
        self.lib.txl_queue_report(self.ctx._queue, binding.REPORT_OP_DONE, 0, 8, 0)
        flat, done = self.ctx._take()
        self.assertEqual((len(flat), done), (15, 2))
        self.assertEqual(self.ctx._take(), ([], 0))

    def test_a_death_of_a_generator_the_c_side_does_not_keep_is_not_marked_spent(self) -> None:
        self.occur(binding.EVENT_DOMAIN_DEATH, 4, 12345)
        self.ctx._take_reports(True)
        self.assertEqual(self.batches, [[binding.EVENT_DOMAIN_DEATH, 4, 12345, 0, 0]])

    def test_a_batch_longer_than_one_take_arrives_whole(self) -> None:
        for i in range(5000):
            self.occur(binding.EVENT_DOMAIN_DEATH, i % 30000 + 1, i + 1)
        self.ctx._take_reports(True)
        [batch] = self.batches
        self.assertEqual(batch[2::5], list(range(1, 5001)))

    def test_discarded_reports_free_every_event_they_hold(self) -> None:
        received, freed, _ = event_counts()
        for i in range(10):
            self.occur(binding.EVENT_DISK_EJECT if i % 2 else binding.EVENT_DOMAIN_DEATH, 3, i + 1)
        self.assertEqual(self.lib.txl_queue_discard(self.ctx._queue), 10)
        after = event_counts()
        self.assertEqual((after[0] - received, after[1] - freed), (10, 10))
        self.ctx._take_reports(True)
        self.assertEqual(self.batches, [])
