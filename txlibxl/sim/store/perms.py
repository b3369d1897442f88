"""
Permissions: their string form, and who may do what to a node.

The first entry of a node's permissions names its owner and the access of
everybody else; later entries grant ``r``/``w``/``b``/``n`` to single
domains.  Domain 0 is privileged and the owner gets everything, as does a
domain acting for its target (``SET_TARGET``).  Entries naming a domain
that did not exist when the node was last written are ignored (the domain
"generation" rule), so a reused domid does not inherit old grants.  Error
numbers for missing or forbidden nodes depend on the parent's permissions
exactly as in C xenstored's ``get_node``/``errno_from_parents``.

:func:`parse_perm` and :func:`format_perm` convert the wire strings;
:class:`_PermissionsMixin` is the Store's part that checks access.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from .errors import XenstoreError
from .limits import DOMID_FIRST_RESERVED, Quotas
from .paths import _parent_of

if TYPE_CHECKING:
    from .transactions import _Transaction
    from .tree import _Node

__all__ = ["PERM_NONE", "PERM_READ", "PERM_WRITE", "PERM_OWNER", "parse_perm", "format_perm"]

PERM_NONE = 0x00
PERM_READ = 0x01
PERM_WRITE = 0x02
PERM_OWNER = 0x08
_ALL = PERM_READ | PERM_WRITE | PERM_OWNER

_LETTER_BITS = {"n": PERM_NONE, "r": PERM_READ, "w": PERM_WRITE, "b": PERM_READ | PERM_WRITE}
_BITS_LETTER = {bits: letter for letter, bits in _LETTER_BITS.items()}

_STRTOL = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")


# A permission entry: (access bits, domid, ignored).  "ignored" is
# XS_PERM_IGNORE, set when the entry named a domain that did not exist.
_Perm = Tuple[int, int, bool]
_Perms = Tuple[_Perm, ...]


@dataclass
class _Caller:
    domid: int
    privileged: bool
    target: Optional[int] = None


@dataclass
class _Domain:
    # What the store knows of a domain: the generation at which it was first
    # seen (its permission entries count only on nodes written since) and
    # whether it was introduced.
    domid: int
    generation: int
    introduced: bool = False


def parse_perm(text: str) -> Tuple[int, int]:
    """
    Parse one permission string (``n0``, ``r5``, ``w7``, ``b3``) as
    ``xs_strings_to_perms`` does (the domid is read with ``strtol(.., 0)``,
    so ``r0x5`` and ``r05`` are accepted).

    @return: (access bits, domid)
    @raise XenstoreError: C{EINVAL} for anything else.
    """
    if not text or text[0] not in _LETTER_BITS:
        raise XenstoreError("EINVAL", f"bad permission {text!r}")
    match = _STRTOL.match(text[1:])
    if match is None:
        raise XenstoreError("EINVAL", f"bad permission {text!r}")
    value = int(match.group(2), 16) if match.group(2)[:2] in ("0x", "0X") else (
        int(match.group(2), 8) if match.group(2).startswith("0") else int(match.group(2)))
    if match.group(1) == "-":
        value = -value
    value = max(-(1 << 63), min(value, (1 << 63) - 1))
    return _LETTER_BITS[text[0]], value & 0xFFFFFFFF


def format_perm(perm: _Perm) -> str:
    bits, domid, _ignored = perm
    # xs_perm_to_string prints the id with "%i".
    signed = domid - (1 << 32) if domid >= 1 << 31 else domid
    return f"{_BITS_LETTER[bits]}{signed}"


class _PermissionsMixin:
    """The Store's access checks (part of :class:`~txlibxl.sim.store.Store`)."""

    quotas: Quotas
    _domain_exists: Callable[[int], bool]
    _domains: Dict[int, _Domain]
    _targets: Dict[int, int]
    _generation: int

    def _caller(self, domid: int) -> _Caller:
        return _Caller(domid, domid == 0, self._targets.get(domid))

    def _honoured(self, domid: int, generation: int) -> bool:
        domain = self._domains.get(domid)
        return domain is not None and domain.generation <= generation

    def _perm_for(self, caller: _Caller, perms: _Perms, generation: Optional[int]) -> int:
        """C{perm_for_conn}, with C{domain_adjust_node_perms} applied."""
        owner = perms[0][1]
        if caller.privileged or owner == caller.domid or (
                caller.target is not None and owner == caller.target):
            return _ALL
        for bits, domid, ignored in perms[1:]:
            if ignored or (generation is not None and not self._honoured(domid, generation)):
                continue
            if domid == caller.domid or (caller.target is not None and domid == caller.target):
                return bits
        return perms[0][0]

    def _node_perm(self, caller: _Caller, node: _Node) -> int:
        return self._perm_for(caller, node.perms, node.generation)

    def _get_node(self, caller: _Caller, tx: Optional[_Transaction], name: str, perm: int) -> _Node:
        """C{get_node}: the node if the caller has C{perm} on it."""
        if not self._valid_name(name):
            raise XenstoreError("EINVAL", f"bad path {name!r}")
        node = self._read_node(caller, tx, name)
        if node is not None:
            if self._node_perm(caller, node) & perm == perm:
                return node
            errno_name = "EACCES"
        else:
            errno_name = "ENOENT"
        # errno_from_parents: say nothing about a node whose parent the
        # caller may not see.
        parent_perm = self._ask_parents(caller, tx, name)
        if parent_perm & perm:
            raise XenstoreError(errno_name, name)
        raise XenstoreError("EACCES", name)

    def _ask_parents(self, caller: _Caller, tx: Optional[_Transaction], name: str) -> int:
        while True:
            name = _parent_of(name)
            node = self._read_node(caller, tx, name)
            if node is not None:
                return self._node_perm(caller, node)
            if name == "/":
                return PERM_NONE

    def _parse_perms(self, caller: _Caller, perms: List[str]) -> _Perms:
        if not perms:
            raise XenstoreError("EINVAL", "no permissions")
        if not caller.privileged and len(perms) > self.quotas.perms_per_node:
            raise XenstoreError("ENOSPC", "too many permissions")
        parsed = []
        for text in perms:
            bits, domid = parse_perm(text)
            parsed.append((bits, domid))
        result = []
        for bits, domid in parsed:
            # domain_alloc_permrefs
            ignored = False
            if domid not in self._domains:
                if domid < DOMID_FIRST_RESERVED and self._domain_exists(domid):
                    self._domains[domid] = _Domain(domid, self._generation)
                else:
                    ignored = True
            result.append((bits, domid, ignored))
        if result[0][2]:
            raise XenstoreError("ENOENT", f"owner domain {result[0][1]} does not exist")
        return tuple(result)
