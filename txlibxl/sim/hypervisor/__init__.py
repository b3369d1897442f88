"""The simulated hypervisor: the domain table that Xen would hold.

:class:`Hypervisor` keeps one :class:`Domain` per live domain and changes it
the way Xen 4.17 does on the corresponding hypercall (``createdomain``,
``max_vcpus``, ``max_mem``, ``pausedomain``, ``unpausedomain``, ``SCHEDOP_remote_shutdown``,
``destroydomain``).  It also plays the part of C xenstored's reaction to the
``VIRQ_DOM_EXC`` interrupt that Xen raises, because that is where the
special watch ``@releaseDomain`` comes from:

* Xen raises ``VIRQ_DOM_EXC`` when a domain has finished shutting down, when
  a destroyed domain has become *dying* (``DOMDYING_dead``) and once more
  when it is finally gone.  Pausing and unpausing raise nothing.
* xenstored (``check_domains`` in ``xenstored_domain.c``, RELEASE-4.17.0)
  then looks at every domain it knows as *introduced*: a domain seen shut
  down (or crashed) for the first time makes it fire ``@releaseDomain``
  once, for all such domains together; a domain found dying or gone is
  released (its connection and watches freed) and that release fires
  ``@releaseDomain`` itself.  Domains that were never introduced are
  ignored.

Here that release is :meth:`Store.domain_gone
<txlibxl.sim.store.Store.domain_gone>`, which fires ``@releaseDomain`` for
an introduced domain and silently drops the nodes of one that never was.

Domains are immutable snapshots (:class:`Domain` is frozen): every change
replaces the domain's entry with a new value, so a snapshot handed to a
caller or a subscriber never changes under it.

Bad requests raise a :class:`HypervisorError` subclass carrying the errno
that Xen would return (``ESRCH`` for a missing domain, ``EINVAL`` for an
operation Xen refuses...), so the hypercall server can answer the shim
exactly as the real hypercall would fail.

By module (a subpackage, like :mod:`txlibxl.sim.store`, because these are
the parts of one object; :mod:`txlibxl.sim.hypercalls` serves it to the
shim):

* :mod:`.hypervisor`: the :class:`Hypervisor`, its table and hypercalls;
* :mod:`.domctl`: the hypercalls of building a domain (``createdomain``
  with the requested domid, type flags and handle, ``max_vcpus``,
  ``max_mem``, population, event channels, the grant table seed) and what
  the guest changes later (balloon, vCPUs up and down);
* :mod:`.check_domains`: xenstored's ``check_domains``, i.e. when
  ``@releaseDomain`` fires;
* :mod:`.saverestore`: the memory image and log-dirty mode a save reads,
  the state a restore puts into a new domain, ``resumedomain``;
* :mod:`.domain`: :class:`Domain`, :class:`HostInfo`,
  :class:`ShutdownReason`, :class:`DomainChange` and the ``XEN_DOMINF_*``
  bits;
* :mod:`.errors`: :class:`HypervisorError` and its kinds.

Import from here.
"""
from .domain import DOMID_FIRST_RESERVED, Domain, DomainChange, HostInfo, ShutdownReason
from .errors import (
    DomainExists,
    HypervisorError,
    InvalidDomainConfig,
    InvalidOperation,
    NoFreeDomid,
    NoSuchDomain,
    OutOfMemory,
)
from .hypervisor import Hypervisor

__all__ = [
    "DOMID_FIRST_RESERVED",
    "Domain",
    "DomainChange",
    "DomainExists",
    "HostInfo",
    "Hypervisor",
    "HypervisorError",
    "InvalidDomainConfig",
    "InvalidOperation",
    "NoFreeDomid",
    "NoSuchDomain",
    "OutOfMemory",
    "ShutdownReason",
]
