"""
xenstored's side of a domain's death: when ``@releaseDomain`` fires.

Xen raises ``VIRQ_DOM_EXC`` when a domain has finished shutting down, when
a destroyed domain has become *dying* and once more when it is gone; C
xenstored's ``check_domains`` (``xenstored_domain.c``, RELEASE-4.17.0)
then decides what to announce.  :class:`_CheckDomainsMixin` plays that
function for the :class:`~txlibxl.sim.hypervisor.Hypervisor`, which calls
``_virq_dom_exc`` wherever Xen would raise the interrupt; the rules are in
the :mod:`txlibxl.sim.hypervisor` docstring.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Set

from .domain import Domain


class _CheckDomainsMixin:
    """``check_domains`` on ``VIRQ_DOM_EXC`` (part of :class:`~txlibxl.sim.hypervisor.Hypervisor`).

    It keeps the domains whose shutdown xenstored has announced already
    (``_shutdown_noticed``) and the shut-down domains it could not announce
    yet because they were not introduced (``_shutdown_unnoticed``); the
    Hypervisor creates both sets.
    """

    _store: Any
    _domains: Dict[int, Domain]
    _shutdown_noticed: Set[int]
    _shutdown_unnoticed: Set[int]

    def _virq_dom_exc(self, domids: Iterable[int]) -> None:
        """
        Xen raised ``VIRQ_DOM_EXC``: run xenstored's ``check_domains`` over
        the domains that changed (the others would give it nothing new)
        and over shut-down domains it could not announce yet because they
        were not introduced.
        """
        store = self._store
        candidates = list(domids)
        if self._shutdown_unnoticed:
            candidates.extend(self._shutdown_unnoticed.difference(candidates))
        notify = False
        for domid in candidates:
            domain = self._domains.get(domid)
            if not store.is_introduced(domid):
                if domain is None:
                    # Gone and never introduced: xenstored frees what it
                    # knew of it (nodes it owned) without any event.
                    self._shutdown_unnoticed.discard(domid)
                    store.domain_gone(domid)
                elif domain.shutdown and not domain.dying:
                    self._shutdown_unnoticed.add(domid)
                else:
                    self._shutdown_unnoticed.discard(domid)
                continue
            self._shutdown_unnoticed.discard(domid)
            if domain is not None:
                if domain.shutdown and domid not in self._shutdown_noticed:
                    self._shutdown_noticed.add(domid)
                    notify = True
                if not domain.dying:
                    continue
            # Dying or gone: xenstored drops the domain's connection, which
            # fires @releaseDomain itself (destroy_domain()).
            self._shutdown_noticed.discard(domid)
            store.domain_gone(domid)
            notify = False
        if notify:
            store.fire_special("@releaseDomain")
