"""
Domains as xenstored knows them: introduced, released, targeted.

``INTRODUCE`` fires ``@introduceDomain`` (not for an already introduced
domain, whose connections are reset instead); ``RELEASE``, and the
hypervisor's destruction of a domain, remove every node the domain owns
(with its subtree) and fire ``@releaseDomain`` for an introduced domain.
``SET_TARGET`` gives a domain the rights of its target.
:class:`_DomainsMixin` is the Store's part that does it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, Optional, Set

from .errors import XenstoreError
from .limits import DOMID_FIRST_RESERVED
from .perms import _Caller, _Domain, _Perms
from .tree import _Node

if TYPE_CHECKING:
    from .connection import StoreConnection


class _DomainsMixin:
    """Introduce, release, set_target (part of :class:`~txlibxl.sim.store.Store`)."""

    _domains: Dict[int, _Domain]
    _targets: Dict[int, int]
    _connections: Set[StoreConnection]
    _special_perms: Dict[str, _Perms]
    _nodes: Dict[str, _Node]
    _owned: Dict[int, Set[str]]
    _generation: int
    _ring_check: Optional[Callable[[int, int], None]]
    _on_resume: Optional[Callable[[int], None]]

    def check_introduce(self, domid: int, port: int) -> None:
        """
        What C{INTRODUCE} checks before it introduces C{domid}: a real
        domid, and (unless it is introduced already) that its ring can be
        mapped and event channel C{port} bound, as the store's
        C{ring_check} says.

        @raise XenstoreError: C{EINVAL}, or what C{ring_check} raised.
        """
        self._check_real_domid(domid)
        if self.is_introduced(domid) or self._ring_check is None:
            return
        self._ring_check(domid, port)

    def introduce(self, domid: int) -> None:
        """
        C{INTRODUCE}: start talking to C{domid}; fires C{@introduceDomain}
        unless it was introduced already (then its connections' watches and
        transactions are reset, as xenstored resets the ring).
        """
        self._check_real_domid(domid)
        domain = self._domains.get(domid)
        if domain is None:
            domain = self._domains[domid] = _Domain(domid, self._generation)
        if domain.introduced:
            for conn in list(self._connections):
                if conn.domid == domid:
                    conn.reset_watches()
            return
        domain.introduced = True
        self._fire("@introduceDomain", exact=True)

    def release(self, domid: int) -> None:
        """
        C{RELEASE}: forget the introduced domain C{domid}: remove every node
        it owns (with the subtrees below them), drop it from the special
        watches' permissions, disconnect its clients, and fire
        C{@releaseDomain}.

        @raise XenstoreError: C{EINVAL} for domain 0, C{ENOENT} if the
            domain was not introduced.
        """
        if domid == 0:
            raise XenstoreError("EINVAL", "cannot release domain 0")
        domain = self._domains.get(domid)
        if domain is None or not domain.introduced:
            raise XenstoreError("ENOENT", f"domain {domid} not introduced")
        self._destroy_domain(domid)

    def domain_gone(self, domid: int) -> None:
        """
        The hypervisor destroyed C{domid} (what xenstored's
        C{check_domains} notices): released as by L{release} if it was
        introduced; otherwise its nodes are removed without any event.
        """
        if domid == 0:
            return
        self._destroy_domain(domid)

    def resume(self, domid: int) -> None:
        """
        C{RESUME}: the introduced domain C{domid} runs again after a
        suspend, so its next shutdown is announced (the store's
        C{on_resume} is told: the hypervisor model keeps that memory).

        @raise XenstoreError: C{ENOENT} if the domain was not introduced.
        """
        if not self.is_introduced(domid):
            raise XenstoreError("ENOENT", f"domain {domid} not introduced")
        if self._on_resume is not None:
            self._on_resume(domid)

    def is_introduced(self, domid: int) -> bool:
        domain = self._domains.get(domid)
        return domain is not None and domain.introduced

    def set_target(self, domid: int, target: int) -> None:
        """C{SET_TARGET}: C{domid} acts with C{target}'s rights (a stub
        domain for its guest).  Both must be introduced."""
        for d in (domid, target):
            if not self.is_introduced(d):
                raise XenstoreError("ENOENT", f"domain {d} not introduced")
        self._targets[domid] = target

    @staticmethod
    def _check_real_domid(domid: int) -> None:
        if not 0 < domid < DOMID_FIRST_RESERVED:
            raise XenstoreError("EINVAL", f"not a real domain id: {domid}")

    def _ensure_domain(self, domid: int) -> None:
        if domid not in self._domains:
            self._domains[domid] = _Domain(domid, self._generation)

    def _destroy_domain(self, domid: int) -> None:
        domain = self._domains.pop(domid, None)
        self._targets.pop(domid, None)
        # domain_tree_remove: remove the topmost nodes it owns, with their
        # subtrees (the owner index avoids walking the whole tree).
        owned = sorted(self._owned.get(domid, ()), key=lambda p: (p.count("/"), p))
        privileged = _Caller(0, True)
        for name in owned:
            node = self._nodes.get(name)
            if node is None or node.owner != domid or name == "/":
                continue
            self._rm_node(privileged, None, name)
        self._owned.pop(domid, None)
        for special, perms in self._special_perms.items():
            kept = tuple(p for p in perms[1:] if p[1] != domid)
            owner = perms[0]
            if owner[1] == domid:
                owner = (owner[0], 0, owner[2])
            self._special_perms[special] = (owner,) + kept
        for conn in list(self._connections):
            if conn.domid == domid:
                conn._released()
        if domain is not None and domain.introduced:
            self._fire("@releaseDomain", exact=True)
