"""
The consumer's per-host chains: every record once, in order, in bounded
memory, whatever the resends after reconnects left in the stream.
"""
from __future__ import annotations

import itertools
import random
from typing import List, Tuple

from twisted.trial.unittest import TestCase

from txlibxl.fleet.dedup import Chains


def publish_with_failures(seqs: List[int], rng: random.Random, window: int = 8) -> List[Tuple[int, int]]:
    """
    What a publisher puts in the stream: (seq, prev) runs, each resend
    starting at the oldest unconfirmed one; within a run a message may
    be lost (a nack) while later ones get through.
    """
    prevs = dict(zip(seqs, [0] + seqs[:-1]))
    stream: List[Tuple[int, int]] = []
    confirmed = set()
    while len(confirmed) < len(seqs):
        pending = [s for s in seqs if s not in confirmed]
        run = pending[: rng.randint(1, 3 * window)]
        for s in run:
            if rng.random() < 0.1 and stream:  # (a chain's first message is its start: see Chains)
                continue  # lost in this run (nacked): the next run sends it again
            stream.append((s, prevs[s]))
            if rng.random() < 0.8:
                confirmed.add(s)
    return stream


class ChainTests(TestCase):
    def test_repeats_after_a_reconnect_are_dropped(self) -> None:
        chains = Chains()
        out = []
        for seq, prev in [(1, 0), (2, 1), (3, 2), (2, 1), (3, 2), (4, 3)]:
            out += chains.accept("h", seq, prev, seq)
        self.assertEqual(out, [1, 2, 3, 4])
        self.assertEqual(chains.hosts["h"].repeats, 2)

    def test_a_message_after_a_lost_one_waits_for_it(self) -> None:
        chains = Chains()
        self.assertEqual(chains.accept("h", 1, 0, 1), [1])
        self.assertEqual(chains.accept("h", 3, 2, 3), [])
        self.assertEqual(chains.accept("h", 2, 1, 2), [2, 3])
        self.assertEqual(chains.accept("h", 3, 2, 3), [])

    def test_seqs_the_spool_never_held_are_no_gap(self) -> None:
        chains = Chains()
        self.assertEqual(chains.accept("h", 10, 0, "a") + chains.accept("h", 20, 10, "b"), ["a", "b"])
        self.assertEqual(chains.hosts["h"].missing, 0)

    def test_hosts_are_independent(self) -> None:
        chains = Chains()
        self.assertEqual(chains.accept("a", 1, 0, "a1") + chains.accept("b", 1, 0, "b1"), ["a1", "b1"])

    def test_past_the_hold_limit_the_chain_goes_on_and_counts_the_missing(self) -> None:
        chains = Chains(hold=2)
        chains.accept("h", 1, 0, 1)
        self.assertEqual(chains.accept("h", 5, 4, 5) + chains.accept("h", 6, 5, 6), [])
        self.assertEqual(chains.accept("h", 7, 6, 7), [5, 6, 7])
        self.assertEqual(chains.hosts["h"].missing, 3)

    def test_every_record_once_in_order_under_random_failures(self) -> None:
        for seed in range(50):
            rng = random.Random(seed)
            seqs = sorted(rng.sample(range(1, 400), 120))
            chains = Chains()
            out = list(itertools.chain.from_iterable(chains.accept("h", s, p, s) for s, p in
                                                     publish_with_failures(seqs, rng)))
            self.assertEqual(out, seqs, f"seed {seed}")
            self.assertEqual(chains.held_count(), 0)

    def test_the_state_round_trips(self) -> None:
        chains = Chains()
        chains.accept("h", 1, 0, 1)
        again = Chains.from_state(chains.state())
        self.assertEqual(again.accept("h", 1, 0, 1) + again.accept("h", 2, 1, 2), [2])
        self.assertRaises(ValueError, Chains.from_state, {"h": {"last": "x"}})

    def test_a_message_must_come_after_its_prev(self) -> None:
        self.assertRaises(ValueError, Chains().accept, "h", 3, 3, None)
