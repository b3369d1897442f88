"""
``seq`` is never reused: the state directory's high-water mark is raised
durably before a block of numbers is used, a restart starts above it, a
clean stop lets the next start go on without a gap.
"""
from __future__ import annotations

import json
import os
import stat

from twisted.trial.unittest import TestCase

from txlibxl.daemon.sequence import STATE_FILE, SequenceStore
from txlibxl.daemon.startup import StartupError


def crash(store: SequenceStore) -> None:
    """What a SIGKILL leaves: the lock released, nothing else done."""
    store._unlock()


class SequenceStoreTests(TestCase):
    def setUp(self) -> None:
        self.directory = os.path.join(self.mktemp(), "state")

    def mark(self) -> int:
        with open(os.path.join(self.directory, STATE_FILE)) as f:
            return json.load(f)["reserved"]

    def test_a_new_directory_numbers_from_one(self) -> None:
        store = SequenceStore(self.directory, block=10)
        self.assertEqual([store.next() for _ in range(3)], [1, 2, 3])
        store.close()

    def test_the_mark_is_above_every_number_given_out_at_any_moment(self) -> None:
        store = SequenceStore(self.directory, block=10)
        for _ in range(25):
            n = store.next()
            self.assertGreater(self.mark(), n)
        crash(store)

    def test_after_a_crash_numbers_start_above_any_used_with_a_gap(self) -> None:
        store = SequenceStore(self.directory, block=10)
        used = [store.next() for _ in range(13)]
        crash(store)
        again = SequenceStore(self.directory, block=10)
        first = again.next()
        self.assertGreater(first, max(used))
        self.assertEqual(first, 21)  # the rest of the second block is skipped
        again.close()

    def test_after_a_clean_stop_numbers_go_on_without_a_gap(self) -> None:
        store = SequenceStore(self.directory, block=10)
        for _ in range(13):
            store.next()
        store.close()
        again = SequenceStore(self.directory, block=10)
        self.assertEqual(again.next(), 14)
        again.close()

    def test_the_directory_is_0700_and_its_files_0600(self) -> None:
        SequenceStore(self.directory).close()
        self.assertEqual(stat.S_IMODE(os.stat(self.directory).st_mode), 0o700)
        for name in os.listdir(self.directory):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.directory, name)).st_mode), 0o600, name)

    def test_a_second_process_on_the_same_directory_is_refused(self) -> None:
        store = SequenceStore(self.directory)
        self.addCleanup(store.close)
        e = self.assertRaises(StartupError, SequenceStore, self.directory)
        self.assertIn("in use by another process", str(e))

    def test_an_unreadable_state_file_is_refused_not_reset(self) -> None:
        SequenceStore(self.directory).close()
        with open(os.path.join(self.directory, STATE_FILE), "w") as f:
            f.write("{not json")
        self.assertRaises(StartupError, SequenceStore, self.directory)

    def test_a_directory_that_cannot_be_made_is_a_startup_error(self) -> None:
        self.assertRaises(StartupError, SequenceStore, "/proc/no/such/state")

    def test_a_temporary_directory_goes_on_close(self) -> None:
        store = SequenceStore(self.directory, remove=True)
        store.next()
        store.close()
        self.assertFalse(os.path.exists(self.directory))
