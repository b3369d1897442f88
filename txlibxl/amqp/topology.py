"""
Where a fleet's records meet: :class:`StreamTopology`.

Publishers send every record to a durable **topic exchange** with the
routing key ``xen.<host>.<domain uuid>.<event type>`` (:func:`routing_key`;
a ``snapshot`` has ``host`` in the uuid's place).  A **stream queue**
bound to it with ``xen.#`` keeps every record for replay, trimmed by age
and size, replicated on ``cluster_size`` nodes.  Other queues may be bound
to the same exchange for other consumers (``xen.*.*.death``...).
"""
from __future__ import annotations

import re
from typing import Any, Dict, Optional

import attr
from twisted.internet import defer

__all__ = ["StreamTopology", "routing_key", "routing_word", "BINDING_KEY"]

#: The stream's binding: every record of every host.
BINDING_KEY = "xen.#"

_AGE = re.compile(r"^[1-9][0-9]*(Y|M|D|h|m|s)$")


def routing_word(text: str) -> str:
    """C{text} as one word of a topic routing key (dots and spaces become ``_``)."""
    return re.sub(r"[.\s#*]", "_", text) or "_"


def routing_key(host: str, uuid: Optional[str], kind: str) -> str:
    """``xen.<host>.<uuid>.<type>``; ``xen.<host>.host.<type>`` for a record of no single domain."""
    return f"xen.{routing_word(host)}.{uuid or 'host'}.{kind}"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StreamTopology:
    """
    The exchange, the stream and the stream's retention.

    :param max_age: ``x-max-age``: ``7D``, ``12h``, ``30m`` (Y, M, D, h, m, s).
    :param max_bytes: ``x-max-length-bytes``, or ``None`` for no limit.
    :param cluster_size: ``x-initial-cluster-size``: the nodes holding a
        replica when the stream is created (the broker uses what it has
        if fewer).
    :raises ValueError: an empty name, a malformed age, or sizes that are
        not positive.
    """

    exchange: str = "txlibxl.events"
    stream: str = "txlibxl.events"
    max_age: str = "7D"
    max_bytes: Optional[int] = None
    cluster_size: int = 3
    segment_bytes: Optional[int] = None

    def __attrs_post_init__(self) -> None:
        if not self.exchange or not self.stream:
            raise ValueError("the exchange and the stream need names")
        if not _AGE.match(self.max_age):
            raise ValueError(f"a stream's age is a number and a unit (Y M D h m s), like 7D or 12h, not {self.max_age!r}")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError(f"the stream's size limit must be positive, not {self.max_bytes!r}")
        if self.cluster_size < 1:
            raise ValueError(f"the stream needs at least one replica, not {self.cluster_size!r}")

    def queue_arguments(self) -> Dict[str, Any]:
        """The stream's ``queue.declare`` arguments."""
        arguments: Dict[str, Any] = {
            "x-queue-type": "stream",
            "x-max-age": self.max_age,
            "x-initial-cluster-size": self.cluster_size,
        }
        if self.max_bytes is not None:
            arguments["x-max-length-bytes"] = self.max_bytes
        if self.segment_bytes is not None:
            arguments["x-stream-max-segment-size-bytes"] = self.segment_bytes
        return arguments

    async def declare(self, channel: Any) -> None:
        """
        Declare the exchange and the stream and bind them (idempotent; a
        stream declared before with other arguments closes the channel
        with PRECONDITION_FAILED).
        """
        await channel.exchange_declare(exchange=self.exchange, exchange_type="topic", durable=True)
        await channel.queue_declare(queue=self.stream, durable=True, arguments=self.queue_arguments())
        await channel.queue_bind(queue=self.stream, exchange=self.exchange, routing_key=BINDING_KEY)

    def check(self, channel: Any) -> defer.Deferred:
        """
        A passive declare of the stream: fails (and closes the channel
        with NOT_FOUND) if no publisher has declared it yet.
        """
        return channel.queue_declare(queue=self.stream, passive=True)
