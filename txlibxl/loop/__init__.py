"""
The event-loop side: libxl's six osevent hooks, its children and xenstore
watches on an event loop (Twisted's reactor, or asyncio).

This layer knows no events and no domains: it watches file descriptors
and deadlines for the binding (:mod:`txlibxl._libxl`) and tells it when
one is ready, through the seams in :mod:`txlibxl.interfaces`.

* :mod:`~txlibxl.loop.registrations`: the registration records and the
  argument checks of the hooks, independent of any loop.
* :mod:`~txlibxl.loop.osevents_core` (with :mod:`~txlibxl.loop.osevents_fds`):
  the six hooks' bookkeeping, independent of any loop, driving a small
  adapter per loop.
* :mod:`~txlibxl.loop.logs`: the logger interface the layer writes to,
  and a standard-library one that forces no framework.
* :mod:`~txlibxl.loop.reactor_osevents`: the six hooks on a Twisted
  reactor (``IReactorFDSet`` and ``IReactorTime``).
* :mod:`~txlibxl.loop.reactor_children`: libxl's children reaped by the
  reactor (``libxl_sigchld_owner_mainloop``).
* :mod:`~txlibxl.loop.xenstore_watches`: a libxenstore connection's
  watches, whatever the loop.
* :mod:`~txlibxl.loop.reactor_xenstore`: those watches as a reactor
  reader.
* :mod:`~txlibxl.loop.asyncio_osevents`, :mod:`~txlibxl.loop.asyncio_children`,
  :mod:`~txlibxl.loop.asyncio_xenstore`: the same three on an asyncio
  loop; they import no Twisted.
"""
