"""
libxl's synchronous queries: :class:`QueriesMixin`, the part of
:class:`~txlibxl._libxl.binding.Ctx` that lists domains and reads their
information, names and disks.  ``libxl_dominfo`` and
``libxl_device_disk`` are disposed after being copied into Python values
(:mod:`.values`).

:func:`uuid_of` and :func:`name_or_none` are the same queries for the
other parts, on a ``libxl_ctx *`` the caller has entered already.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .. import errors
from . import native
from .checks import check_domid, check_text
from .ctx_base import CtxBase
from .values import DomainInfoRaw, read_disk, read_dominfo, uuid_text

__all__ = ["QueriesMixin", "uuid_of", "name_or_none"]

_ffi: Any = None
_lib: Any = None


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


def uuid_of(ctx: Any, domid: int) -> Optional[str]:
    """
    The UUID of C{domid} (on the ``libxl_ctx *`` C{ctx}), or None if there
    is no such domain.
    """
    info = _ffi.new("libxl_dominfo *")
    _lib.libxl_dominfo_init(info)
    try:
        if _lib.libxl_domain_info(ctx, info, domid):
            return None
        return uuid_text(info.uuid)
    finally:
        _lib.libxl_dominfo_dispose(info)


def name_or_none(ctx: Any, domid: int) -> Optional[str]:
    """
    The name of C{domid} in xenstore, or None (no such domain, or no name).
    """
    pointer = _lib.libxl_domid_to_name(ctx, domid)
    if pointer == _ffi.NULL:
        return None
    try:
        return _ffi.string(pointer).decode("utf-8", "replace")
    finally:
        _lib.free(pointer)


class QueriesMixin(CtxBase):
    """
    The synchronous queries of a :class:`~txlibxl._libxl.binding.Ctx`.
    """

    def list_domains(self, names: bool = True) -> List[DomainInfoRaw]:
        """
        ``libxl_list_domain``: every domain, by domid, with its name (one
        xenstore read per domain; C{names=False} leaves them ``None``).
        """
        call = "libxl_list_domain"
        ctx = self._enter(call)
        count = _ffi.new("int *")
        infos = _lib.libxl_list_domain(ctx, count)
        if infos == _ffi.NULL:
            raise errors.from_code(errors.ERROR_FAIL, call, "libxl could not list the domains")
        try:
            return [
                read_dominfo(
                    infos[i], name_or_none(ctx, infos[i].domid) if names else None
                )
                for i in range(count[0])
            ]
        finally:
            _lib.libxl_dominfo_list_free(infos, count[0])

    def domain_info(self, domid: int, name: bool = True) -> DomainInfoRaw:
        """
        ``libxl_domain_info`` of C{domid}, with its name (one xenstore
        read; C{name=False} leaves it ``None`` and makes only the
        hypercall).

        :raises txlibxl.errors.DomainNotFound: there is no such domain.
        """
        call = "libxl_domain_info"
        check_domid(call, domid)
        ctx = self._enter(call)
        info = _ffi.new("libxl_dominfo *")
        _lib.libxl_dominfo_init(info)
        try:
            rc = _lib.libxl_domain_info(ctx, info, domid)
            if rc:
                raise errors.from_code(rc, call)
            return read_dominfo(info[0], name_or_none(ctx, domid) if name else None)
        finally:
            _lib.libxl_dominfo_dispose(info)

    def domid_to_name(self, domid: int) -> str:
        """
        ``libxl_domid_to_name``.

        :raises txlibxl.errors.DomainNotFound: no domain C{domid}, or it
            has no name in xenstore.
        """
        call = "libxl_domid_to_name"
        check_domid(call, domid)
        name = name_or_none(self._enter(call), domid)
        if name is None:
            raise errors.from_code(
                errors.ERROR_DOMAIN_NOTFOUND, call, f"domain {domid} has no name (no such domain?)"
            )
        return name

    def name_to_domid(self, name: str) -> int:
        """
        ``libxl_name_to_domid``.

        :raises txlibxl.errors.InvalidArgument: no domain is called
            C{name} (libxl's code for that is ``ERROR_INVAL``).
        """
        call = "libxl_name_to_domid"
        encoded = check_text(call, "name", name)
        ctx = self._enter(call)
        out = _ffi.new("uint32_t *")
        rc = _lib.libxl_name_to_domid(ctx, encoded, out)
        if rc == errors.ERROR_INVAL:
            raise errors.from_code(rc, call, f"no domain is called {name!r}")
        if rc:
            raise errors.from_code(rc, call)
        return int(out[0])

    def vdev_to_device_disk(self, domid: int, vdev: str) -> Dict[str, Any]:
        """
        ``libxl_vdev_to_device_disk``: the configuration of disk C{vdev} of
        C{domid}, as libxl stored it (the keys of :class:`RawEvent`'s
        ``disk``).  Useful to check that a disk exists before watching it:
        ``libxl_evenable_disk_eject`` does not check.

        :raises txlibxl.errors.LibxlError: no such disk (libxl's code, e.g.
            ``ERROR_FAIL``), or C{vdev} is not a disk name (``ERROR_INVAL``).
        """
        call = "libxl_vdev_to_device_disk"
        check_domid(call, domid)
        encoded = check_text(call, "vdev", vdev)
        ctx = self._enter(call)
        disk = _ffi.new("libxl_device_disk *")
        _lib.libxl_device_disk_init(disk)
        try:
            rc = _lib.libxl_vdev_to_device_disk(ctx, domid, encoded, disk)
            if rc:
                raise errors.from_code(rc, call, f"domain {domid} has no disk {vdev!r}")
            fields = _ffi.new("struct txl_disk_fields *")
            _lib.txl_disk_read(disk, fields)
            return read_disk(fields)
        finally:
            _lib.libxl_device_disk_dispose(disk)
