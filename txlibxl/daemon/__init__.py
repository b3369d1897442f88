"""
``twistd libxl-events``: the daemon that follows every domain of a Xen
host and publishes their lifecycle.

It is an application of the library, not part of it: nothing in
``txlibxl`` outside this package imports it.

* :mod:`~txlibxl.daemon.tap`: the command line (``Options``) and
  ``makeService``, named by the plugin file
  ``twisted/plugins/txlibxl_events.py``.
* :mod:`~txlibxl.daemon.service`: the service that opens a libxl context,
  discovers domains, watches them and recovers from lost sessions.
* :mod:`~txlibxl.daemon.discovery`, :mod:`~txlibxl.daemon.recovery`:
  which domains are followed; the back-off between sessions.
* :mod:`~txlibxl.daemon.records`: the published record and its schema.
* :mod:`~txlibxl.daemon.metrics`: the counters behind ``/metrics``.
* :mod:`~txlibxl.daemon.simulate`: ``--simulate``, a simulated host for
  the daemon's lifetime.
* :mod:`txlibxl.daemon.sinks`: where records go (JSON lines, HTTP).
"""
