"""The seams between txlibxl's layers, as zope.interface declarations.

Two pairs of interfaces connect the binding (the only code that touches
cffi) with the reactor layer above it:

* libxl calls *out* through its six osevent hooks: the binding turns each
  hook into a call on an :class:`IOSEventHooks` provider
  (``txlibxl.loop.reactor_osevents.ReactorOSEvents`` on Twisted,
  ``txlibxl.loop.asyncio_osevents.AsyncioOSEvents`` on asyncio).  The loop
  layer calls *back* into libxl through :class:`IOSEventSink`, which the
  binding's context implements.
* libxl forks children in ``owner_mainloop`` mode: the binding reports each
  fork to an :class:`IChildWatcher` (``txlibxl.loop.reactor_children`` or
  ``txlibxl.loop.asyncio_children``), which reaps it with the event loop
  and reports the status through :class:`IChildSink`.

Tokens are opaque integers standing for libxl's ``for_libxl`` pointers;
registrations are whatever Python object the hooks provider returns.  Poll
bits are those of :mod:`select` (``POLLIN``, ``POLLOUT``, ``POLLPRI``,
``POLLHUP``, ``POLLERR``).
"""
from zope.interface import Interface


class IOSEventHooks(Interface):
    """
    libxl's six osevent hooks, in Python terms.

    Every method may be called from within any libxl function, with libxl's
    context lock held and on whatever thread called libxl.  No method may
    call into libxl (in particular no ``occurred_*`` call may be made
    synchronously).  An exception raised by ``*_register`` or ``*_modify``
    is logged by the binding and returned to libxl as
    ``ERROR_OSEVENT_REG_FAIL``; the registration state must then be
    unchanged.
    """

    def fd_register(fd, events, token):
        """
        Start watching C{fd} for the poll bits C{events} (which may be 0:
        keep the registration but watch nothing) on behalf of libxl's
        C{token}.  Several registrations may share one fd.

        @return: the registration, any object but C{None}, handed back to
            C{fd_modify} and C{fd_deregister}.
        """

    def fd_modify(fd, registration, events):
        """
        Change the poll bits of C{registration}.

        @return: the (possibly new) registration.
        """

    def fd_deregister(fd, registration):
        """
        Stop watching for C{registration}, synchronously.  libxl closes (and
        may reuse) the fd right after this returns; the fd is never closed
        by txlibxl.
        """

    def timeout_register(deadline, token):
        """
        Arrange for C{IOSEventSink.occurred_timeout(token)} once the wall
        clock reaches C{deadline} (seconds since the epoch, a float).  A
        deadline in the past fires as soon as possible.

        @return: the registration.
        """

    def timeout_modify(registration, deadline):
        """
        Move C{registration}'s deadline.  libxl only ever passes
        C{deadline=None} (its C{abs={0,0}}): fire as soon as possible.  The
        timer may already be firing; that must be harmless.

        @return: the (possibly new) registration.
        """

    def timeout_deregister(registration):
        """
        Cancel C{registration} without firing it.  libxl 4.17 never calls
        this (it is the deprecated unsafe mode); it is implemented anyway.
        """


class IOSEventSink(Interface):
    """
    The way back into libxl: the ``libxl_osevent_occurred_*`` calls.

    Never call these from inside an :class:`IOSEventHooks` method.
    """

    def occurred_fd(token, fd, events, revents):
        """
        Report that C{fd}, registered for C{token} with poll bits
        C{events}, is ready with C{revents} (which may include POLLHUP and
        POLLERR even when they were not asked for).
        """

    def occurred_timeout(token):
        """
        Report that the timeout registered for C{token} has fired.  Called
        exactly once per timeout registration, after which the
        registration is gone.
        """


class IChildWatcher(Interface):
    """
    Reaps libxl's children with the event loop (``libxl_sigchld_owner_mainloop``).
    """

    def child_forked(pid):
        """
        libxl forked C{pid} (called in the parent, possibly on another
        thread, from inside libxl: do not call libxl from here).  When it
        exits, report its wait status through C{IChildSink.child_reaped}.
        """


class IChildSink(Interface):
    """
    Tells libxl about the death of one of its children.
    """

    def child_reaped(pid, status):
        """
        C{pid} exited with wait status C{status}.  Never called from a
        signal handler or from inside libxl.
        """
