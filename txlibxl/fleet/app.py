"""
The consumer program's parts put together: :class:`FleetConsumer`.

Each message read (:class:`~txlibxl.fleet.reader.StreamReader`) is placed
in its host's chain (:class:`~txlibxl.fleet.dedup.Chains`); each record
the chain delivers is written as a JSON line
(:class:`~txlibxl.fleet.output.LinesOutput`) and applied to the fleet's
state (:class:`~txlibxl.fleet.state.FleetState`) behind the live page.
A few times a second the output is synced and a
:class:`~txlibxl.fleet.checkpoint.Checkpoint` stored: the offset done
with (never past a message still held for ordering), the chains'
positions and the output's length.  A restart loads it, cuts the output
back to that length and reads from the next offset: the output file ends
up with every record once, whenever the consumer was stopped or killed.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

import attr
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from txlibxl.amqp.topology import StreamTopology
from txlibxl.amqp.url import BrokerURL

from .checkpoint import Checkpoint
from .dedup import Chains
from .output import LinesOutput
from .reader import Start, StreamReader
from .state import FleetState

__all__ = ["FleetConsumer", "Message"]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Message:
    """A message waiting in a chain: where it was in the stream, when it came, what it said."""

    offset: int
    at: float
    body: bytes
    record: Dict[str, Any]


def _header(headers: Dict[str, Any], name: str) -> Optional[int]:
    value = headers.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class FleetConsumer:
    """
    :param state_dir: where the checkpoint lives.
    :param start: where to read from when there is no checkpoint (or with C{reset}).
    :param hold_seconds: longest wait for a missing message before a
        chain gives up on it.
    """

    _log = Logger(namespace="txlibxl.fleet")

    def __init__(
        self,
        reactor: Any,
        url: BrokerURL,
        topology: StreamTopology,
        state_dir: str,
        output: LinesOutput,
        start: Start = "first",
        *,
        reset: bool = False,
        state: Optional[FleetState] = None,
        hold: int = 10_000,
        hold_seconds: float = 30.0,
        checkpoint_interval: float = 0.25,
        prefetch: int = 1000,
    ) -> None:
        self._reactor = reactor
        self.topology = topology
        self.state_dir = state_dir
        self.output = output
        self.state = state if state is not None else FleetState()
        self._hold_seconds = hold_seconds
        checkpoint = None if reset else Checkpoint.load(state_dir, topology.stream)
        if checkpoint is not None:
            self.chains = Chains.from_state(checkpoint.chains, hold)
            cut = output.resume(checkpoint.output_bytes)
            if cut:
                self._log.info("output cut back by {n} bytes to the checkpoint", n=cut)
            if checkpoint.offset is not None:
                start = checkpoint.offset + 1
        else:
            self.chains = Chains(hold)
        self.reader = StreamReader(reactor, url, topology, start, self._message, prefetch=prefetch)
        self._done_offset: Optional[int] = checkpoint.offset if checkpoint is not None else None
        self._saved: Any = None
        self._tick = LoopingCall(self._checkpoint)
        self._tick.clock = reactor
        self._interval = checkpoint_interval
        self.skipped = 0

    def start(self) -> None:
        """Start reading."""
        self.reader.start()
        self._tick.start(self._interval, now=False)

    async def stop(self) -> None:
        """Stop reading; store a last checkpoint and close the output."""
        if self._tick.running:
            self._tick.stop()
        await self.reader.stop()
        self._checkpoint()
        self.output.close()

    # -- messages ------------------------------------------------------------

    def _message(self, offset: int, properties: Any, body: bytes) -> None:
        headers = properties.headers or {}
        host = headers.get("txlibxl-host")
        if isinstance(host, bytes):
            host = host.decode("utf-8", "replace")
        seq, prev = _header(headers, "txlibxl-seq"), _header(headers, "txlibxl-prev-seq")
        refused = _header(headers, "txlibxl-refused") or 0
        try:
            record = json.loads(body)
        except ValueError:
            record = None
        if not isinstance(host, str) or seq is None or prev is None or not seq > prev >= 0 or not isinstance(record, dict):
            self.skipped += 1
            self._log.warn("skipping the message at offset {offset}: not a txlibxl record", offset=offset)
            return
        if refused:
            self._log.warn("host {host} refused {n} records before seq {seq} (its spool was full)", host=host,
                           n=refused, seq=seq)
        message = Message(offset, self._reactor.seconds(), body, record)
        for ready in self.chains.accept(host, seq, prev, message, refused):
            self._deliver(ready)
        if self.chains.hosts[host].held:
            self._give_up_if_stale(host)

    def _deliver(self, message: Message) -> None:
        self.output.write(message.body)
        self.state.apply(message.record)

    def _give_up_if_stale(self, host: str) -> None:
        chain = self.chains.hosts[host]
        oldest = min(m.at for _, (m, _r) in chain.held.values())
        if self._reactor.seconds() - oldest > self._hold_seconds:
            before = chain.missing
            for message in self.chains.give_up(host):
                self._deliver(message)
            self._log.error("host {host}: {n} records never came; going on without them", host=host,
                            n=chain.missing - before)

    # -- checkpoints ---------------------------------------------------------

    def done_offset(self) -> Optional[int]:
        """The offset a restart may resume after: the last read, but before any message still held."""
        offset = self.reader.offset
        held = [m.offset for chain in self.chains.hosts.values() for _, (m, _r) in chain.held.values()]
        if held:
            offset = min(held) - 1
        return offset

    def _checkpoint(self) -> None:
        for host, chain in self.chains.hosts.items():
            if chain.held:
                self._give_up_if_stale(host)
        offset = self.done_offset()
        if offset is None:
            return
        key = (offset, self.output.size())
        if key == self._saved:
            return
        self.output.sync()
        Checkpoint(self.topology.stream, offset, self.output.size(), self.chains.state()).save(self.state_dir)
        self._saved = key
