"""
The device model process libxl spawns for an HVM guest on the simulated
host (``python -m txlibxl.sim.devicemodel ARGS``, through the launcher
:mod:`txlibxl.sim.host_root` writes at QEMU's path).

It does what QEMU does that libxl can see:

* it takes libxl's command line (:mod:`.cmdline`) and serves QMP on the
  ``-chardev socket,...,server=on`` of each ``-mon mode=control`` (the
  compiled-in path under the host's root, or the socket libxl passed);
* once it listens it writes ``/local/domain/0/device-model/<domid>/state``
  = ``running`` (what libxl's spawn waits for), unless started with ``-S``,
  when it does so on ``cont``;
* when the guest ejects a CD, the drive's tray opens, the drive is empty
  (as ``query-block`` then says) and it writes ``eject`` into the disk
  frontend's ``eject`` node, which libxl watches.  There is no guest to
  eject through the emulated drive: the host's ``eject`` op writes
  :data:`~txlibxl.sim.host_root.GUEST_EJECT` in its place, which the stand-in
  takes (and removes);
* it exits on ``SIGHUP`` (how libxl's destroy stops it), ``SIGTERM``,
  ``SIGINT`` and ``quit``; when its domain is gone or dying (it checks the
  hypervisor on each ``@releaseDomain``), removing what it wrote; and when
  its xenstore connection ends (the host is gone): no stand-in outlives
  its domain or its host.

The host's fault switch (:data:`~txlibxl.sim.host_root.DM_FAULTS`, set by
the ``fault`` control op) is read once at start: ``device_model_hang``
never writes ``running`` and never answers QMP (libxl's spawn times out),
``device_model_mute`` writes it but never answers (libxl's first QMP
command times out).

Environment (libxl's, inherited): ``XENSTORED_PATH``,
``TXLIBXL_SIM_HYPERCALL``, ``TXLIBXL_SIM_ROOT``.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from typing import Any, List, Optional, Sequence

from .. import host_root
from ..host_root import GUEST_EJECT
from .cmdline import CommandLine, UsageError, parse
from .model import DeviceModel
from .qmp import QmpSession
from .server import QmpFactory, QmpListener
from .xs_client import XenstoreClient, connect

__all__ = ["HANG", "MUTE", "StandIn", "domain_alive", "main"]

HANG, MUTE = "device_model_hang", "device_model_mute"

#: GETINFOLIST of the hypercall protocol (:mod:`txlibxl.sim.hypercalls`).
_GETINFOLIST = struct.Struct("<IIII")
_REPLY = struct.Struct("<iI")
_ROW_HEAD = struct.Struct("<II")
_ROW_SIZE = 72
_DOMINF_DYING = 1


def _say(text: str) -> None:
    sys.stderr.write("txlibxl device model: %s\n" % text)
    sys.stderr.flush()


def domain_alive(hypercall_socket: str, domid: int, timeout: float = 2.0) -> Optional[bool]:
    """Whether C{domid} exists and is not dying; C{None} if the
    hypervisor cannot be asked."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(hypercall_socket)
            sock.sendall(_GETINFOLIST.pack(1, domid, 1, 0))
            head = sock.recv(_REPLY.size, socket.MSG_WAITALL)
            status, length = _REPLY.unpack(head)
            if status < 0:
                return None
            row = sock.recv(length, socket.MSG_WAITALL) if length else b""
    except (OSError, struct.error):
        return None
    if status == 0 or len(row) < _ROW_SIZE:
        return False
    found, flags = _ROW_HEAD.unpack_from(row)
    return found == domid and not flags & _DOMINF_DYING


def read_fault(root: Optional[str]) -> Optional[str]:
    if not root:
        return None
    try:
        with open(os.path.join(root, host_root.DM_FAULTS)) as f:
            kind = json.load(f).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if kind in (HANG, MUTE) else None


class StandIn:
    """One device model: its machine, its QMP listeners, its xenstore."""

    def __init__(self, reactor: Any, cmdline: CommandLine, root: Optional[str],
                 hypercall: Optional[str], fault: Optional[str] = None) -> None:
        self.reactor = reactor
        self.cmdline = cmdline
        self.domid = cmdline.domid
        self.root = root
        self.hypercall = hypercall
        self.fault = fault
        self.model = DeviceModel.from_command_line(cmdline, pty=lambda label: "/dev/pts/simdm%d" % cmdline.domid)
        self.listeners: List[QmpListener] = []
        self.xs: Optional[XenstoreClient] = None
        self.state_path = "/local/domain/0/device-model/%d/state" % self.domid
        self.guest_eject = GUEST_EJECT.rsplit("/", 1)[0] % self.domid
        self.exit_status = 0
        self.stopping = False
        self._domain_gone = False

    def host_path(self, path: str) -> str:
        return host_root.host_path(self.root, path) if self.root else path

    def session(self, send: Any, close: Any) -> QmpSession:
        return QmpSession(self.model, send, close, silent=self.fault is not None,
                          quit=lambda: self.stop("quit"), host_path=self.host_path)

    async def start(self, xenstored: str) -> None:
        self._load_incoming()
        self.xs = await connect(self.reactor, xenstored)
        self.xs.lost.addCallback(lambda _: self.stop("xenstore connection lost"))
        factory = QmpFactory(self.session)
        for monitor in self.cmdline.monitors:
            chardev = self.cmdline.chardev(monitor)
            if chardev.fd is not None:
                self.listeners.append(QmpListener.adopt(self.reactor, chardev.fd, factory))
            elif chardev.backend == "socket" and chardev.server and chardev.path:
                self.listeners.append(QmpListener.bind(self.reactor, self.host_path(chardev.path), factory))
        self.model.subscribe(self._machine_event)
        await self.xs.watch("@releaseDomain", "txsim-dm-release", self._released)
        if self.fault != HANG:
            await self.xs.watch(self.guest_eject, "txsim-dm-eject", self._guest_eject)
        if self.fault != HANG and self.model.status == "running":
            await self.xs.write(self.state_path, b"running")
        _say("domain %d: serving QMP on %s%s" % (
            self.domid, ", ".join(l.path or "a passed socket" for l in self.listeners),
            " (fault: %s)" % self.fault if self.fault else ""))

    def _load_incoming(self) -> None:
        """``-incoming fd:N``: the saved state is read (and the media it
        names kept)."""
        incoming = self.cmdline.incoming
        if not incoming or not incoming.startswith("fd:"):
            return
        try:
            with os.fdopen(int(incoming[3:]), "rb") as f:
                data = f.read()
        except (OSError, ValueError) as e:
            _say("cannot read the incoming state %s: %s" % (incoming, e))
            return
        try:
            saved = json.loads(data.split(b"\n", 1)[0][8:])
            for entry in saved.get("blocks", []):
                block = self.model.blocks.get(entry.get("device"))
                if block is not None and block.removable:
                    block.medium, block.tray_open = entry.get("medium"), bool(entry.get("tray_open"))
        except (ValueError, AttributeError):
            pass

    def _machine_event(self, event: str, data: Any) -> None:
        if event == "RESUME" and self.xs is not None and self.fault != HANG:
            self.xs.write(self.state_path, b"running").addErrback(lambda f: None)

    def _guest_eject(self, path: str) -> None:
        """The host says the guest ejected the CD of a drive: take the
        request, empty the drive, tell libxl (the frontend's eject node)."""
        devid = path[len(self.guest_eject) + 1:]
        xs = self.xs
        if xs is None or not devid.isdigit():
            return

        def taken(_: Any) -> Any:
            block = self.model.blocks.get("ide-" + devid)
            if block is None or not block.removable:
                return None
            self.model.guest_ejected(block)
            return xs.write("/local/domain/%d/device/vbd/%s/eject" % (self.domid, devid), b"eject")

        # Only the request that is there is taken (its removal fires too).
        d = xs.read(path).addCallback(lambda _: xs.rm(path)).addCallback(taken)
        d.addErrback(lambda f: None)

    def _released(self, _path: str) -> None:
        if self.hypercall and domain_alive(self.hypercall, self.domid) is False:
            self._domain_gone = True
            self.stop("domain %d is gone" % self.domid)

    def stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        _say("domain %d: stopping (%s)" % (self.domid, why))
        for listener in self.listeners:
            listener.close()
        self.model.close()
        if self._domain_gone and self.xs is not None and self.xs.connected_:
            # Nobody else will: libxl removes it only when it kills us.
            d = self.xs.rm("/local/domain/0/device-model/%d" % self.domid)
            d.addBoth(lambda _: self._finish())
        else:
            self.reactor.callLater(0, self._finish)

    def _finish(self) -> None:
        if self.xs is not None:
            self.xs.disconnect()
        if self.reactor.running:
            self.reactor.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cmdline = parse(args)
    except UsageError as e:
        sys.stderr.write("qemu-system-i386: %s\n" % e)
        return 1
    root = os.environ.get("TXLIBXL_SIM_ROOT") or None
    xenstored = os.environ.get("XENSTORED_PATH") or os.path.join(
        os.environ.get("XENSTORED_RUNDIR", "/var/run/xenstored"), "socket")
    from twisted.internet import reactor

    standin = StandIn(reactor, cmdline, root, os.environ.get("TXLIBXL_SIM_HYPERCALL"), read_fault(root))

    def on_signal(signum: int, frame: Any) -> None:
        reactor.callFromThread(standin.stop, "signal %d" % signum)

    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)

    def started(failure: Any) -> None:
        if standin.stopping:
            return  # it was told to stop while starting
        if standin.xs is not None and not standin.xs.connected_:
            # The host went away mid-start: the request that failed is
            # the lost connection's, which ends the stand-in as it would
            # once started (whichever of the two is delivered first).
            standin.stop("xenstore connection lost")
            return
        _say("domain %d: cannot start: %s" % (cmdline.domid, failure.getErrorMessage() or failure.type.__name__))
        standin.exit_status = 1
        standin.stop("start-up failed")

    from twisted.internet import defer

    reactor.callWhenRunning(lambda: defer.ensureDeferred(standin.start(xenstored)).addErrback(started))
    reactor.run(installSignalHandlers=False)
    return standin.exit_status
