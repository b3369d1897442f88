"""
One client of the store: :class:`StoreConnection`.

A connection acts as one domain (0 for a socket, the guest's domid for a
ring) and owns that client's watches and transactions; the operations
themselves are the Store's.  :meth:`Store.connect
<txlibxl.sim.store.Store.connect>` makes one; the xenstored server keeps
one per socket connection.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from .errors import XenstoreError
from .limits import REL_PATH_MAX
from .perms import _Caller
from .transactions import _Transaction
from .watches import _Watch

if TYPE_CHECKING:
    from .store import Store

__all__ = ["StoreConnection"]


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
