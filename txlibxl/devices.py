"""
A running domain's devices on a :class:`~txlibxl.context.Context`
(:class:`DevicesMixin`): disks and NICs added and removed, CD-ROM media
inserted.

A disk is given as xl's disk spec string (``"phy:/dev/vg/data,xvdb,w"``)
or as a ``libxl_device_disk`` mapping, a NIC as a ``libxl_device_nic``
mapping (:mod:`txlibxl.config`); mappings are checked as a domain's
configuration is.  Each operation returns a Deferred
(:mod:`txlibxl.operations`) and is cancellable: the abort stops libxl
where it is (``settled`` fires with ``False``).  libxl undoes neither a
failed nor an aborted add: once it has written the device (to xenstore
and to the domain's stored configuration) and is waiting for the backend,
the device stays there, half attached, and :meth:`~txlibxl.context.Context.remove_disk`
or :meth:`~txlibxl.context.Context.remove_nic` takes it away.  An aborted remove leaves
the device where libxl had got to (the backend may be closing); removing
it again finishes the job.  An aborted CD-ROM insert stops between the
device model's commands: libxl ejects the old medium first, so the drive
may be left empty; inserting again finishes the job.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Union

from . import config as _config
from .operations import OperationsMixin, _Operation

__all__ = ["DevicesMixin"]

Disk = Union[str, Mapping[str, Any]]


class DevicesMixin(OperationsMixin):
    """
    Adding and removing a domain's disks and NICs, and CD-ROM media.
    """

    def _device_json(self, kind: str, device: Any) -> str:
        return _config.device_json(kind, device, self._ctx.json_round_trip, self._ctx.disk_spec_to_json)

    def add_disk(self, domid: int, disk: Disk) -> Any:
        """
        Attach C{disk} to running domain C{domid} (``libxl_device_disk_add``:
        the backend is set up, the hotplug script run, and the guest sees a
        new virtual disk).

        :returns: a Deferred that fires with the disk as libxl attached it
            (a ``libxl_device_disk`` mapping, with what libxl chose filled
            in), or fails with a :class:`~txlibxl.errors.LibxlError`
            (:class:`~txlibxl.errors.InvalidConfiguration` for a disk libxl
            would refuse or ignore parts of).
        """
        self._check_usable()

        def start(op: _Operation) -> None:
            text = self._device_json("device_disk", disk)
            self._ctx.device_disk_add(domid, text, op.op_id)

        return self._operation("libxl_device_disk_add", domid, start, result=json.loads)

    def remove_disk(self, domid: int, vdev: str) -> Any:
        """
        Detach the disk C{vdev} (``"xvdb"``) from domain C{domid}
        (``libxl_device_disk_remove``: the guest is asked to let it go,
        then the backend is torn down and the hotplug script run).

        :returns: a Deferred that fires with ``None`` once the disk is gone.
        """
        self._check_usable()
        return self._operation(
            "libxl_device_disk_remove", domid,
            lambda op: self._ctx.device_disk_remove(domid, vdev, op.op_id),
        )

    def add_nic(self, domid: int, nic: Mapping[str, Any]) -> Any:
        """
        Attach network interface C{nic} (a ``libxl_device_nic`` mapping;
        ``{}`` for one with libxl's defaults) to running domain C{domid}
        (``libxl_device_nic_add``).

        :returns: a Deferred that fires with the NIC as libxl attached it,
            its ``devid`` and ``mac`` chosen if they were not given.
        """
        self._check_usable()

        def start(op: _Operation) -> None:
            text = self._device_json("device_nic", nic)
            self._ctx.device_nic_add(domid, text, op.op_id)

        return self._operation("libxl_device_nic_add", domid, start, result=json.loads)

    def remove_nic(self, domid: int, nic: Union[int, str]) -> Any:
        """
        Detach domain C{domid}'s network interface C{nic}, named by its
        devid (an int) or its MAC (``"00:16:3e:..."``)
        (``libxl_device_nic_remove``).

        :returns: a Deferred that fires with ``None`` once it is gone.
        """
        self._check_usable()
        return self._operation(
            "libxl_device_nic_remove", domid,
            lambda op: self._ctx.device_nic_remove(domid, nic, op.op_id),
        )

    def insert_cdrom(self, domid: int, vdev: str, target: str) -> Any:
        """
        Put the medium C{target} (an image's path; ``""`` for none) into
        the CD-ROM drive C{vdev} of domain C{domid} (``libxl_cdrom_insert``,
        as ``xl cd-insert``): the answer to a
        :class:`~txlibxl.events.DiskEject`.  The drive must exist; libxl
        does this for HVM guests (their device model emulates the drive).

        :returns: a Deferred that fires with ``None`` once the device
            model has the medium.  A :class:`~txlibxl.watches.DiskEjectWatch`
            on the drive keeps reporting ejects.  It fails with a
            :class:`~txlibxl.errors.GeneralFailure` carrying libxl's
            message for a drive that is not a CD-ROM (``Virtual device not
            found``) or an image libxl cannot open; libxl has ejected the
            old medium by then, so the drive is left empty.  Cancelled, it
            fails with :class:`~txlibxl.operations.OperationCancelled`
            and the drive has its old medium or none.  Either way the next
            insert works.  A C{vdev} or C{target} that is not a string, or
            holds a comma (the disk spec libxl parses cannot carry it), is
            the caller's mistake: a ``ValueError``.
        """
        self._check_usable()

        def start(op: _Operation) -> None:
            for what, value in (("vdev", vdev), ("target", target)):
                if not isinstance(value, str) or "," in value:
                    raise ValueError(f"{what} must be a str without commas, not {value!r}")
            spec = f"vdev={vdev},access=r,devtype=cdrom,target={target}"
            self._ctx.cdrom_insert(domid, self._ctx.disk_spec_to_json(spec), op.op_id)

        return self._operation("libxl_cdrom_insert", domid, start)
