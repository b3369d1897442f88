"""
The :class:`Toolstack`: applies layouts to the store, keeps the registry.

See :mod:`txlibxl.sim.toolstack`.
"""
import json
import os
import time
from typing import Dict, Iterable, Optional

from twisted.logger import Logger

from ..errors import Conflict, NoSuchDomain
from .devices import GuestRecord, devices_of
from .host_layout import HOTPLUG_SCRIPT, dom0_layout
from .libxl_layout import domain_layout
from .nodes import Node, Perms
from .saved_config import saved_config, userdata_name
from .specs import DomainSpec

__all__ = ["Toolstack"]

log = Logger()


class Toolstack:
    """
    Plays libxl's create path on a store and a hypervisor, and keeps the
    registry of domains it created.

    Every operation costs time proportional to the size of one domain's
    tree, never to the number of domains.

    @param store: a ``txlibxl.sim.store.Store``.
    @param hypervisor: a ``txlibxl.sim.hypervisor.Hypervisor``.
    @param script: the hotplug script path written into backends.
    @param userdata_dir: where libxl keeps its saved configurations (the
        host's ``/var/lib/xen``); if given, each domain's is written there
        as libxl would have (L{saved_config_path}).
    """

    def __init__(self, store, hypervisor, script: str = HOTPLUG_SCRIPT, clock=time.time,
                 userdata_dir: Optional[str] = None):
        self._store = store
        self.userdata_dir = userdata_dir
        self._hv = hypervisor
        self._script = script
        self._clock = clock
        self._records: Dict[int, GuestRecord] = {}
        self._by_name: Dict[str, int] = {}

    # registry

    def get(self, domid: int) -> GuestRecord:
        """
        @raise NoSuchDomain: the toolstack created no live domain C{domid}.
        """
        try:
            return self._records[domid]
        except KeyError:
            raise NoSuchDomain("no domain %r" % (domid,)) from None

    def by_name(self, name: str) -> GuestRecord:
        """
        @raise NoSuchDomain: no live domain is called C{name}.
        """
        try:
            return self._records[self._by_name[name]]
        except KeyError:
            raise NoSuchDomain("no domain named %r" % (name,)) from None

    def records(self) -> Iterable[GuestRecord]:
        return self._records.values()

    def forget(self, domid: int) -> Optional[GuestRecord]:
        """
        Drop C{domid} from the registry (its domain is gone) and return its
        record, or C{None} if it was not known.
        """
        record = self._records.pop(domid, None)
        if record is not None and self._by_name.get(record.name) == domid:
            del self._by_name[record.name]
        return record

    # create

    def setup_dom0(self) -> None:
        """Write dom0's own entries, as ``xen-init-dom0`` does at boot."""
        self._apply(dom0_layout())

    def create(self, spec: DomainSpec) -> GuestRecord:
        """
        Create a paused domain in the hypervisor, write its xenstore tree
        and introduce it to xenstored.  The caller starts the agents and
        unpauses.

        @raise Conflict: a live domain already has this name.
        """
        if spec.name in self._by_name or spec.name == "Domain-0":
            raise Conflict("a domain named %r already exists" % (spec.name,))
        domain = self._hv.create_domain(spec.name, spec.type, spec.memory_kb, spec.vcpus, paused=True)
        domid = domain.domid
        uuid = str(domain.uuid)
        devices = devices_of(domid, spec)
        # libxl removes whatever an earlier domain with this domid left.
        for stale in ["/local/domain/%d" % domid, "/libxl/%d" % domid] + [
            "/local/domain/0/backend/%s/%d" % (kind, domid) for kind in ("console", "vbd", "qdisk", "vif")
        ]:
            if self._store.exists(stale):
                self._store.rm(stale)
        self._apply(domain_layout(domid, uuid, spec, devices, self._script, self._clock()))
        self._store.introduce(domid)
        record = GuestRecord(domid, uuid, spec.name, spec.type, devices)
        self._records[domid] = record
        self._by_name[spec.name] = domid
        path = self.saved_config_path(record)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(json.dumps(saved_config(record, spec), indent=4) + "\n\0")
        return record

    def saved_config_path(self, record: GuestRecord) -> Optional[str]:
        """Where libxl keeps C{record}'s configuration (None: nowhere)."""
        if self.userdata_dir is None:
            return None
        return os.path.join(self.userdata_dir, userdata_name(record.domid, record.uuid))

    def _apply(self, nodes: Iterable[Node]) -> None:
        """
        Write C{nodes} in order as dom0.  A node dom0 creates copies its
        parent's permissions, so a SET_PERMS that would set those same
        permissions again is skipped (the result is the same tree).
        """
        write = self._store.write
        set_perms = self._store.set_perms
        known: Dict[str, Optional[Perms]] = {}
        for node in nodes:
            write(node.path, node.value.encode())
            inherited = known.get(node.path.rsplit("/", 1)[0])
            if node.perms is not None and node.perms != inherited:
                set_perms(node.path, list(node.perms))
            known[node.path] = node.perms if node.perms is not None else inherited

    # teardown

    def teardown(self, record: GuestRecord) -> None:
        """
        Remove the domain's trees as a toolstack that destroys it would
        (libxl's ``libxl__devices_destroy`` then ``devices_destroy_cb``):
        each device's frontend, libxl copy and backend with their emptied
        parents, then ``/vm/<uuid>``, ``/local/domain/<domid>`` and
        ``/libxl/<domid>``.  Nodes that are already gone are skipped.
        """
        for device in record.devices:
            for path in (device.frontend, device.libxl, device.backend):
                self._path_cleanup(path)
        store = self._store
        for path in (
            "/vm/%s" % record.uuid,
            "/local/domain/%d" % record.domid,
            "/libxl/%d" % record.domid,
        ):
            if store.exists(path):
                store.rm(path)

    def _path_cleanup(self, path: str) -> None:
        """``libxl__xs_path_cleanup``: rm, then rm each empty "" parent."""
        store = self._store
        if not store.exists(path):
            return
        store.rm(path)
        parent = path.rsplit("/", 1)[0]
        while parent and parent not in ("/local/domain/0", "/local/domain", "/local", "/libxl"):
            if not store.exists(parent) or store.read(parent) != b"" or store.directory(parent):
                break
            store.rm(parent)
            parent = parent.rsplit("/", 1)[0]
