"""
The hypercalls Xen refuses: :class:`HypervisorError` and its kinds.

Bad requests raise a :class:`HypervisorError` subclass carrying the errno
that Xen would return (``ESRCH`` for a missing domain, ``EINVAL`` for an
operation Xen refuses...), so the hypercall server can answer the shim
exactly as the real hypercall would fail.
"""
from __future__ import annotations

import errno as _errno

__all__ = [
    "DomainExists",
    "HypervisorError",
    "InvalidDomainConfig",
    "InvalidOperation",
    "NoFreeDomid",
    "NoSuchDomain",
    "OutOfMemory",
]


class HypervisorError(Exception):
    """A hypercall that Xen would refuse; ``errno`` is what Xen returns."""

    errno = _errno.EINVAL


class NoSuchDomain(HypervisorError, LookupError):
    """No domain has this domid."""

    errno = _errno.ESRCH


class DomainExists(HypervisorError):
    """The requested domid is already in use."""

    errno = _errno.EEXIST


class NoFreeDomid(HypervisorError):
    """Every domid below ``DOMID_FIRST_RESERVED`` is in use."""

    errno = _errno.ENOMEM


class OutOfMemory(HypervisorError):
    """The host has not enough free memory for the domain."""

    errno = _errno.ENOMEM


class InvalidOperation(HypervisorError):
    """Xen refuses this operation on this domain (e.g. destroying dom0)."""

    def __init__(self, message: str, errno: int = _errno.EINVAL) -> None:
        super().__init__(message)
        self.errno = errno


class InvalidDomainConfig(HypervisorError, ValueError):
    """A domain description that Xen would not create."""
