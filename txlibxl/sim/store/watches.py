"""
Watches: where they are kept, and whom a change fires.

A new watch fires once at once with its own path; a change of a node fires
the watches on the node and on its ancestors; ``RM`` also fires the watches
set exactly on every removed descendant node.  A connection only sees
events for nodes it may read (or whose parent it may read, or whose old
permissions let it read).  ``@introduceDomain`` and ``@releaseDomain``
(:data:`SPECIAL_WATCHES`) fire only through ``fire_special``,
``introduce`` and ``release``, and only to connections that may read the
special's permissions.

Watches are indexed by the exact path they are set on, so firing a change
costs the depth of the node plus the watches that match, whatever the
number of watches.  :class:`_WatchesMixin` is the Store's part that keeps
that index and fires from it, plus the Store's own (in-process) watches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple

from .errors import XenstoreError
from .paths import _ancestors_and_self, _parent_of
from .perms import PERM_READ, _Caller, _Perms
from .transactions import _Transaction
from .tree import _Node

if TYPE_CHECKING:
    from .connection import StoreConnection

__all__ = ["SPECIAL_WATCHES"]

SPECIAL_WATCHES = ("@releaseDomain", "@introduceDomain")


@dataclass(eq=False)
class _Watch:
    conn: "StoreConnection"
    node: str
    token: str
    relative_prefix: Optional[str]

    def event_path(self, name: str) -> str:
        if self.relative_prefix is None:
            return name
        path = name[len(self.relative_prefix):]
        return path[1:] if path.startswith("/") else path


class _WatchesMixin:
    """The watch index and firing (part of :class:`~txlibxl.sim.store.Store`)."""

    _watch_index: Dict[str, Dict[Tuple[int, str], _Watch]]
    _special_perms: Dict[str, _Perms]
    _callbacks: Dict[str, Callable[[str], None]]
    _next_handle: int
    _internal: StoreConnection
    _nodes: Dict[str, _Node]
    _schedule: Callable[[Callable[[], None]], None]

    def watch(self, path: str, callback: Callable[[str], None]) -> object:
        """
        A privileged watch on C{path} (absolute, or C{@releaseDomain} /
        C{@introduceDomain}).  C{callback(path)} is scheduled once at once
        and then for every change, like a real watch.

        @return: a handle for L{unwatch}.
        """
        if not (path.startswith("/") or path.startswith("@")):
            raise XenstoreError("EINVAL", "internal watches take absolute paths")
        self._next_handle += 1
        token = str(self._next_handle)
        self._callbacks[token] = callback
        try:
            self._internal.watch(path, token)
        except XenstoreError:
            del self._callbacks[token]
            raise
        return (path, token)

    def unwatch(self, handle: object) -> None:
        path, token = handle  # type: ignore[misc]
        self._internal.unwatch(path, token)
        del self._callbacks[token]

    def fire_special(self, name: str) -> None:
        """Fire every watch on C{@releaseDomain} or C{@introduceDomain}."""
        if name not in SPECIAL_WATCHES:
            raise XenstoreError("EINVAL", f"no special watch {name!r}")
        self._fire(name, exact=True)

    def watch_count(self, path: str) -> int:
        """How many watches (of every client) are set exactly on C{path}
        (absolute or special): lets tests and the control plane wait until
        a client has set its watch."""
        return len(self._watch_index.get(path, ()))

    def _unindex_watch(self, watch: _Watch) -> None:
        bucket = self._watch_index.get(watch.node)
        if bucket is not None:
            bucket.pop((id(watch.conn), watch.token), None)
            if not bucket:
                del self._watch_index[watch.node]

    def _fire_or_queue(self, tx: Optional[_Transaction], name: str, exact: bool,
                       node: Optional[_Node], old_perms: Optional[Tuple[_Perms, int]]) -> None:
        if tx is None:
            self._fire(name, exact, node, old_perms)
            return
        access = tx.accessed.get(name)
        if access is None:
            tx.fail = True
            return
        if not access.fire_watch:
            access.fire_watch = True
            access.watch_exact = exact
        elif not exact:
            access.watch_exact = False

    def _fire(self, name: str, exact: bool, node: Optional[_Node] = None,
              old_perms: Optional[Tuple[_Perms, int]] = None) -> None:
        """C{fire_watches}: deliver an event for C{name} to every matching
        watch whose connection may see it.  Cost: the depth of C{name}
        plus the matching watches."""
        if exact:
            buckets = [self._watch_index.get(name)]
        else:
            buckets = [self._watch_index.get(p) for p in _ancestors_and_self(name)]
        permitted: Dict[int, bool] = {}
        special = name.startswith("@")
        for bucket in buckets:
            if not bucket:
                continue
            for watch in list(bucket.values()):
                conn = watch.conn
                ok = permitted.get(id(conn))
                if ok is None:
                    if special:
                        perms = self._special_perms.get(name)
                        ok = perms is not None and bool(
                            self._perm_for(conn._caller(), perms, None) & PERM_READ)
                    else:
                        ok = self._watch_permitted(conn._caller(), name, node, old_perms)
                    permitted[id(conn)] = ok
                if ok and not conn.closed:
                    conn._deliver(watch.event_path(name), watch.token)

    def _watch_permitted(self, caller: _Caller, name: str, node: Optional[_Node],
                         old_perms: Optional[Tuple[_Perms, int]]) -> bool:
        if old_perms is not None and self._perm_for(caller, old_perms[0], old_perms[1]) & PERM_READ:
            return True
        if node is None:
            node = self._nodes.get(name)
            if node is None:
                return False
        if self._node_perm(caller, node) & PERM_READ:
            return True
        parent = self._nodes.get(_parent_of(name))
        return parent is not None and bool(self._node_perm(caller, parent) & PERM_READ)

    def _deliver_internal(self, path: str, token: str) -> None:
        callback = self._callbacks.get(token)
        if callback is None:
            return

        def run() -> None:
            # The watch may have been removed since the event was queued.
            if self._callbacks.get(token) is callback:
                callback(path)

        self._schedule(run)
