"""
Transactions as xenstored 4.17 implements them.

Reads go to the live tree until a node is first touched, then to the
transaction's private copy; commit fails with ``EAGAIN`` if any node *first
read* in the transaction has another generation count in the live tree by
then.  Watches of a transaction fire on commit only.  Transaction ids are
per connection and start at 1 (:class:`~txlibxl.sim.store.StoreConnection`
hands them out).

Every node access of an operation goes through :class:`_TransactionsMixin`
(``_read_node``, ``_write_node``, ``_delete_node``): without a transaction
they act on the live tree at once, within one they record the access
(``struct accessed_node``) that ``_commit`` later checks and applies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from .errors import XenstoreError
from .limits import Quotas
from .perms import _Caller, _Perms
from .tree import _Node

if TYPE_CHECKING:
    from .store import StoreConnection

_NO_GENERATION = -1



@dataclass
class _Access:
    """A node touched by a transaction (``struct accessed_node``)."""

    generation: int
    check_gen: bool
    node: Optional[_Node]
    old_perms: Optional[Tuple[_Perms, int]]
    modified: bool = False
    fire_watch: bool = False
    watch_exact: bool = False


class _Transaction:
    def __init__(self, tx_id: int, generation: int) -> None:
        self.id = tx_id
        self.generation = generation
        self.accessed: Dict[str, _Access] = {}
        self.entry_delta: Dict[int, int] = {}
        self.fail = False


class _TransactionsMixin:
    """Node access through transactions (part of :class:`~txlibxl.sim.store.Store`)."""

    quotas: Quotas
    _nodes: Dict[str, _Node]
    _generation: int

    def _read_node(self, caller: _Caller, tx: Optional[_Transaction], name: str) -> Optional[_Node]:
        if tx is None:
            return self._nodes.get(name)
        access = tx.accessed.get(name)
        if access is not None:
            return access.node
        if not caller.privileged and len(tx.accessed) >= self.quotas.transaction_nodes:
            tx.fail = True
            raise XenstoreError("ENOSPC", "too many nodes in transaction")
        live = self._nodes.get(name)
        if live is None:
            tx.accessed[name] = _Access(_NO_GENERATION, True, None, None)
            return None
        copy = live.copy()
        tx.accessed[name] = _Access(live.generation, True, copy, (live.perms, live.generation))
        return copy

    def _write_node(self, caller: _Caller, tx: Optional[_Transaction], name: str, node: _Node) -> None:
        """Store C{node} (already checked) under C{name}: a new generation."""
        self._generation += 1
        node.generation = self._generation
        if tx is None:
            self._set_global(name, node)
            return
        access = tx.accessed.get(name)
        if access is None:
            if not caller.privileged and len(tx.accessed) >= self.quotas.transaction_nodes:
                tx.fail = True
                raise XenstoreError("ENOSPC", "too many nodes in transaction")
            access = tx.accessed[name] = _Access(0, False, node, None)
        access.node = node
        access.modified = True

    def _delete_node(self, tx: Optional[_Transaction], name: str) -> None:
        if tx is None:
            self._del_global(name)
            return
        access = tx.accessed.get(name)
        if access is None:
            access = tx.accessed[name] = _Access(0, False, None, None)
        access.node = None
        access.modified = True

    def _entry_delta(self, tx: Optional[_Transaction], domid: int, delta: int) -> None:
        if tx is not None:
            tx.entry_delta[domid] = tx.entry_delta.get(domid, 0) + delta

    def _commit(self, conn: StoreConnection, tx: _Transaction) -> None:
        if tx.fail:
            raise XenstoreError("ENOMEM", "transaction failed earlier")
        for domid, delta in tx.entry_delta.items():
            # transaction_fix_domains checks every touched unprivileged
            # domain, even one whose count did not change.
            if domid != 0 and self.owned_count(domid) + delta >= self.quotas.nodes_per_domain:
                raise XenstoreError("ENOSPC", "node quota exceeded at commit")
        for name, access in tx.accessed.items():
            if access.check_gen:
                live = self._nodes.get(name)
                if access.generation != (live.generation if live is not None else _NO_GENERATION):
                    raise XenstoreError("EAGAIN", f"conflict on {name}")
        for name, access in tx.accessed.items():
            if not access.modified:
                continue
            if access.node is not None:
                self._generation += 1
                access.node.generation = self._generation
                self._set_global(name, access.node)
            else:
                self._del_global(name)
            if access.fire_watch:
                self._fire(name, exact=access.watch_exact, old_perms=access.old_perms)
