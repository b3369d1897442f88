"""
The errors of the simulated host's control protocol.

A request the host refuses raises a :class:`SimError`; the control server
sends the class name as the error ``type`` (``BadRequest``,
``NoSuchDomain``, ``Conflict``) and the message with it.  The toolstack,
the agents and the host raise them; :mod:`txlibxl.sim.control` turns them
into replies.  (The hypervisor's own refusals are
:class:`txlibxl.sim.hypervisor.HypervisorError`, with Xen's errno.)
"""

__all__ = ["SimError", "BadRequest", "NoSuchDomain", "Conflict"]


class SimError(Exception):
    """
    A request the simulated host refuses.  The class name is the error
    ``type`` of the control protocol.
    """


class BadRequest(SimError):
    """The arguments of a request are malformed or out of range."""


class NoSuchDomain(SimError):
    """The request names a domain that does not exist (any more)."""


class Conflict(SimError):
    """The request clashes with the current state (e.g. a duplicate name)."""
