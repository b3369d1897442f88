"""
The AMQP plumbing that both ends of a fleet share: broker URLs
(:mod:`~txlibxl.amqp.url`), the exchange and stream they meet on
(:mod:`~txlibxl.amqp.topology`) and a connection that fails over between
the nodes of a cluster (:mod:`~txlibxl.amqp.link`).

It imports Twisted and pika only: the publishing side
(:mod:`txlibxl.daemon.sinks.amqp`) and the consuming side
(:mod:`txlibxl.fleet`) import it, and it imports neither of them nor
anything of the libxl side.
"""
