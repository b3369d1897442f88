"""
The :class:`Store` itself: the tree's operations and the in-process API.

See :mod:`txlibxl.sim.store` for the rules it follows.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

from .domains import _DomainsMixin
from .errors import XenstoreError
from .limits import REL_PATH_MAX, Quotas
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

__all__ = ["Store", "StoreConnection", "SPECIAL_WATCHES"]


def c_atoi(text: str) -> int:
    """C ``atoi``: leading blanks, a sign, digits; anything else ends it."""
    match = re.match(r"[ \t\n\v\f\r]*([+-]?)(\d*)", text)
    assert match is not None
    digits = match.group(2)
    if not digits:
        return 0
    value = int(digits)
    if match.group(1) == "-":
        value = -value
    # atoi returns an int: wrap as a 32-bit two's complement value.
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class StoreConnection:
    """
    One client of the store: a socket connection, a domain's ring, or the
    store's own API.  It owns watches and transactions.

    Every operation raises L{XenstoreError} with the errno name the C
    daemon would send.  C{tx_id} 0 means "no transaction"; any other id must
    name an open transaction of this connection (else C{ENOENT}).
    """

    def __init__(self, store: "Store", domid: int,
                 deliver: Callable[[str, str], None],
                 on_release: Optional[Callable[[], None]] = None) -> None:
        self._store = store
        self.domid = domid
        self._deliver = deliver
        self._on_release = on_release
        self._watches: Dict[Tuple[str, str], _Watch] = {}
        self._transactions: Dict[int, _Transaction] = {}
        self._next_tx_id = 0
        self.closed = False

    # -- identity --------------------------------------------------------

    @property
    def privileged(self) -> bool:
        return self.domid == 0

    def _caller(self) -> _Caller:
        return self._store._caller(self.domid)

    def _tx(self, tx_id: int) -> Optional[_Transaction]:
        if tx_id == 0:
            return None
        try:
            return self._transactions[tx_id]
        except KeyError:
            raise XenstoreError("ENOENT", f"no transaction {tx_id}") from None

    def check_transaction(self, tx_id: int) -> None:
        """Raise C{ENOENT} unless C{tx_id} is 0 or an open transaction."""
        self._tx(tx_id)

    @property
    def watch_count(self) -> int:
        return len(self._watches)

    @property
    def transaction_count(self) -> int:
        return len(self._transactions)

    # -- the data operations ---------------------------------------------

    def read(self, path: str, tx_id: int = 0) -> bytes:
        return self._store._op_read(self._caller(), self._tx(tx_id), path)

    def write(self, path: str, value: bytes, tx_id: int = 0) -> None:
        self._store._op_write(self._caller(), self._tx(tx_id), path, value)

    def mkdir(self, path: str, tx_id: int = 0) -> None:
        self._store._op_mkdir(self._caller(), self._tx(tx_id), path)

    def rm(self, path: str, tx_id: int = 0) -> None:
        self._store._op_rm(self._caller(), self._tx(tx_id), path)

    def directory(self, path: str, tx_id: int = 0) -> List[str]:
        return self._store._op_directory(self._caller(), self._tx(tx_id), path)[1]

    def directory_with_generation(self, path: str, tx_id: int = 0) -> Tuple[int, List[str]]:
        """The children of C{path} and the node's generation count (for
        C{DIRECTORY_PART})."""
        return self._store._op_directory(self._caller(), self._tx(tx_id), path)

    def get_perms(self, path: str, tx_id: int = 0) -> List[str]:
        return self._store._op_get_perms(self._caller(), self._tx(tx_id), path)

    def set_perms(self, path: str, perms: List[str], tx_id: int = 0) -> None:
        self._store._op_set_perms(self._caller(), self._tx(tx_id), path, perms)

    # -- watches ------------------------------------------------------------

    def watch(self, path: str, token: str) -> None:
        """
        Add a watch and fire it once at once (after this returns, the
        initial event has been handed to C{deliver}).
        """
        event_path, token = self.add_watch(path, token)
        self._deliver(event_path, token)

    def add_watch(self, path: str, token: str) -> Tuple[str, str]:
        """
        Add a watch without firing it: the caller delivers the returned
        initial event (C{WATCH} acknowledges first, then fires).

        @return: (path, token) of the initial event.
        """
        store = self._store
        if path.startswith("@"):
            relative = None
            if len(path) > REL_PATH_MAX:
                raise XenstoreError("EINVAL", "special watch path too long")
            name = path
        else:
            relative = None if path.startswith("/") else store.domain_path(self.domid)
            name = store._canonicalize(self.domid, path)
            if not store._valid_name(name):
                raise XenstoreError("EINVAL", f"bad watch path {path!r}")
        key = (name, token)
        if key in self._watches:
            raise XenstoreError("EEXIST", "watch exists")
        if not self.privileged and len(self._watches) > store.quotas.watches_per_domain:
            raise XenstoreError("E2BIG", "too many watches")
        watch = _Watch(self, name, token, relative)
        self._watches[key] = watch
        store._watch_index.setdefault(name, {})[(id(self), token)] = watch
        return watch.event_path(name), token

    def deliver_event(self, path: str, token: str) -> None:
        """Hand one event to this connection's C{deliver}."""
        if not self.closed:
            self._deliver(path, token)

    def unwatch(self, path: str, token: str) -> None:
        name = self._store._canonicalize(self.domid, path)
        watch = self._watches.pop((name, token), None)
        if watch is None:
            raise XenstoreError("ENOENT", "no such watch")
        self._store._unindex_watch(watch)

    def reset_watches(self) -> None:
        """C{RESET_WATCHES}: drop all watches and transactions."""
        for watch in self._watches.values():
            self._store._unindex_watch(watch)
        self._watches.clear()
        self._transactions.clear()

    # -- transactions -------------------------------------------------------

    def transaction_start(self, tx_id: int = 0) -> int:
        """
        Start a transaction; C{tx_id} is the request's own (C{EBUSY} if it
        names an open one: no nesting).
        """
        if self._tx(tx_id) is not None:
            raise XenstoreError("EBUSY", "nested transaction")
        store = self._store
        if not self.privileged and len(self._transactions) > store.quotas.transactions_per_domain:
            raise XenstoreError("ENOSPC", "too many transactions")
        while True:
            candidate = self._next_tx_id
            self._next_tx_id = (self._next_tx_id + 1) & 0xFFFFFFFF
            if candidate != 0 and candidate not in self._transactions:
                break
        store._generation += 1
        self._transactions[candidate] = _Transaction(candidate, store._generation)
        return candidate

    def transaction_end(self, tx_id: int, commit: bool) -> None:
        """
        End a transaction.  The transaction is gone afterwards whatever the
        outcome.  Committing raises C{EAGAIN} on a conflict, C{ENOSPC} if
        the node quota would be exceeded, C{ENOMEM} if the transaction
        failed earlier.
        """
        tx = self._tx(tx_id)
        if tx is None:
            raise XenstoreError("ENOENT", "no transaction")
        del self._transactions[tx_id]
        if commit:
            self._store._commit(self, tx)

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """The client went away: forget its watches and transactions."""
        if self.closed:
            return
        self.closed = True
        self.reset_watches()
        self._store._connections.discard(self)

    def _released(self) -> None:
        self.reset_watches()
        if self._on_release is not None:
            self._on_release()


class Store(_PathsMixin, _PermissionsMixin, _TreeMixin, _TransactionsMixin, _WatchesMixin,
            _DomainsMixin):
    """
    The simulated xenstore tree, shared by the xenstored server and the
    rest of the simulator.

    The plain methods (L{read}, L{write}, ...) act as the domain C{domid}
    (default 0, privileged) without a transaction.  Wire clients use a
    L{StoreConnection} from L{connect}.

    @param schedule: queues a callable to run after the current operation;
        internal watch callbacks go through it so they never run
        reentrantly.  The host passes C{lambda f: reactor.callLater(0, f)}.
    @param quotas: limits for unprivileged domains.
    @param domain_exists: tells whether the hypervisor knows a domain; it
        decides whether a permission entry for an unknown domain is
        ignored, as C{xc_domain_getinfo} does in xenstored.  By default
        every domain exists.
    """

    def __init__(self, schedule: Callable[[Callable[[], None]], None] = lambda f: f(),
                 quotas: Quotas = Quotas(),
                 domain_exists: Callable[[int], bool] = lambda domid: True) -> None:
        self._schedule = schedule
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
