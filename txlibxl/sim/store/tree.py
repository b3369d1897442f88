"""
The live tree: its nodes, their parent/child links and the owner index.

Every node has a value (bytes), an ordered list of children (in creation
order, as ``DIRECTORY`` returns them), permissions and a generation count.
The Store keeps the live nodes in one dict by path, plus an index of the
nodes each domain owns, so that releasing a domain and the node quota cost
what the domain owns rather than the whole tree.  :class:`_TreeMixin` is the
Store's part that keeps both in step, and measures a node as the C daemon's
node-size quota does.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set

from .errors import XenstoreError
from .limits import Quotas
from .paths import _child_path, _parent_of
from .perms import _Caller, _Perms

#: Size of ``struct xs_tdb_record_hdr`` and of one ``struct xs_permissions``:
#: the node-size quota counts the record as the C daemon stores it.
_RECORD_HEADER = 24
_PERM_SIZE = 8


class _Node:
    __slots__ = ("value", "perms", "children", "childlen", "generation")

    def __init__(self, value: bytes, perms: _Perms, generation: int = 0) -> None:
        self.value = value
        self.perms = perms
        self.children: Dict[str, None] = {}
        self.childlen = 0
        self.generation = generation

    def copy(self) -> "_Node":
        other = _Node(self.value, self.perms, self.generation)
        other.children = dict(self.children)
        other.childlen = self.childlen
        return other

    @property
    def owner(self) -> int:
        return self.perms[0][1]


class _TreeMixin:
    """The live tree's bookkeeping (part of :class:`~txlibxl.sim.store.Store`)."""

    quotas: Quotas
    _nodes: Dict[str, _Node]
    _owned: Dict[int, Set[str]]

    def _set_global(self, name: str, node: _Node) -> None:
        old = self._nodes.get(name)
        if old is not None and old is not node:
            self._owned[old.owner].discard(name)
        self._nodes[name] = node
        self._owned.setdefault(node.owner, set()).add(name)

    def _reindex_owner(self, name: str, old_owner: int, node: _Node) -> None:
        if old_owner != node.owner:
            self._owned.get(old_owner, set()).discard(name)
            self._owned.setdefault(node.owner, set()).add(name)

    def _del_global(self, name: str) -> None:
        node = self._nodes.pop(name, None)
        if node is not None:
            owned = self._owned.get(node.owner)
            if owned is not None:
                owned.discard(name)

    @staticmethod
    def _add_child(parent: _Node, child: str) -> None:
        parent.children[child] = None
        parent.childlen += len(child) + 1

    @staticmethod
    def _remove_child(parent: _Node, child: str) -> None:
        if child in parent.children:
            del parent.children[child]
            parent.childlen -= len(child) + 1

    def _node_size(self, node: _Node, value: Optional[bytes] = None,
                   perms: Optional[_Perms] = None, childlen: Optional[int] = None) -> int:
        return (_RECORD_HEADER
                + _PERM_SIZE * len(node.perms if perms is None else perms)
                + len(node.value if value is None else value)
                + (node.childlen if childlen is None else childlen))

    def _check_size(self, caller: _Caller, size: int) -> None:
        if not caller.privileged and size >= self.quotas.node_size:
            raise XenstoreError("ENOSPC", "node too large")

    def owned_count(self, domid: int) -> int:
        """How many nodes C{domid} owns (its node-quota count)."""
        return len(self._owned.get(domid, ()))

    # -- introspection for tests ---------------------------------------------

    def check(self) -> List[str]:
        """
        What is inconsistent in the tree (C{check_store}): children that do
        not exist, nodes their parent does not list, a wrong owner index.
        Empty when all is well.  Walks the whole tree: for tests.
        """
        problems = []
        for name, node in self._nodes.items():
            if name != "/":
                parent = self._nodes.get(_parent_of(name))
                if parent is None or name.rsplit("/", 1)[1] not in parent.children:
                    problems.append(f"{name}: not listed by its parent")
            for child in node.children:
                if _child_path(name, child) not in self._nodes:
                    problems.append(f"{name}: lists missing child {child}")
            if node.childlen != sum(len(c) + 1 for c in node.children):
                problems.append(f"{name}: wrong childlen")
            if name not in self._owned.get(node.owner, ()):
                problems.append(f"{name}: missing from owner index of {node.owner}")
        for domid, names in self._owned.items():
            for name in names:
                node = self._nodes.get(name)
                if node is None or node.owner != domid:
                    problems.append(f"{name}: stale in owner index of {domid}")
        return problems

    def paths(self) -> Iterable[str]:
        """Every node's path (for tests and debugging)."""
        return list(self._nodes)
