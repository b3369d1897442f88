"""
The AMQP sink's spool: an entry leaves it only when confirmed, and what
it holds survives the process.
"""
from __future__ import annotations

import os

from twisted.trial.unittest import TestCase

from txlibxl.daemon.sinks.spool import Spool, SpoolEntry, SpoolFull


class SpoolTests(TestCase):
    def setUp(self) -> None:
        self.dir = os.path.join(self.mktemp(), "spool")

    def fill(self, spool: Spool, seqs) -> None:
        for seq in seqs:
            spool.append(seq, "xen1", "death", f"xen.xen1.u.death", b'{"seq": %d}' % seq)

    def test_entries_survive_a_reopen_in_order(self) -> None:
        spool = Spool(self.dir, segment_entries=3)
        self.fill(spool, range(1, 8))
        spool.ack(1)
        spool.sync()
        again = Spool(self.dir)  # without close: as after kill -9
        self.assertEqual([e.seq for e in again.pending()], [2, 3, 4, 5, 6, 7])
        self.assertEqual(again.pending()[0].body, b'{"seq": 2}')
        self.assertEqual(again.last_seq, 7)

    def test_an_entry_leaves_only_when_acked_and_out_of_order_acks_count(self) -> None:
        spool = Spool(self.dir)
        self.fill(spool, [1, 2, 3])
        spool.ack(2)
        self.assertEqual([e.seq for e in spool.pending()], [1, 3])
        self.assertEqual(spool.acked_mark, 0)
        spool.ack(1)
        self.assertEqual(spool.acked_mark, 2)
        spool.ack(3)
        self.assertEqual((len(spool), spool.acked_mark), (0, 3))

    def test_each_entry_names_the_one_before_across_restarts(self) -> None:
        spool = Spool(self.dir)
        self.fill(spool, [5, 9])
        self.assertEqual([e.prev for e in spool.pending()], [0, 5])
        spool.ack(5)
        spool.ack(9)
        spool.close()
        again = Spool(self.dir)
        self.assertEqual(len(again), 0)
        self.assertEqual(again.append(12, "xen1", "new", "k", b"{}").prev, 9)

    def test_a_torn_last_line_is_cut_off(self) -> None:
        spool = Spool(self.dir)
        self.fill(spool, [1, 2])
        segment = [n for n in os.listdir(self.dir) if n.startswith("segment-")][0]
        with open(os.path.join(self.dir, segment), "ab") as f:
            f.write(b"3 2 0 xen1 death key {\"se")
        again = Spool(self.dir)
        self.assertEqual([e.seq for e in again.pending()], [1, 2])
        self.assertEqual(again.append(3, "xen1", "death", "k", b"{}").prev, 2)

    def test_fully_confirmed_segments_are_deleted(self) -> None:
        spool = Spool(self.dir, segment_entries=2)
        self.fill(spool, range(1, 7))
        for seq in range(1, 5):
            spool.ack(seq)
        segments = sorted(n for n in os.listdir(self.dir) if n.startswith("segment-"))
        self.assertEqual(segments, ["segment-00000000000000000005"])

    def test_a_full_spool_refuses(self) -> None:
        spool = Spool(self.dir, capacity=2)
        self.fill(spool, [1, 2])
        self.assertTrue(spool.full)
        self.assertRaises(SpoolFull, self.fill, spool, [3])
        spool.ack(1)
        self.fill(spool, [3])

    def test_seqs_must_grow_and_fields_fit_a_line(self) -> None:
        spool = Spool(self.dir)
        self.fill(spool, [4])
        self.assertRaises(ValueError, self.fill, spool, [4])
        self.assertRaises(ValueError, spool.append, 5, "xen 1", "new", "k", b"{}")
        self.assertRaises(ValueError, spool.append, 5, "xen1", "new", "k", b"{\n}")

    def test_the_spool_is_private(self) -> None:
        spool = Spool(self.dir)
        self.fill(spool, [1])
        self.assertEqual(os.stat(self.dir).st_mode & 0o777, 0o700)
        for name in os.listdir(self.dir):
            self.assertEqual(os.stat(os.path.join(self.dir, name)).st_mode & 0o077, 0)

    def test_a_line_reads_back_as_the_entry(self) -> None:
        entry = SpoolEntry(3, 2, 1, "xen1", "shutdown", "xen.xen1.u.shutdown", b'{"a": "b c"}')
        self.assertEqual(SpoolEntry.parse(entry.line()), entry)
