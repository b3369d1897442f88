"""
The :class:`Store` itself: its state, the tree's operations and the
in-process API.

``Store`` owns all the state (the live tree, the watch index, the domains,
the connections) and the operations ``READ`` .. ``SET_PERMS`` (``_op_*``).
The rules those operations share are its mixins, one module each: paths
(:mod:`.paths`), access checks (:mod:`.perms`), the live tree
(:mod:`.tree`), node access through transactions (:mod:`.transactions`),
watches (:mod:`.watches`) and domains (:mod:`.domains`).  The mixins hold
no state of their own and call one another through ``self``, so an
operation makes the same calls it made when all of this was one class.
See :mod:`txlibxl.sim.store` for the rules as a whole.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

from .connection import StoreConnection
from .domains import _DomainsMixin
from .errors import XenstoreError
from .limits import Quotas
from .paths import _child_path, _parent_of, _PathsMixin
from .perms import (
    PERM_NONE,
    PERM_OWNER,
    PERM_READ,
    PERM_WRITE,
    _Caller,
    _Domain,
    _Perms,
    _PermissionsMixin,
    format_perm,
)
from .transactions import _Transaction, _TransactionsMixin
from .tree import _Node, _TreeMixin
from .watches import SPECIAL_WATCHES, _Watch, _WatchesMixin

__all__ = ["Store"]


class Store(_PathsMixin, _PermissionsMixin, _TreeMixin, _TransactionsMixin, _WatchesMixin,
            _DomainsMixin):
    """
    The simulated xenstore tree, shared by the xenstored server and the
    rest of the simulator.

    The plain methods (L{read}, L{write}, ...) act as the domain C{domid}
    (default 0, privileged) without a transaction.  Wire clients use a
    L{StoreConnection} from L{connect}.  The rest of the public API comes
    from the mixins: C{watch}, C{unwatch}, C{fire_special}, C{watch_count}
    (L{txlibxl.sim.store.watches}); C{introduce}, C{release},
    C{domain_gone}, C{is_introduced}, C{set_target}
    (L{txlibxl.sim.store.domains}); C{domain_path}
    (L{txlibxl.sim.store.paths}); C{owned_count}, C{check}, C{paths}
    (L{txlibxl.sim.store.tree}).

    @param schedule: queues a callable to run after the current operation;
        internal watch callbacks go through it so they never run
        reentrantly.  The host passes C{lambda f: reactor.callLater(0, f)}.
    @param quotas: limits for unprivileged domains.
    @param domain_exists: tells whether the hypervisor knows a domain; it
        decides whether a permission entry for an unknown domain is
        ignored, as C{xc_domain_getinfo} does in xenstored.  By default
        every domain exists.
    @param ring_check: C{ring_check(domid, port)} raises L{XenstoreError}
        when xenstored could not map C{domid}'s ring or bind its event
        channel C{port}, which an C{INTRODUCE} over the wire needs (see
        C{check_introduce}).  By default every ring is there.
    @param on_resume: called with the domid of each C{RESUME} (see
        C{resume}).
    """

    def __init__(self, schedule: Callable[[Callable[[], None]], None] = lambda f: f(),
                 quotas: Quotas = Quotas(),
                 domain_exists: Callable[[int], bool] = lambda domid: True,
                 ring_check: Optional[Callable[[int, int], None]] = None,
                 on_resume: Optional[Callable[[int], None]] = None) -> None:
        self._schedule = schedule
        self._ring_check = ring_check
        self._on_resume = on_resume
        self.quotas = quotas
        self._domain_exists = domain_exists
        self._generation = 0
        self._nodes: Dict[str, _Node] = {}
        self._owned: Dict[int, Set[str]] = {}
        self._watch_index: Dict[str, Dict[Tuple[int, str], _Watch]] = {}
        self._connections: Set[StoreConnection] = set()
        self._domains: Dict[int, _Domain] = {0: _Domain(0, 0, introduced=True)}
        self._targets: Dict[int, int] = {}
        n0: _Perms = ((PERM_NONE, 0, False),)
        self._special_perms: Dict[str, _Perms] = {name: n0 for name in SPECIAL_WATCHES}
        for name in ("/", "/tool", "/tool/xenstored"):
            self._generation += 1
            self._set_global(name, _Node(b"", n0, self._generation))
            if name != "/":
                parent = self._nodes[_parent_of(name)]
                self._add_child(parent, name.rsplit("/", 1)[1])
        self._callbacks: Dict[str, Callable[[str], None]] = {}
        self._next_handle = 0
        self._internal = StoreConnection(self, 0, self._deliver_internal)

    # -- connections -----------------------------------------------------------

    def connect(self, domid: int, deliver: Callable[[str, str], None],
                on_release: Optional[Callable[[], None]] = None) -> StoreConnection:
        """
        A new client acting as C{domid} (0 for a socket).  C{deliver(path,
        token)} receives its watch events.  C{on_release} is called if the
        domain is released while the client is connected.
        """
        conn = StoreConnection(self, domid, deliver, on_release)
        self._connections.add(conn)
        return conn

    # -- the in-process API --------------------------------------------------

    def read(self, path: str, domid: int = 0) -> bytes:
        return self._op_read(self._caller(domid), None, path)

    def write(self, path: str, value: bytes, domid: int = 0) -> None:
        self._op_write(self._caller(domid), None, path, value)

    def mkdir(self, path: str, domid: int = 0) -> None:
        self._op_mkdir(self._caller(domid), None, path)

    def rm(self, path: str, domid: int = 0) -> None:
        self._op_rm(self._caller(domid), None, path)

    def directory(self, path: str, domid: int = 0) -> List[str]:
        return self._op_directory(self._caller(domid), None, path)[1]

    def exists(self, path: str) -> bool:
        """Whether C{path} (absolute) exists; no permission check."""
        if not self._valid_name(path):
            raise XenstoreError("EINVAL", f"bad path {path!r}")
        return path in self._nodes

    def get_perms(self, path: str, domid: int = 0) -> List[str]:
        return self._op_get_perms(self._caller(domid), None, path)

    def set_perms(self, path: str, perms: List[str], domid: int = 0) -> None:
        self._op_set_perms(self._caller(domid), None, path, perms)

    def init_dom0(self) -> None:
        """Write what C{xen-init-dom0} writes on a real host at boot."""
        self.write("/local/domain/0/domid", b"0")
        self.write("/local/domain/0/name", b"Domain-0")
        self.write("/local/pool/0/name", b"Pool-0")

    # -- operations -------------------------------------------------------------

    def _op_read(self, caller: _Caller, tx: Optional[_Transaction], path: str) -> bytes:
        name = self._canonicalize(caller.domid, path)
        return self._get_node(caller, tx, name, PERM_READ).value

    def _op_write(self, caller: _Caller, tx: Optional[_Transaction], path: str, value: bytes) -> None:
        name = self._canonicalize(caller.domid, path)
        try:
            node = self._get_node(caller, tx, name, PERM_WRITE)
        except XenstoreError as e:
            if e.errno_name != "ENOENT":
                raise
            node = self._create_node(caller, tx, name, value)
        else:
            self._check_size(caller, self._node_size(node, value=value))
            node.value = value
            self._write_node(caller, tx, name, node)
        self._fire_or_queue(tx, name, False, node, None)

    def _op_mkdir(self, caller: _Caller, tx: Optional[_Transaction], path: str) -> None:
        name = self._canonicalize(caller.domid, path)
        try:
            self._get_node(caller, tx, name, PERM_WRITE)
        except XenstoreError as e:
            if e.errno_name != "ENOENT":
                raise
            node = self._create_node(caller, tx, name, b"")
            self._fire_or_queue(tx, name, False, node, None)

    def _create_node(self, caller: _Caller, tx: Optional[_Transaction], name: str, value: bytes) -> _Node:
        """C{construct_node} + C{create_node}: create C{name} and its
        missing parents.  All checks happen before anything changes."""
        missing = [name]
        parent_name = _parent_of(name)
        parent = self._read_node(caller, tx, parent_name)
        while parent is None:
            missing.append(parent_name)
            parent_name = _parent_of(parent_name)
            parent = self._read_node(caller, tx, parent_name)
        missing.reverse()  # top-down
        perms = parent.perms
        if not caller.privileged:
            perms = ((perms[0][0], caller.domid, perms[0][2]),) + perms[1:]
            self._ensure_domain(caller.domid)
            owned = self.owned_count(caller.domid)
            # create_node checks the count before each new node; in a
            # transaction the live count does not move until commit.
            needed = 1 if tx is not None else len(missing)
            if owned + needed > self.quotas.nodes_per_domain:
                raise XenstoreError("ENOSPC", "node quota exceeded")
        new_nodes = []
        for i, child in enumerate(missing):
            node = _Node(value if i == len(missing) - 1 else b"", perms)
            if i + 1 < len(missing):
                self._add_child(node, missing[i + 1].rsplit("/", 1)[1])
            self._check_size(caller, self._node_size(node))
            new_nodes.append(node)
        first = missing[0].rsplit("/", 1)[1]
        self._check_size(caller, self._node_size(parent, childlen=parent.childlen + len(first) + 1))
        # Bottom-up, as xenstored writes them.
        for child, node in zip(reversed(missing), reversed(new_nodes)):
            self._write_node(caller, tx, child, node)
            self._entry_delta(tx, node.owner, +1)
        self._add_child(parent, first)
        self._write_node(caller, tx, parent_name, parent)
        return new_nodes[-1]

    def _op_rm(self, caller: _Caller, tx: Optional[_Transaction], path: str) -> None:
        name = self._canonicalize(caller.domid, path)
        try:
            self._get_node(caller, tx, name, PERM_WRITE)
        except XenstoreError as e:
            if e.errno_name != "ENOENT":
                raise
            if self._read_node(caller, tx, _parent_of(name)) is not None:
                return
            raise
        if name == "/":
            raise XenstoreError("EINVAL", "cannot remove /")
        self._rm_node(caller, tx, name)

    def _rm_node(self, caller: _Caller, tx: Optional[_Transaction], name: str) -> None:
        """C{rm_node}: remove C{name} and its subtree, firing watches on
        every removed node (descendants exactly, C{name} recursively)."""
        parent_name = _parent_of(name)
        parent = self._read_node(caller, tx, parent_name)
        if parent is None:
            raise XenstoreError("EINVAL", "parent vanished")
        root = self._read_node(caller, tx, name)
        if root is None:
            return
        # Post-order walk without recursion (paths may be ~1500 levels deep).
        stack: List[Tuple[str, _Node, Iterator[str]]] = [(name, root, iter(list(root.children)))]
        while stack:
            path, node, children = stack[-1]
            child = next(children, None)
            if child is not None:
                child_path = _child_path(path, child)
                child_node = self._read_node(caller, tx, child_path)
                if child_node is not None:
                    stack.append((child_path, child_node, iter(list(child_node.children))))
                continue
            stack.pop()
            self._delete_node(tx, path)
            self._entry_delta(tx, node.owner, -1)
            self._fire_or_queue(tx, path, path != name, node, None)
        self._remove_child(parent, name.rsplit("/", 1)[1])
        self._write_node(caller, tx, parent_name, parent)

    def _op_directory(self, caller: _Caller, tx: Optional[_Transaction], path: str) -> Tuple[int, List[str]]:
        name = self._canonicalize(caller.domid, path)
        node = self._get_node(caller, tx, name, PERM_READ)
        return node.generation, list(node.children)

    def _op_get_perms(self, caller: _Caller, tx: Optional[_Transaction], path: str) -> List[str]:
        name = self._canonicalize(caller.domid, path)
        node = self._get_node(caller, tx, name, PERM_READ)
        return [format_perm(p) for p in node.perms]

    def _op_set_perms(self, caller: _Caller, tx: Optional[_Transaction], path: str, perms: List[str]) -> None:
        new_perms = self._parse_perms(caller, perms)
        if path.startswith("@"):
            current = self._special_perms.get(path)
            if current is None:
                raise XenstoreError("EINVAL", f"no special node {path!r}")
            need = PERM_WRITE | PERM_OWNER
            if self._perm_for(caller, current, None) & need != need:
                raise XenstoreError("EACCES", path)
            self._special_perms[path] = new_perms
            return
        name = self._canonicalize(caller.domid, path)
        node = self._get_node(caller, tx, name, PERM_WRITE | PERM_OWNER)
        if not caller.privileged and new_perms[0][1] != node.owner:
            raise XenstoreError("EPERM", "only the privileged domain changes owners")
        self._check_size(caller, self._node_size(node, perms=new_perms))
        old = (node.perms, node.generation)
        old_owner = node.owner
        self._entry_delta(tx, old_owner, -1)
        node.perms = new_perms
        self._entry_delta(tx, node.owner, +1)
        self._write_node(caller, tx, name, node)
        if tx is None:
            self._reindex_owner(name, old_owner, node)
        self._fire_or_queue(tx, name, False, node, old)
