"""
The simulated xenstore: the tree, permissions, transactions and watches.

This package is the pure logic of the simulated xenstored (no I/O, no
reactor).  It follows the C xenstored of Xen 4.17 (``tools/xenstore`` at
``RELEASE-4.17.0``) rule by rule, and :mod:`txlibxl.sim.xenstored` serves it
on a Unix socket with the real wire protocol.

What is simulated, as the C daemon does it:

* The tree: every node has a value (bytes), an ordered list of children
  (in creation order, as ``DIRECTORY`` returns them), permissions and a
  generation count.  A fresh store holds what a fresh ``xenstored`` creates:
  ``/``, ``/tool`` and ``/tool/xenstored``, all ``n0``.  ``/local/domain/0``
  is written by ``xen-init-dom0`` on a real host: :meth:`Store.init_dom0`
  writes the same nodes.
* Path rules: absolute paths start with ``/``, no ``//``, no trailing ``/``,
  characters ``[A-Za-z0-9-/_@]``, at most 2048 characters beyond a leading
  ``/local/domain/<domid>/``.  Relative paths resolve against
  ``/local/domain/<domid of the caller>`` (``/local/domain/0`` for sockets).
* ``WRITE`` and ``MKDIR`` create missing parents; ``RM`` of a missing node
  whose parent exists succeeds, ``ENOENT`` when the parent is missing too,
  ``EINVAL`` for ``/``.
* Permissions: the first entry names the owner and the default access of
  everybody else; later entries grant ``r``/``w``/``b``/``n`` to single
  domains.  Domain 0 is privileged and the owner gets everything.  New nodes
  copy their parent's permissions, and an unprivileged creator becomes the
  owner.  Error numbers for missing or forbidden nodes depend on the
  parent's permissions exactly as in ``get_node``/``errno_from_parents``.
  Permission entries naming a domain that did not exist when the node was
  last written are ignored (the domain "generation" rule), so a reused
  domid does not inherit old grants.
* Transactions as 4.17 implements them: reads go to the live tree until a
  node is first touched, then to the transaction's private copy; commit
  fails with ``EAGAIN`` if any node *first read* in the transaction has
  another generation count in the live tree by then.  Watches of a
  transaction fire on commit only.  Transaction ids are per connection and
  start at 1.
* Watches: a new watch fires once at once with its own path; a change of a
  node fires the watches on the node and on its ancestors; ``RM`` also fires
  the watches set exactly on every removed descendant node.  A connection
  only sees events for nodes it may read (or whose parent it may read, or
  whose old permissions let it read).  ``@introduceDomain`` and
  ``@releaseDomain`` fire only through :meth:`Store.fire_special`,
  :meth:`Store.introduce` and :meth:`Store.release`, and only to
  connections that may read the special's permissions.
* Domains: ``INTRODUCE`` fires ``@introduceDomain`` (not for an already
  introduced domain); ``RELEASE`` removes every node the domain owns
  (with its subtree) and fires ``@releaseDomain``.  ``SET_TARGET`` gives a
  domain the rights of its target.
* Quotas for unprivileged domains, with the 4.17 defaults (see
  :class:`Quotas`), including their off-by-one comparisons.

What is not simulated: the tdb database, memory quotas and per-domain
memory accounting, write rate limiting (``wrl``), the outstanding-request
quota, watch-event timeouts, live update, ``--keep-orphans``, shared-memory
rings and event channels, depth-limited watches (not in 4.17.0).

The package is one object, :class:`Store`, split by job (a subpackage
because the pieces are the internals of that one object; the server that
puts it on a socket, :mod:`txlibxl.sim.xenstored` with the wire codec
:mod:`txlibxl.sim.wire`, stays outside):

* :mod:`.store`: :class:`Store`, its state, the operations and the
  in-process API;
* :mod:`.connection`: :class:`StoreConnection`, one client's view;
* :mod:`.paths`: path syntax and canonical names;
* :mod:`.perms`: permission strings and the access checks;
* :mod:`.tree`: the live nodes and the owner index;
* :mod:`.transactions`: node access through transactions, and commit;
* :mod:`.watches`: the watch index, firing and the special watches;
* :mod:`.domains`: introduce, release, set_target;
* :mod:`.errors`, :mod:`.limits`: :class:`XenstoreError`, the wire limits
  and :class:`Quotas`.

Import from here: the names below are the package's interface.  Names
with a leading underscore are private to the package, not to their module
(the mixins share them).
"""
from __future__ import annotations

from .errors import XenstoreError
from .limits import ABS_PATH_MAX, DOMID_SELF, PAYLOAD_MAX, REL_PATH_MAX, Quotas
from .perms import format_perm, parse_perm
from .connection import StoreConnection
from .store import Store
from .watches import SPECIAL_WATCHES

__all__ = [
    "XenstoreError",
    "Quotas",
    "Store",
    "StoreConnection",
    "PAYLOAD_MAX",
    "ABS_PATH_MAX",
    "REL_PATH_MAX",
    "DOMID_SELF",
    "SPECIAL_WATCHES",
]
