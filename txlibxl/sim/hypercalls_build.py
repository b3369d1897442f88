"""
The hypercall server's domain-building ops: what a toolstack's create path
sends (``xc_domain_create``, ``xc_domain_max_vcpus``,
``xc_domain_setmaxmem``, ``xc_evtchn_alloc_unbound``, ``xc_hvm_param_set``)
and what the shim's domain builder sends for it (population, the grant
table seed).  The wire formats are in :mod:`txlibxl.sim.hypercalls`;
:class:`_BuildOpsMixin` is the :class:`~txlibxl.sim.hypercalls.HypercallFactory`'s
part that serves them.
"""
from __future__ import annotations

import errno
import struct
from typing import Any, Callable, Dict, Optional

from .hypervisor import Domain, Hypervisor

__all__ = [
    "CREATE",
    "EXT_CREATEDOMAIN",
    "EXT_GNTTAB_SEED",
    "EXT_HVM_PARAM_SET",
    "EXT_POPULATE",
    "EXT_SETMAXMEM",
    "OP_EVTCHN_ALLOC_UNBOUND",
    "OP_MAX_VCPUS",
]

OP_MAX_VCPUS = 9
OP_EVTCHN_ALLOC_UNBOUND = 10

#: Extended ops, without the high bit (``hypercalls.EXTENDED``).
EXT_CREATEDOMAIN = 1
EXT_SETMAXMEM = 2
EXT_POPULATE = 3
EXT_GNTTAB_SEED = 4
EXT_HVM_PARAM_SET = 5

CREATE = struct.Struct("<II16sIIIII")
_DOMID_U64 = struct.Struct("<IQ")
_SEED = struct.Struct("<IQQ")
_PARAM = struct.Struct("<IIQ")
_REPLY = struct.Struct("<iI")
_U64 = struct.Struct("<Q")
_OK = _REPLY.pack(0, 0)


class _WrongSize(Exception):
    """The arguments of an extended request have the wrong size."""


def _unpack(fmt: struct.Struct, payload: bytes) -> tuple:
    if len(payload) != fmt.size:
        raise _WrongSize()
    return fmt.unpack(payload)


class _BuildOpsMixin:
    """Domain-building ops (part of :class:`~txlibxl.sim.hypercalls.HypercallFactory`)."""

    hypervisor: Hypervisor
    on_created: Optional[Callable[[Domain], Any]]

    def _build_ops(self) -> Dict[int, Callable[[int, int, int], bytes]]:
        return {
            OP_MAX_VCPUS: self._max_vcpus,
            OP_EVTCHN_ALLOC_UNBOUND: self._evtchn_alloc_unbound,
        }

    def _extended_ops(self) -> Dict[int, Callable[[bytes], bytes]]:
        return {
            EXT_CREATEDOMAIN: self._createdomain,
            EXT_SETMAXMEM: self._setmaxmem,
            EXT_POPULATE: self._populate,
            EXT_GNTTAB_SEED: self._gnttab_seed,
            EXT_HVM_PARAM_SET: self._hvm_param_set,
        }

    # -- classic ----------------------------------------------------------

    def _max_vcpus(self, domid: int, count: int, _c: int) -> bytes:
        self.hypervisor.max_vcpus(domid, count)
        return _OK

    def _evtchn_alloc_unbound(self, domid: int, remote: int, _c: int) -> bytes:
        port = self.hypervisor.evtchn_alloc_unbound(domid, remote)
        return _REPLY.pack(port, 0)

    # -- extended ---------------------------------------------------------

    def _createdomain(self, payload: bytes) -> bytes:
        domid, flags, handle, max_vcpus, emulation, ssidref, cpupool, _ = _unpack(CREATE, payload)
        domain = self.hypervisor.createdomain(
            domid, flags, handle, max_vcpus, emulation_flags=emulation, ssidref=ssidref, cpupool=cpupool
        )
        if self.on_created is not None:
            self.on_created(domain)
        return _REPLY.pack(domain.domid, 0)

    def _setmaxmem(self, payload: bytes) -> bytes:
        domid, max_kb = _unpack(_DOMID_U64, payload)
        self.hypervisor.set_max_memory(domid, max_kb)
        return _OK

    def _populate(self, payload: bytes) -> bytes:
        domid, pages = _unpack(_DOMID_U64, payload)
        base = self.hypervisor.populate(domid, pages)
        return _REPLY.pack(0, _U64.size) + _U64.pack(base)

    def _gnttab_seed(self, payload: bytes) -> bytes:
        domid, console, xenstore = _unpack(_SEED, payload)
        self.hypervisor.seed_grant_table(domid, console, xenstore)
        return _OK

    def _hvm_param_set(self, payload: bytes) -> bytes:
        domid, index, value = _unpack(_PARAM, payload)
        self.hypervisor.set_hvm_param(domid, index, value)
        return _OK


def wrong_size_error() -> bytes:
    """The reply to an extended request whose arguments have the wrong size."""
    return _REPLY.pack(-errno.EINVAL, 0)
