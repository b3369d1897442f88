"""
The consumer side of a fleet: ``python -m txlibxl.fleet``.

It reads the records every host's ``twistd libxl-events --amqp`` publishes
from a RabbitMQ stream, from an offset, a time or the start
(:mod:`~txlibxl.fleet.reader`); puts each host's records back in order and
drops the repeats that publishers' resends leave in the stream
(:mod:`~txlibxl.fleet.dedup`); prints them as JSON lines
(:mod:`~txlibxl.fleet.output`); stores where it is, durably, so that a
restart resumes (:mod:`~txlibxl.fleet.checkpoint`); and serves a live page
of the fleet (:mod:`~txlibxl.fleet.state`, :mod:`~txlibxl.fleet.web`).
:mod:`~txlibxl.fleet.app` wires them together.

A separate program: it imports nothing of the libxl side (neither
:mod:`txlibxl.daemon` nor the binding), only :mod:`txlibxl.amqp`, Twisted
and pika, so it runs on any machine that reaches the broker.
"""
