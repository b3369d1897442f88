"""
The ``--amqp*`` options of ``twistd libxl-events`` and the sink they make.

:data:`AMQP_PARAMETERS` joins the daemon's ``optParameters``;
:func:`check_amqp_options` runs in its ``postOptions`` and
:func:`make_amqp_sink` in ``makeService``, so that the daemon's options
module gains three lines.
"""
from __future__ import annotations

import os
from typing import Any, List, Optional

from twisted.python import usage

__all__ = ["AMQP_PARAMETERS", "check_amqp_options", "make_amqp_sink"]

AMQP_PARAMETERS: List[List[Any]] = [
    ["host-name", None, None, "The host's name in records and routing keys (this machine's host name)."],
    ["amqp", None, None, "Publish to RabbitMQ: amqp://user:password@node1:5672,node2:5672/vhost (nodes in failover order)."],
    ["amqp-exchange", None, "txlibxl.events", "The durable topic exchange records are published to."],
    ["amqp-stream", None, "txlibxl.events", "The stream queue bound to the exchange, for replay."],
    ["amqp-max-age", None, "7D", "The stream's retention by age: 7D, 12h, 30m."],
    ["amqp-max-bytes", None, None, "The stream's retention by size, in bytes (no limit by default)."],
    ["amqp-cluster-size", None, "3", "Nodes holding a replica of the stream when it is created."],
    ["amqp-window", None, "500", "Messages sent and not yet confirmed, at most."],
    ["amqp-spool", None, None, "Directory of the spool of unconfirmed records (<state dir>/amqp-spool)."],
    ["amqp-spool-size", None, "100000", "Records the spool holds at most; beyond, new records are refused."],
]


def _count(options: Any, name: str) -> Optional[int]:
    text = options[name]
    if text is None:
        return None
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise usage.UsageError(f"--{name} must be a positive whole number, not {text!r}")
    return value


def check_amqp_options(options: Any) -> None:
    """
    Check the ``--amqp*`` options; store the parsed URL, topology and
    spool directory in C{options} (``amqp-url``, ``amqp-topology``,
    ``amqp-spool``).

    :raises usage.UsageError: what is wrong, in one line.
    """
    name = options["host-name"]
    if name is not None and (not name or any(c.isspace() for c in name)):
        raise usage.UsageError(f"--host-name must be a non-empty name without spaces, not {name!r}")
    if options["amqp"] is None:
        return
    from txlibxl.amqp.topology import StreamTopology
    from txlibxl.amqp.url import parse_broker_url

    try:
        options["amqp-url"] = parse_broker_url(options["amqp"])
    except ValueError as e:
        raise usage.UsageError(f"--amqp: {e}")
    counts = {n: _count(options, n) for n in ("amqp-max-bytes", "amqp-cluster-size", "amqp-window", "amqp-spool-size")}
    try:
        options["amqp-topology"] = StreamTopology(
            exchange=options["amqp-exchange"], stream=options["amqp-stream"], max_age=options["amqp-max-age"],
            max_bytes=counts["amqp-max-bytes"], cluster_size=counts["amqp-cluster-size"],
        )
    except ValueError as e:
        raise usage.UsageError(f"--amqp: {e}")
    if options["amqp-spool"] is not None:
        if options.get("simulate") is not None and options.get("state-dir") is None:
            raise usage.UsageError(
                "--amqp-spool with --simulate needs --state-dir too: a spool that outlives the process needs a seq "
                "that does (without either, both are temporary)"
            )
        options["amqp-spool"] = os.path.abspath(options["amqp-spool"])


def make_amqp_sink(options: Any, events: Any, state_dir: str) -> Optional[Any]:
    """
    The AMQP sink of checked C{options} (or ``None`` without ``--amqp``),
    added to C{events} first of its sinks, so that a record is spooled
    before any other sink has it.  Its spool is ``--amqp-spool``, by
    default ``amqp-spool`` in C{state_dir} (where the seq is kept: the two
    must live and die together).  The caller makes it a child service of
    the daemon's, so that it connects when the daemon starts.

    :raises StartupError: the spool cannot be opened.
    """
    if options["amqp"] is None:
        return None
    from twisted.internet import reactor

    from .amqp import AMQPSink
    from .spool import Spool

    from ..startup import StartupError

    directory = options["amqp-spool"] or os.path.join(state_dir, "amqp-spool")
    try:
        spool = Spool(directory, capacity=int(options["amqp-spool-size"]))
    except (OSError, ValueError) as e:
        raise StartupError(f"--amqp-spool {directory!r}: {e}") from None
    sink = AMQPSink(
        reactor, options["amqp-url"], spool, options["amqp-topology"], window=int(options["amqp-window"]),
        metrics=events.metrics, resync=events.request_snapshot,
    )
    events.sinks.insert(0, sink)
    return sink
