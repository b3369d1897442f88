"""
The control ops on a guest's memory, the state a save carries (part of
:class:`~txlibxl.sim.host.SimHost`):

``guest_marker`` (``domid``, ``value``)
    the guest writes C{value} (a string, at most 1024 octets of UTF-8)
    into its page 0: only a faithful save and restore carry it to the
    restored domain (:mod:`txlibxl.sim.savestream`);
``guest_image`` (``domid``, ``kb``)
    the domain's memory image, what a save streams as real bytes, is
    ``kb`` KiB (a multiple of 4, at most its memory; 1 MiB by default).

``info`` reports both, with the domain's memory and vCPUs.
"""
from __future__ import annotations

from typing import Any, Dict

from .errors import BadRequest, Conflict, NoSuchDomain
from .hypervisor import Domain, InvalidOperation
from .hypervisor import NoSuchDomain as HvNoSuchDomain
from .savestream import MARKER_MAX

__all__ = ["GuestMemoryOps"]


def _domid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("domid must be an integer, got %r" % (value,))
    return value


class GuestMemoryOps:
    """``guest_marker``, ``guest_image`` and what ``info`` adds."""

    hypervisor: Any

    def guest_marker(self, domid: Any = None, value: Any = None) -> Dict[str, Any]:
        if not isinstance(value, str) or len(value.encode("utf-8")) > MARKER_MAX:
            raise BadRequest("value must be a string of at most %d octets, got %r" % (MARKER_MAX, value))
        domid = _domid(domid)
        self._guest_call(self.hypervisor.set_marker, domid, value.encode("utf-8"))
        return {"domid": domid, "marker": value}

    def guest_image(self, domid: Any = None, kb: Any = None) -> Dict[str, Any]:
        if isinstance(kb, bool) or not isinstance(kb, int):
            raise BadRequest("kb must be an integer, got %r" % (kb,))
        domid = _domid(domid)
        self._guest_call(self.hypervisor.set_image_size, domid, kb)
        return {"domid": domid, "image_kb": self.hypervisor.image_pages(domid) * 4}

    def _guest_call(self, operation: Any, domid: int, *args: Any) -> Any:
        try:
            return operation(domid, *args)
        except HvNoSuchDomain:
            raise NoSuchDomain("no domain %d" % domid) from None
        except InvalidOperation as e:
            raise Conflict(str(e)) from None

    def memory_info(self, domain: Domain) -> Dict[str, Any]:
        """What ``info`` tells of a domain's memory and vCPUs."""
        return {
            "memory_kb": domain.memory_kb,
            "max_memory_kb": domain.max_memory_kb,
            "vcpus": domain.vcpus,
            "online_vcpus": domain.online_vcpus,
            "image_kb": self.hypervisor.image_pages(domain.domid) * 4,
            "marker": self.hypervisor.guest_memory(domain.domid).marker.decode("utf-8", errors="replace"),
        }
