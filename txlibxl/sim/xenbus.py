"""
The xenbus handshake of the devices libxl adds to a domain it builds:
dom0's backend drivers (blkback, netback, the console backend) and the
guest's frontend drivers, played per device by :class:`XenbusDevice` and
found per domain by :class:`BackendDriver`.

The states are those of ``xen/io/xenbus.h``, and each side writes only its
own ``state`` node, in its own name (the backend as dom0, the frontend as
the guest), reacting to the other side's as Linux's drivers do:

* a new backend (``state`` 1, ``online`` 1) goes to InitWait (2): that is
  what ``libxl_device_*_add`` waits for before it runs the hotplug script;
* a frontend whose guest runs answers a backend in InitWait by writing its
  ring reference and event channel and going to Initialised (3);
* the backend connects (4, with what blkback publishes for a disk) once
  the frontend is Initialised *and* the hotplug script has done its part:
  blkback waits for ``physical-device``, netback for ``hotplug-status`` =
  ``connected``.  Until then it stays in InitWait, which is why libxl can
  wait for exactly that state even on a running guest; the frontend then
  connects (4) in turn;
* on teardown libxl writes the backend's ``online`` 0 and ``state`` 5
  (Closing): a running frontend closes (6), and the backend goes to Closed
  (6) once the frontend is closed, gone or its guest does not run (a
  paused or dead guest cannot answer): that is what device removal and
  domain destruction wait for.

The primary console has no frontend state (xenconsoled reads the console
directory itself): its backend connects as soon as the guest runs.

A ``qdisk`` backend (an HVM guest's CD-ROM) and a ``vkbd`` one (its PV
keyboard and mouse) are QEMU's (:data:`QEMU_KINDS`): libxl runs no
hotplug script for them and does not wait for them, and they move only
while the guest's device model runs (its
``/local/domain/0/device-model/<domid>/state`` is ``running``): InitWait,
then Connected once the frontend is Initialised.

Every reaction happens on a later reactor turn (the store schedules
internal watch callbacks), never inside the write that fired it.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from twisted.logger import Logger

from .store import XenstoreError

__all__ = ["BACKEND_KINDS", "QEMU_KINDS", "BackendDriver", "XenbusDevice"]

log = Logger()

INITIALISING, INITWAIT, INITIALISED, CONNECTED, CLOSING, CLOSED = 1, 2, 3, 4, 5, 6

#: The backend kinds dom0 serves for a libxl-built domain.
BACKEND_KINDS = ("vbd", "qdisk", "vkbd", "vif", "console")
#: Those served by the guest's device model.
QEMU_KINDS = ("qdisk", "vkbd")

#: What blkback publishes once a disk is connected (a 1 GiB disk).
_DISK_CONNECTED = (
    ("sectors", "2097152"),
    ("sector-size", "512"),
    ("info", "0"),
    ("feature-flush-cache", "1"),
    ("feature-discard", "0"),
)


def _read(store: Any, path: str, domid: int = 0) -> Optional[str]:
    try:
        return store.read(path, domid=domid).decode()
    except XenstoreError:
        return None


def _state(store: Any, path: str, domid: int = 0) -> Optional[int]:
    value = _read(store, path + "/state", domid)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class XenbusDevice:
    """
    Both ends of one device: C{backend} is its backend directory; the
    frontend is found through the backend's ``frontend`` node.

    @param guest_runs: tells whether the guest runs now (its frontend
        drivers only act then).
    """

    def __init__(self, store: Any, backend: str, kind: str, domid: int,
                 guest_runs: Callable[[], bool]) -> None:
        self._store = store
        self.backend = backend
        self.kind = kind
        self.domid = domid
        self._guest_runs = guest_runs
        self.frontend: Optional[str] = None
        self._front_watch: Any = None

    def stop(self) -> None:
        if self._front_watch is not None:
            try:
                self._store.unwatch(self._front_watch)
            except XenstoreError:
                pass
            self._front_watch = None

    def step(self) -> None:
        """Look at both states and make the moves the drivers would."""
        store = self._store
        back = _state(store, self.backend)
        if back is None:
            return
        self._follow_frontend()
        front = _state(store, self.frontend, self.domid) if self.frontend else None
        online = _read(store, self.backend + "/online")
        runs = self._guest_runs()
        if back == INITIALISING and online == "1":
            if self.kind not in QEMU_KINDS or self._dm_runs():
                self._set_backend(INITWAIT)
        elif back in (INITWAIT, INITIALISED) and online == "1":
            if self.kind == "console":
                if runs:
                    self._set_backend(CONNECTED)
            elif runs and front == INITIALISING:
                self._front_initialise()
            elif front in (INITIALISED, CONNECTED) and self._hotplug_done():
                self._backend_connect()
        elif back == CONNECTED:
            if runs and front == INITIALISED:
                self._set_frontend(CONNECTED)
        elif back == CLOSING:
            if runs and front is not None and front < CLOSED:
                self._set_frontend(CLOSED)
            elif online == "0" and (front is None or front == CLOSED or not runs):
                self._set_backend(CLOSED)

    # -- internals --------------------------------------------------------

    def _follow_frontend(self) -> None:
        if self.frontend is not None or self.kind == "console":
            return
        frontend = _read(self._store, self.backend + "/frontend")
        if not frontend:
            return
        self.frontend = frontend
        self._front_watch = self._store.watch(frontend + "/state", lambda _path: self.step())

    def _set_backend(self, state: int) -> None:
        self._store.write(self.backend + "/state", b"%d" % state)
        log.debug("backend {path} -> {state}", path=self.backend, state=state)

    def _set_frontend(self, state: int) -> None:
        if self.frontend is None:
            return
        try:
            self._store.write(self.frontend + "/state", b"%d" % state, domid=self.domid)
        except XenstoreError:
            # The toolstack removed the frontend meanwhile.
            return

    def _front_initialise(self) -> None:
        """Publish the rings and the event channel, then Initialised."""
        if self.frontend is None:
            return
        fe, store, dom = self.frontend, self._store, self.domid
        try:
            if self.kind == "vif":
                store.write(fe + "/tx-ring-ref", b"8", domid=dom)
                store.write(fe + "/rx-ring-ref", b"9", domid=dom)
                store.write(fe + "/request-rx-copy", b"1", domid=dom)
            elif self.kind == "vkbd":
                store.write(fe + "/page-ref", b"11", domid=dom)
                store.write(fe + "/page-gref", b"11", domid=dom)
            else:
                store.write(fe + "/ring-ref", b"8", domid=dom)
            store.write(fe + "/event-channel", b"10", domid=dom)
        except XenstoreError:
            return
        self._set_frontend(INITIALISED)

    def _dm_runs(self) -> bool:
        """Whether the guest's device model (QEMU's backends) runs."""
        return _read(self._store, "/local/domain/0/device-model/%d/state" % self.domid) == "running"

    def _hotplug_done(self) -> bool:
        """What the driver waits for from the hotplug script (QEMU: only
        to run)."""
        if self.kind in QEMU_KINDS:
            return self._dm_runs()
        if self.kind == "vbd":
            return bool(_read(self._store, self.backend + "/physical-device"))
        return _read(self._store, self.backend + "/hotplug-status") == "connected"

    def _backend_connect(self) -> None:
        if self.kind in ("vbd", "qdisk"):
            for key, value in _DISK_CONNECTED:
                self._store.write("%s/%s" % (self.backend, key), value.encode())
        self._set_backend(CONNECTED)


class BackendDriver:
    """
    dom0's backend drivers for one domain: watches its backend directories
    (``/local/domain/0/backend/<kind>/<domid>``) and keeps one
    :class:`XenbusDevice` per device there, dropped when its backend
    directory goes.
    """

    def __init__(self, store: Any, domid: int, guest_runs: Callable[[], bool]) -> None:
        self._store = store
        self.domid = domid
        self._guest_runs = guest_runs
        self.devices: Dict[str, XenbusDevice] = {}
        self._watches: List[Any] = []
        self._stopped = False

    def start(self) -> None:
        for kind in BACKEND_KINDS:
            path = "/local/domain/0/backend/%s/%d" % (kind, self.domid)
            self._watches.append(self._store.watch(path, lambda p, _k=kind: self._fired(_k, p)))
        dm_state = "/local/domain/0/device-model/%d/state" % self.domid
        self._watches.append(self._store.watch(dm_state, lambda _p: self._dm_changed()))

    def stop(self) -> None:
        self._stopped = True
        for handle in self._watches:
            try:
                self._store.unwatch(handle)
            except XenstoreError:
                pass
        self._watches = []
        for device in self.devices.values():
            device.stop()
        self.devices.clear()

    def guest_changed(self) -> None:
        """The guest started or stopped running: every device looks again."""
        for device in list(self.devices.values()):
            device.step()

    def _dm_changed(self) -> None:
        """The device model started (or stopped): QEMU's backends look again."""
        if self._stopped:
            return
        for device in list(self.devices.values()):
            if device.kind in QEMU_KINDS:
                device.step()

    def _fired(self, kind: str, path: str) -> None:
        if self._stopped:
            return
        parts = path.split("/")
        # /local/domain/0/backend/<kind>/<domid>/<devid>[/...]
        if len(parts) < 8:
            for known in [p for p in self.devices if p.startswith(path + "/") or p == path]:
                if not self._store.exists(known):
                    self.devices.pop(known).stop()
            return
        directory = "/".join(parts[:8])
        device = self.devices.get(directory)
        if not self._store.exists(directory):
            if device is not None:
                self.devices.pop(directory).stop()
            return
        if device is None:
            device = self.devices[directory] = XenbusDevice(
                self._store, directory, kind, self.domid, self._guest_runs
            )
        device.step()
