"""
A running domain's devices: :class:`DevicesMixin`, the part of
:class:`~txlibxl._libxl.binding.Ctx` that adds and removes disks and
NICs and inserts CD-ROM media, each asynchronously.

A device to add is libxl's JSON for a ``libxl_device_disk`` or
``libxl_device_nic``; the struct libxl works on is kept for the operation
(:class:`~txlibxl._libxl.kept.KeptArguments`), and libxl fills in what it
chose (a NIC's devid and MAC, a disk's backend) before it completes:
:meth:`~txlibxl._libxl.ctx_operations.OperationsMixin.finish_operation`
gives that struct's JSON.  A device to remove is named as ``xl`` names
it (a disk by its vdev, a NIC by its devid or MAC); the binding reads it
back from xenstore first.
"""
from __future__ import annotations

from typing import Any, Union

from .. import errors
from . import native
from .capture import LibxlSays
from .checks import check_c_int, check_domid, check_text, is_int
from .ctx_config import ConfigMixin
from .ctx_operations import OperationsMixin
from .kept import KeptArguments

__all__ = ["DevicesMixin"]

_ffi: Any = None
_lib: Any = None


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


class DevicesMixin(ConfigMixin, OperationsMixin):
    """
    Device changes of a :class:`~txlibxl._libxl.binding.Ctx`.
    """

    def _device_op(self, call: str, kind: str, function: Any, domid: int, text: str, op_id: int) -> None:
        check_domid(call, domid)
        kept = KeptArguments()
        try:
            device = self._from_json(kind, text, kept)
        except BaseException:
            kept.dispose()
            raise
        kept.read_with(lambda: self._to_json(kind, device))
        self._start_ao(call, op_id, lambda ctx, how: function(ctx, domid, device, how), kept)

    def device_disk_add(self, domid: int, disk_json: str, op_id: int) -> None:
        """
        ``libxl_device_disk_add`` of C{disk_json} to C{domid}; the result
        is the disk's JSON as libxl completed it.
        """
        self._device_op(
            "libxl_device_disk_add", "device_disk", _lib.libxl_device_disk_add, domid, disk_json, op_id
        )

    def cdrom_insert(self, domid: int, disk_json: str, op_id: int) -> None:
        """
        ``libxl_cdrom_insert``: the medium C{disk_json} names (its
        ``pdev_path``; none to leave the drive empty) into the CD-ROM
        drive of the same vdev of C{domid}, which must exist.
        """
        self._device_op(
            "libxl_cdrom_insert", "device_disk", _lib.libxl_cdrom_insert, domid, disk_json, op_id
        )

    def device_nic_add(self, domid: int, nic_json: str, op_id: int) -> None:
        """
        ``libxl_device_nic_add`` of C{nic_json} to C{domid}; the result is
        the NIC's JSON as libxl completed it (its devid, its MAC).
        """
        self._device_op(
            "libxl_device_nic_add", "device_nic", _lib.libxl_device_nic_add, domid, nic_json, op_id
        )

    def device_disk_remove(self, domid: int, vdev: str, op_id: int) -> None:
        """
        ``libxl_device_disk_remove`` of C{domid}'s disk C{vdev} (read back
        with ``libxl_vdev_to_device_disk`` first).
        """
        call = "libxl_device_disk_remove"
        check_domid(call, domid)
        encoded = check_text(call, "vdev", vdev)
        ctx = self._enter(call)
        kept = KeptArguments()
        disk = kept.keep(_ffi.new("libxl_device_disk *"), _lib.libxl_device_disk_dispose)
        _lib.libxl_device_disk_init(disk)
        with LibxlSays() as said:
            rc = _lib.libxl_vdev_to_device_disk(ctx, domid, encoded, disk)
        if rc:
            kept.dispose()
            raise errors.from_code(rc, call, said.message(f"domain {domid} has no disk {vdev!r}"))
        self._start_ao(
            call, op_id, lambda ctx, how: _lib.libxl_device_disk_remove(ctx, domid, disk, how), kept
        )

    def device_nic_remove(self, domid: int, nic: Union[int, str], op_id: int) -> None:
        """
        ``libxl_device_nic_remove`` of C{domid}'s NIC C{nic}: its devid (an
        int) or its MAC (``"00:16:3e:..."``), read back with
        ``libxl_devid_to_device_nic`` / ``libxl_mac_to_device_nic`` first.
        """
        call = "libxl_device_nic_remove"
        check_domid(call, domid)
        if is_int(nic):
            check_c_int(call, "devid", nic, 0, 1 << 31)
        else:
            mac = check_text(call, "the NIC (a devid or a MAC)", nic)
        ctx = self._enter(call)
        kept = KeptArguments()
        device = kept.keep(_ffi.new("libxl_device_nic *"), _lib.libxl_device_nic_dispose)
        _lib.libxl_device_nic_init(device)
        with LibxlSays() as said:
            if is_int(nic):
                rc = _lib.libxl_devid_to_device_nic(ctx, domid, nic, device)
            else:
                rc = _lib.libxl_mac_to_device_nic(ctx, domid, mac, device)
        if rc:
            kept.dispose()
            raise errors.from_code(rc, call, said.message(f"domain {domid} has no NIC {nic!r}"))
        self._start_ao(
            call, op_id, lambda ctx, how: _lib.libxl_device_nic_remove(ctx, domid, device, how), kept
        )
