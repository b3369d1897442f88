"""
The hypercall server's save and restore ops: what the shim's
``xc_domain_save``, ``xc_domain_restore`` (in ``libxl-save-helper``) and
``xc_domain_resume`` (in libxl) send.  ``_SaveOpsMixin`` is the
``HypercallFactory``'s part that serves them; the model behind them is
``txlibxl.sim.hypervisor.saverestore``, the records they carry are
``txlibxl.sim.savestream``'s.  They are numbered
from 16, apart from the create path's.

Classic op (``REQUEST``):

======  ===========  ===========================  ==============
op      name         arguments                    success reply
======  ===========  ===========================  ==============
16      RESUME       a=domid, b=fast (ignored)    status 0
======  ===========  ===========================  ==============

Extended ops (version 1), little-endian; ``SIM_DOMAIN`` (80 octets) and
``SIM_GUEST`` (40) are the stream's records, ``PAGE0`` the 4096 octets of
the image's marker page:

======  ============  ================================  =========================
op      name          arguments                         success reply
======  ============  ================================  =========================
16      SAVE_BEGIN    ``<II>`` domid, live              ``SIM_DOMAIN``, ``PAGE0``
17      LOGDIRTY      ``<II>`` domid, command: 0 off,   0: nothing; 1, 2:
                      1 clean, 2 final clean            ``<QII>`` dirty pages,
                                                        stride, page 0 dirty,
                                                        then ``PAGE0`` (zeros if
                                                        not dirty)
18      SAVE_END      ``<I>`` domid                     ``SIM_GUEST``, ``PAGE0``
19      RESTORE       ``<IIII>`` domid, store and       ``<QQ>`` xenstore and
                      console event channels, 0;        console ring frames
                      ``SIM_DOMAIN``, ``SIM_GUEST``,
                      ``PAGE0``
======  ============  ================================  =========================

A dirty set (``LOGDIRTY``) is every *stride*-th page of the image from
*stride* on, plus page 0 when its flag is set.  A record that does not
decode, or a marker page that is none, is ``-EINVAL``; a domain not in
log-dirty mode, or not fit for the restore, ``-EINVAL`` too (``-EEXIST``
for a domain that already has memory, ``-ENOMEM`` when the saved memory
does not fit).
"""
from __future__ import annotations

import struct
from typing import Callable, Dict

from .hypervisor import Hypervisor, InvalidOperation
from .savestream.format import PAGE_SIZE, SIM_DOMAIN, SIM_GUEST, SimDomain, SimGuest, StreamError

__all__ = [
    "EXT_LOGDIRTY",
    "EXT_RESTORE",
    "EXT_SAVE_BEGIN",
    "EXT_SAVE_END",
    "LOGDIRTY_CLEAN",
    "LOGDIRTY_FINAL",
    "LOGDIRTY_OFF",
    "OP_RESUME",
]

OP_RESUME = 16
EXT_SAVE_BEGIN = 16
EXT_LOGDIRTY = 17
EXT_SAVE_END = 18
EXT_RESTORE = 19
LOGDIRTY_OFF, LOGDIRTY_CLEAN, LOGDIRTY_FINAL = 0, 1, 2

_REPLY = struct.Struct("<iI")
_OK = _REPLY.pack(0, 0)
_TWO = struct.Struct("<II")
_ONE = struct.Struct("<I")
_RESTORE = struct.Struct("<IIII")
_DIRTY = struct.Struct("<QII")
_FRAMES = struct.Struct("<QQ")
_NO_PAGE = bytes(PAGE_SIZE)


class _WrongSaveSize(InvalidOperation):
    def __init__(self) -> None:
        super().__init__("wrong argument size")


def _reply(payload: bytes) -> bytes:
    return _REPLY.pack(0, len(payload)) + payload


def _args(fmt: struct.Struct, payload: bytes, extra: int = 0) -> tuple:
    if len(payload) != fmt.size + extra:
        raise _WrongSaveSize()
    return fmt.unpack_from(payload)


class _SaveOpsMixin:
    """Save, restore, resume (part of :class:`~txlibxl.sim.hypercalls.HypercallFactory`)."""

    hypervisor: Hypervisor

    def _save_ops(self) -> Dict[int, Callable[[int, int, int], bytes]]:
        return {OP_RESUME: self._resume}

    def _save_extended_ops(self) -> Dict[int, Callable[[bytes], bytes]]:
        return {
            EXT_SAVE_BEGIN: self._save_begin,
            EXT_LOGDIRTY: self._logdirty,
            EXT_SAVE_END: self._save_end,
            EXT_RESTORE: self._restore,
        }

    def _resume(self, domid: int, _fast: int, _c: int) -> bytes:
        self.hypervisor.resume(domid)
        return _OK

    def _save_begin(self, payload: bytes) -> bytes:
        domid, live = _args(_TWO, payload)
        described, page0 = self.hypervisor.save_begin(domid, bool(live))
        return _reply(described.encode() + page0)

    def _logdirty(self, payload: bytes) -> bytes:
        domid, command = _args(_TWO, payload)
        if command == LOGDIRTY_OFF:
            self.hypervisor.logdirty_off(domid)
            return _OK
        if command not in (LOGDIRTY_CLEAN, LOGDIRTY_FINAL):
            raise InvalidOperation("log-dirty command %d" % command)
        count, stride, page0 = self.hypervisor.logdirty_clean(domid, final=command == LOGDIRTY_FINAL)
        return _reply(_DIRTY.pack(count, stride, page0 is not None) + (page0 or _NO_PAGE))

    def _save_end(self, payload: bytes) -> bytes:
        (domid,) = _args(_ONE, payload)
        guest, page0 = self.hypervisor.save_end(domid)
        return _reply(guest.encode() + page0)

    def _restore(self, payload: bytes) -> bytes:
        domid, store_evtchn, console_evtchn, _ = _args(
            _RESTORE, payload, SIM_DOMAIN.size + SIM_GUEST.size + PAGE_SIZE)
        at = _RESTORE.size
        try:
            saved = SimDomain.decode(payload[at:at + SIM_DOMAIN.size])
            at += SIM_DOMAIN.size
            guest = SimGuest.decode(payload[at:at + SIM_GUEST.size])
        except StreamError as e:
            raise InvalidOperation(str(e)) from None
        page0 = payload[at + SIM_GUEST.size:]
        frames = self.hypervisor.restore(domid, saved, guest, page0, store_evtchn, console_evtchn)
        return _reply(_FRAMES.pack(*frames))
