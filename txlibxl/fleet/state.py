"""
What the fleet looks like now, from the records delivered: :class:`FleetState`.

Per host: its domains (by uuid) with their domid, name and state, the
last seq and time, and how many records it sent; for the fleet: the last
events.  A ``snapshot`` replaces a host's domains; ``new`` adds one
(``running``); ``shutdown`` marks it shut down with its reason; ``death``
removes it.  Listeners (the live page's streams) are told which hosts
changed, at most once per ``flush`` call, so a storm costs them a few
updates a second, not one per record.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Set

__all__ = ["FleetState"]

Listener = Callable[[List[Dict[str, Any]], List[Dict[str, Any]]], None]


class FleetState:
    """
    :param events: how many recent records :meth:`view` lists.
    """

    def __init__(self, events: int = 50) -> None:
        self.hosts: Dict[str, Dict[str, Any]] = {}
        self.recent: Deque[Dict[str, Any]] = deque(maxlen=events)
        self._dirty: Set[str] = set()
        self._new_events: List[Dict[str, Any]] = []
        self._listeners: List[Listener] = []

    def apply(self, record: Dict[str, Any]) -> None:
        """Take one delivered record (a decoded record of schema 2 or 3: the fields read here are the same in both)."""
        host_name = record.get("host")
        if not isinstance(host_name, str):
            return
        host = self.hosts.get(host_name)
        if host is None:
            host = self.hosts[host_name] = {"host": host_name, "domains": {}, "records": 0, "last_seq": None,
                                            "last_time": None}
        host["records"] += 1
        host["last_seq"] = record.get("seq")
        host["last_time"] = record.get("time")
        domains = host["domains"]
        kind = record.get("type")
        if kind == "snapshot":
            domains.clear()
            for dom in record.get("domains") or ():
                domains[dom["uuid"]] = {"domid": dom["domid"], "uuid": dom["uuid"], "name": dom["name"],
                                        "state": dom["state"], "reason": dom.get("shutdown_reason"),
                                        "since": record.get("time")}
        else:
            uuid = record.get("uuid")
            if kind == "death":
                domains.pop(uuid, None)
            elif kind in ("new", "shutdown", "disk_eject"):
                dom = domains.get(uuid)
                if dom is None:
                    dom = domains[uuid] = {"domid": record.get("domid"), "uuid": uuid, "name": record.get("name"),
                                           "state": "running", "reason": None, "since": record.get("time")}
                if record.get("name") is not None:
                    dom["name"] = record["name"]
                if kind == "shutdown":
                    dom["state"], dom["reason"], dom["since"] = "shutdown", record.get("reason"), record.get("time")
        event = {k: record.get(k) for k in ("host", "seq", "time", "type", "domid", "uuid", "name", "reason", "vdev")}
        self.recent.append(event)
        self._new_events.append(event)
        self._dirty.add(host_name)

    # -- views ---------------------------------------------------------------

    def host_view(self, name: str) -> Dict[str, Any]:
        host = self.hosts[name]
        domains = sorted(host["domains"].values(), key=lambda d: (d["domid"] is None, d["domid"], d["uuid"]))
        return {"host": name, "records": host["records"], "last_seq": host["last_seq"], "last_time": host["last_time"],
                "domains": domains}

    def view(self) -> Dict[str, Any]:
        """The whole fleet, JSON-able: ``{"hosts": [...], "events": [...]}``."""
        return {"hosts": [self.host_view(n) for n in sorted(self.hosts)], "events": list(self.recent)}

    # -- listeners -----------------------------------------------------------

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(changed_hosts, new_events)`` at each :meth:`flush` with changes; returns a remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def flush(self) -> None:
        """Tell the listeners what changed since the last flush."""
        if not self._dirty:
            return
        hosts = [self.host_view(n) for n in sorted(self._dirty)]
        events = self._new_events[-self.recent.maxlen:] if self.recent.maxlen else []
        self._dirty = set()
        self._new_events = []
        for listener in list(self._listeners):
            listener(hosts, events)
