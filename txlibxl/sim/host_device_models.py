"""
The device models of the HVM domains the simulator makes itself
(``create_domain`` with ``type: "hvm"``).

libxl talks QMP to an HVM guest's device model whatever made the domain:
``libxl_domain_unpause`` sends ``cont``, ``libxl_cdrom_insert`` its CD
commands, to ``/var/run/xen/qmp-libxl-<domid>`` (the shim sends that path
under the host's root).  For a domain libxl builds, that is the stand-in
process libxl spawns (:mod:`txlibxl.sim.devicemodel.standin`).  For one
the simulator makes, :class:`HostDeviceModels` plays it inside the host,
with the same machine model and QMP sessions
(:mod:`txlibxl.sim.devicemodel`), so no process is started per domain:

* the machine has the domain's CD-ROMs (drive and device ``ide-<devid>``,
  as libxl names them) and its first four other disks as IDE disks;
* its QMP socket is where libxl connects, and ``/local/domain/0/
  device-model/<domid>/state`` says ``running``, as QEMU writes it;
* when the guest ejects a CD (the ``eject`` control op), the drive's tray
  opens and it is empty (:meth:`HostDeviceModels.guest_ejected`);
* it goes, with its socket and its xenstore node, when the domain is
  destroyed (:meth:`HostDeviceModels.forget`, called by the host).

libxl's destroy leaves these alone: the domain has no
``image/device-model-pid`` (the device model is the host, no process to
kill).  The device model faults (:meth:`HostDeviceModels.set_fault`) are
kept here for the host's sessions and the stand-ins alike.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from twisted.logger import Logger

from .devicemodel.model import BlockDevice, DeviceModel
from .devicemodel.qmp import QmpSession
from .devicemodel.server import QmpFactory, QmpListener
from .host_root import DM_FAULTS, host_path

__all__ = ["HostDeviceModels", "QMP_SOCKET"]

log = Logger()

#: libxl's QMP socket of a domain (``libxl__qemu_qmp_path``).
QMP_SOCKET = "/var/run/xen/qmp-libxl-%d"


class _Played:
    """One domain's device model, played by the host."""

    def __init__(self, domid: int, model: DeviceModel) -> None:
        self.domid = domid
        self.model = model
        self.listener: Optional[QmpListener] = None


class HostDeviceModels:
    """
    @param store: the host's Store (QEMU's xenstore writes are dom0's).
    @param reactor: to listen on the sockets.
    @param root: the host's root; without one no socket is made (the
        models and their xenstore nodes still are).
    """

    def __init__(self, store: Any, reactor: Any, root: Optional[str]) -> None:
        self._store = store
        self._reactor = reactor
        self._root = root
        self._played: Dict[int, _Played] = {}
        #: The device model fault in force (new sessions obey it).
        self.fault: Optional[str] = None

    def __contains__(self, domid: int) -> bool:
        return domid in self._played

    def model(self, domid: int) -> DeviceModel:
        return self._played[domid].model

    def start(self, record: Any, spec: Any) -> None:
        """Play the device model of the HVM domain C{record} made from C{spec}."""
        self.forget(record.domid)
        model = DeviceModel(record.domid, record.name, vcpus=spec.vcpus)
        disks = {d.devid: d for d in spec.disks}
        hard = 0
        for device in record.devices:
            if device.kind != "vbd":
                continue
            disk = disks[device.devid]
            if device.cdrom:
                drive = "ide-%d" % device.devid
                medium = None if disk.format == "empty" else disk.target
                model.add_block(BlockDevice(drive, drive, removable=True, readonly=True,
                                            medium=medium, format=disk.format if medium else "raw"))
            elif hard < 4:
                model.add_block(BlockDevice("ide%d-hd%d" % (hard // 2, hard % 2), None, removable=False,
                                            readonly=False, medium=disk.target, format=disk.format))
                hard += 1
        played = self._played[record.domid] = _Played(record.domid, model)
        self._listen(played)
        self._store.write("/local/domain/0/device-model/%d/state" % record.domid, b"running")

    def _listen(self, played: _Played) -> None:
        if self._root is None:
            return
        path = host_path(self._root, QMP_SOCKET % played.domid)

        def session(send: Any, close: Any) -> QmpSession:
            return QmpSession(played.model, send, close, silent=self.fault is not None,
                              quit=lambda: self._quit(played),
                              host_path=lambda p: host_path(self._root, p) if self._root else p)

        try:
            played.listener = QmpListener.bind(self._reactor, path, QmpFactory(session))
        except OSError as e:
            log.error("no QMP socket for domain {domid} at {path}: {why}", domid=played.domid, path=path,
                      why=e.strerror or str(e))

    def guest_ejected(self, domid: int, devid: int) -> None:
        """The guest of C{domid} ejected the CD of drive C{devid}."""
        played = self._played.get(domid)
        block = played.model.blocks.get("ide-%d" % devid) if played is not None else None
        if block is not None:
            played.model.guest_ejected(block)

    def _quit(self, played: _Played) -> None:
        """``quit``: the device model is gone; the domain stays."""
        if played.listener is not None:
            played.listener.close()
            played.listener = None

    def forget(self, domid: int) -> None:
        """The domain is gone: so is its device model, socket and node."""
        played = self._played.pop(domid, None)
        if played is None:
            return
        if played.listener is not None:
            played.listener.close()
        played.model.close()
        node = "/local/domain/0/device-model/%d" % domid
        if self._store.exists(node):
            self._store.rm(node)

    def set_fault(self, kind: Optional[str]) -> None:
        """
        From now on device models never answer QMP (C{kind}
        ``device_model_mute``), nor say in xenstore that they run
        (``device_model_hang``; the host's own always do: libxl does not
        wait for them); C{None} lifts it.  The host's sessions obey it at
        once, the stand-ins libxl spawns read it from the host's root
        (:data:`~txlibxl.sim.host_root.DM_FAULTS`) when they start.
        """
        self.fault = kind
        if self._root is None:
            return
        path = os.path.join(self._root, DM_FAULTS)
        if kind is None:
            if os.path.exists(path):
                os.unlink(path)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump({"kind": kind}, f)
        os.replace(path + ".tmp", path)

    def stop_all(self) -> None:
        for domid in list(self._played):
            self.forget(domid)

