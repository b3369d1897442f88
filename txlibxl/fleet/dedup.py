"""
Each host's records in order, once: :class:`Chains`.

Every message names its host, its ``seq`` and the ``seq`` of the message
its host's publisher spooled before it (``prev``; see
:mod:`txlibxl.daemon.sinks.amqp`).  A host's publisher sends in ``seq``
order and, after a lost connection or a nack, sends everything
unconfirmed again from the oldest.  So in the stream a host's messages are
ascending runs, each run starting at or before the first message the
previous run failed to deliver; a message is missing from the stream only
until the run that resends it.

:class:`Chains` keeps, per host, the ``seq`` of the last record it
delivered (``last``).  A message with ``seq <= last`` is a repeat and is
dropped.  One whose ``prev`` is ``last`` is the next record: delivered.
One whose ``prev`` is beyond ``last`` came early (a message before it was
lost and will be resent): it is held until the chain reaches it, at most
``hold`` messages per host; past that the chain gives up on the missing
ones, counts them as ``missing`` and delivers what it holds.  The first
message seen from a host starts its chain, whatever its ``prev``: a
consumer reading from the middle of the stream cannot know what came
before (so a host's very first message must not be overtaken by its
second, which a publisher's single ordered channel ensures unless the
broker nacks the first and takes the second).  Memory per
host is one integer, plus what is held, which is nothing unless a message
was lost and not yet resent.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import attr

__all__ = ["Chains", "HostChain"]


@attr.s(slots=True, auto_attribs=True)
class HostChain:
    """One host: the last delivered seq, and messages held until their turn (by ``prev``)."""

    last: Optional[int] = None
    held: Dict[int, Tuple[int, Any]] = attr.ib(factory=dict)
    delivered: int = 0
    repeats: int = 0
    missing: int = 0
    refused: int = 0


class Chains:
    """
    The per-host chains.  :meth:`accept` takes a message and returns
    what is now deliverable, in order.

    :param hold: messages held per host, at most, while waiting for a
        missing one.
    """

    def __init__(self, hold: int = 10_000) -> None:
        if hold < 1:
            raise ValueError(f"hold must be positive, not {hold!r}")
        self.hold = hold
        self.hosts: Dict[str, HostChain] = {}

    def accept(self, host: str, seq: int, prev: int, item: Any, refused: int = 0) -> List[Any]:
        """
        The items deliverable now that C{item} (host C{host}'s message
        C{seq}, after C{prev}) arrived: ``[]`` for a repeat or an early
        message, C{item} and whatever it unblocks otherwise.

        :raises ValueError: C{seq} not above C{prev}.
        """
        if not seq > prev >= 0:
            raise ValueError(f"a message's seq ({seq!r}) comes after its prev ({prev!r})")
        chain = self.hosts.get(host)
        if chain is None:
            chain = self.hosts[host] = HostChain()
        if chain.last is not None and seq <= chain.last:
            chain.repeats += 1
            return []
        if chain.last is None or prev <= chain.last:
            # The next one (prev == last), or a chain that starts again
            # (the host's spool was reset: prev is below last).
            out = [self._deliver(chain, seq, item, refused)]
            out.extend(self._drain(chain))
            return out
        if prev in chain.held:
            chain.repeats += 1
            return []
        chain.held[prev] = (seq, (item, refused))
        if len(chain.held) > self.hold:
            return self.give_up(host)
        return []

    def give_up(self, host: str) -> List[Any]:
        """Stop waiting for C{host}'s missing messages: deliver what is held, counting the gaps."""
        chain = self.hosts.get(host)
        if chain is None or not chain.held:
            return []
        out: List[Any] = []
        while chain.held:
            prev = min(chain.held)
            seq, (item, refused) = chain.held.pop(prev)
            if chain.last is not None and seq <= chain.last:
                continue
            chain.missing += max(0, prev - (chain.last or 0))
            out.append(self._deliver(chain, seq, item, refused))
            out.extend(self._drain(chain))
        return out

    def _deliver(self, chain: HostChain, seq: int, item: Any, refused: int) -> Any:
        chain.last = seq
        chain.delivered += 1
        chain.refused += refused
        return item

    def _drain(self, chain: HostChain) -> List[Any]:
        out = []
        while chain.last in chain.held:
            seq, (item, refused) = chain.held.pop(chain.last)  # type: ignore[arg-type]
            out.append(self._deliver(chain, seq, item, refused))
        return out

    # -- checkpoints ---------------------------------------------------------

    def held_count(self) -> int:
        return sum(len(c.held) for c in self.hosts.values())

    def state(self) -> Dict[str, Any]:
        """The chains' positions, JSON-able (held messages are not: they are read again)."""
        return {
            host: {"last": c.last, "delivered": c.delivered, "repeats": c.repeats, "missing": c.missing,
                   "refused": c.refused}
            for host, c in self.hosts.items()
        }

    @classmethod
    def from_state(cls, state: Dict[str, Any], hold: int = 10_000) -> "Chains":
        """
        Chains at the positions :meth:`state` gave.

        :raises ValueError: not such a state.
        """
        chains = cls(hold)
        if not isinstance(state, dict):
            raise ValueError("the chains' state is an object")
        for host, row in state.items():
            if not isinstance(row, dict) or not (row.get("last") is None or isinstance(row.get("last"), int)):
                raise ValueError(f"host {host!r}: a chain's state has an integer 'last'")
            chain = chains.hosts[host] = HostChain(row.get("last"))
            for name in ("delivered", "repeats", "missing", "refused"):
                value = row.get(name, 0)
                if not isinstance(value, int):
                    raise ValueError(f"host {host!r}: {name} is an integer")
                setattr(chain, name, value)
        return chains
