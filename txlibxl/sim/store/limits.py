"""
The numbers the simulated xenstored lives by: the wire protocol's limits,
the reserved domids, and the :class:`Quotas` of unprivileged domains.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "PAYLOAD_MAX",
    "ABS_PATH_MAX",
    "REL_PATH_MAX",
    "DOMID_SELF",
    "DOMID_FIRST_RESERVED",
    "Quotas",
]

#: Limits from ``xen/io/xs_wire.h``.
PAYLOAD_MAX = 4096
ABS_PATH_MAX = 3072
REL_PATH_MAX = 2048

#: ``DOMID_SELF`` and the first reserved domid, from ``xen/xen.h``.
DOMID_SELF = 0x7FF0
DOMID_FIRST_RESERVED = 0x7FF0


@dataclass(frozen=True)
class Quotas:
    """
    Limits that apply to unprivileged domains, with the defaults of
    xenstored 4.17 (``-E``, ``-W``, ``-t``, ``-S``, ``-A``, ``-M`` and the
    transaction-node quota).  Domain 0 is never limited, as in xenstored.
    """

    nodes_per_domain: int = 1000
    watches_per_domain: int = 128
    transactions_per_domain: int = 10
    node_size: int = 2048
    perms_per_node: int = 5
    transaction_nodes: int = 1024
    path_max: int = REL_PATH_MAX
