"""
The hypervisor's side of saving and restoring a domain: its memory image,
log-dirty mode, the state a save carries, putting that state into the
domain libxl creates for a restore, and ``resumedomain``.

libxc saves a domain by reading its memory through foreign mappings and
asking Xen which pages the guest dirtied meanwhile
(``XEN_DOMCTL_SHADOW_OP_CLEAN``); the simulated host has no guest memory,
so :class:`_SaveRestoreMixin` keeps what stands for it:

* the *memory image*: the first pages of the domain's memory (1 MiB by
  default, :data:`DEFAULT_IMAGE_KB`, or what :meth:`set_image_size` set,
  never more than the domain has), whose page 0 holds the guest's *marker*
  (:meth:`set_marker`) and whose other pages a pattern fills, from the
  image's seed; the bytes themselves are made and checked by the shim (see
  :mod:`txlibxl.sim.savestream`);
* *log-dirty mode* during a live save, a model of a guest whose writes
  shrink as the save goes on: after round *r* of sending, the pages it
  dirtied are every ``4**r``-th page of the image (the set shrinks fourfold
  a round), and the last set, once it has suspended, is the next one of
  the series; page 0 is dirty whenever the marker changed since a save
  last sent it.  So a live save of *N* pages sends about *4N/3*, in
  the rounds libxc's policy makes (at most 5, until fewer than 50 pages
  are dirty).  Nothing is written behind the model's back: the pages the
  guest "dirtied" hold the same pattern;
* what the restore brings: the new domain gets the saved memory, vCPUs
  and image (size, seed, marker), its rings at the saved pfns (for a PV
  guest in its own new frames) with the grant table seeded and, for an
  HVM container, the ring and event channel HVM parameters, as libxc's
  restore sets them.

This state is kept beside the domain table, not in the :class:`Domain`
snapshots (it changes no ``getinfolist`` row), and goes with the domain.

``resume`` is ``XEN_DOMCTL_resumedomain``: a shut-down domain runs again
(its shutdown code is cleared), what a toolstack does after a checkpoint
or a failed save.  It fires no ``@releaseDomain``; xenstored's memory of
the shutdown is cleared by ``XS_RESUME`` (:meth:`xenstored_resume`).
"""
from __future__ import annotations

import errno as _errno
from typing import Any, Callable, Dict, Optional, Tuple

import attr

from ..savestream.format import (
    MARKER_MAX,
    SimDomain,
    SimGuest,
    StreamError,
    decode_marker_page,
    encode_marker_page,
)
from .domain import Domain, DomainChange
from .errors import InvalidOperation, OutOfMemory

__all__ = ["DEFAULT_IMAGE_KB", "DIRTY_SHRINK", "GuestMemory"]

#: The memory image of a domain nobody gave another size.
DEFAULT_IMAGE_KB = 1024
#: How much smaller each round's dirty set is.
DIRTY_SHRINK = 4
#: The ring pfns a save records for a domain with no ring in the grant
#: table (one the simulator made itself).
_DEFAULT_RING_PFNS = (1, 2)
_KB_PER_PAGE = 4
# HVM_PARAM_{STORE,CONSOLE}_{PFN,EVTCHN}.
_HVM_STORE_PFN, _HVM_STORE_EVTCHN, _HVM_CONSOLE_PFN, _HVM_CONSOLE_EVTCHN = 1, 2, 17, 18


@attr.s(slots=True, auto_attribs=True)
class GuestMemory:
    """What a save carries of one domain, beside its :class:`Domain`."""

    #: The image's size (None: the default, at most the domain's memory).
    image_kb: Optional[int] = None
    #: The seed of its pattern (0: derived from the UUID).
    seed: int = 0
    #: What the guest keeps in page 0, and whether page 0 changed since a
    #: save last sent it.
    marker: bytes = b""
    marker_dirty: bool = False
    #: A live save's log-dirty mode: the rounds reported so far (None: off).
    logdirty_rounds: Optional[int] = None


#: The record of a domain nothing changed yet (never mutated).
_UNTOUCHED = GuestMemory()


class _SaveRestoreMixin:
    """Save, restore and resume (part of :class:`~txlibxl.sim.hypervisor.Hypervisor`)."""

    _domains: Dict[int, Domain]
    _shutdown_noticed: Any
    _guest_memory: Dict[int, GuestMemory]

    get: Callable[[int], Domain]
    _guest: Callable[[int, str], Domain]
    _replace: Callable[..., Domain]
    _emit: Callable[[Domain, DomainChange], None]
    _update: Callable[..., Domain]
    populate: Callable[[int, int], int]
    seed_grant_table: Callable[[int, int, int], Domain]
    set_hvm_param: Callable[[int, int, int], Domain]

    # -- the image --------------------------------------------------------

    def guest_memory(self, domid: int) -> GuestMemory:
        """A copy of what a save of C{domid} would carry."""
        self.get(domid)
        return attr.evolve(self._guest_memory.get(domid, _UNTOUCHED))

    def _memory_of(self, domid: int) -> GuestMemory:
        """C{domid}'s record, to change (C{domid} exists)."""
        memory = self._guest_memory.get(domid)
        if memory is None:
            memory = self._guest_memory[domid] = GuestMemory()
        return memory

    def image_pages(self, domid: int) -> int:
        """The pages of the domain's memory image (0 without memory)."""
        domain = self.get(domid)
        kb = self._guest_memory.get(domid, _UNTOUCHED).image_kb
        return min(DEFAULT_IMAGE_KB if kb is None else kb, domain.memory_kb) // _KB_PER_PAGE

    def image_seed(self, domid: int) -> int:
        raw = self.get(domid).uuid.bytes
        seed = self._guest_memory.get(domid, _UNTOUCHED).seed
        return seed or (int.from_bytes(raw[:8], "little") ^ int.from_bytes(raw[8:], "little")) or 0x7478

    def set_image_size(self, domid: int, kb: int) -> None:
        """The domain's memory image is C{kb} KiB (a multiple of 4, at
        most its memory)."""
        domain = self._guest(domid, "size the image of")
        if kb < _KB_PER_PAGE or kb % _KB_PER_PAGE or kb > domain.memory_kb:
            raise InvalidOperation("an image of %d KiB for a domain of %d KiB" % (kb, domain.memory_kb))
        self._memory_of(domid).image_kb = kb

    def set_marker(self, domid: int, marker: bytes) -> None:
        """The guest writes C{marker} into its page 0 (only a guest that
        runs writes its memory)."""
        domain = self._guest(domid, "mark")
        if len(marker) > MARKER_MAX:
            raise InvalidOperation("a marker is at most %d octets" % MARKER_MAX)
        if domain.paused or domain.shutdown or domain.dying:
            raise InvalidOperation("the guest of domain %d does not run" % domid)
        memory = self._memory_of(domid)
        memory.marker = bytes(marker)
        memory.marker_dirty = True

    # -- save -------------------------------------------------------------

    def save_begin(self, domid: int, live: bool) -> Tuple[SimDomain, bytes]:
        """A save starts: what the domain is, and page 0 as it is now;
        a live save turns log-dirty mode on."""
        domain = self._guest(domid, "save")
        pages = self.image_pages(domid)
        if domain.dying or not pages:
            raise InvalidOperation("domain %d has no memory to save" % domid)
        store, console = _ring_pfns(domain)
        described = SimDomain(domain.type, domain.uuid, domain.vcpus, domain.max_memory_kb, pages,
                              self.image_seed(domid), store, console)
        memory = self._memory_of(domid)
        memory.marker_dirty = False
        memory.logdirty_rounds = 0 if live else None
        return described, encode_marker_page(memory.marker)

    def logdirty_clean(self, domid: int, final: bool = False) -> Tuple[int, int, Optional[bytes]]:
        """
        ``SHADOW_OP_CLEAN``: what the guest dirtied since the last call, as
        (number of pages, stride, page 0 or None): the pages are every
        C{stride}-th from C{stride} on, and page 0 if it is given.  With
        C{final}, the last set, once the guest no longer runs (it has
        suspended): the model's guest dirtied as much before it suspended
        as in a next round.
        """
        domain = self.get(domid)
        memory = self._memory_of(domid)
        if memory.logdirty_rounds is None:
            raise InvalidOperation("domain %d is not in log-dirty mode" % domid)
        if final and domain.running:
            raise InvalidOperation("the guest of domain %d still runs" % domid)
        memory.logdirty_rounds += 1
        stride = DIRTY_SHRINK ** memory.logdirty_rounds
        count = max(0, (self.image_pages(domid) - 1) // stride)
        page0 = encode_marker_page(memory.marker) if memory.marker_dirty else None
        memory.marker_dirty = False
        return count + (page0 is not None), stride, page0

    def logdirty_off(self, domid: int) -> None:
        self.get(domid)
        self._memory_of(domid).logdirty_rounds = None

    def save_end(self, domid: int) -> Tuple[SimGuest, bytes]:
        """The guest's state now (it has suspended) and its page 0;
        log-dirty mode ends."""
        domain = self.get(domid)
        memory = self._memory_of(domid)
        memory.logdirty_rounds = None
        memory.marker_dirty = False
        online = frozenset(range(domain.vcpus)) - domain.offline_vcpus
        return SimGuest(domain.memory_kb, online), encode_marker_page(memory.marker)

    # -- restore ----------------------------------------------------------

    def restore(self, domid: int, saved: SimDomain, guest: SimGuest, page0: bytes,
                store_evtchn: int, console_evtchn: int) -> Tuple[int, int]:
        """
        Put a saved domain's state into C{domid}, the domain libxl has
        just created for it (paused, with no memory): its memory, vCPUs,
        image and rings.  Nothing changes unless everything fits.

        @return: the xenstore and console ring frames (machine frames for
            PV, guest frames for an HVM container), for libxl's INTRODUCE.
        """
        domain = self._guest(domid, "restore into")
        try:
            marker = decode_marker_page(page0)
        except StreamError as e:
            raise InvalidOperation("corrupt image: %s" % e) from None
        if saved.type != domain.type:
            raise InvalidOperation("a %s domain cannot be restored into a %s one" % (saved.type, domain.type))
        if domain.dying or domain.memory_kb:
            raise InvalidOperation("domain %d is not a new domain" % domid, _errno.EEXIST)
        if saved.vcpus > domain.vcpus or not guest.online_vcpus <= set(range(saved.vcpus)):
            raise InvalidOperation("%d vCPUs saved, the domain has %d" % (saved.vcpus, domain.vcpus))
        pages = guest.memory_kb // _KB_PER_PAGE
        if pages < saved.image_pages or guest.memory_kb > domain.max_memory_kb:
            raise OutOfMemory("%d KiB saved, the domain may have %d" % (guest.memory_kb, domain.max_memory_kb))
        base = self.populate(domid, pages)
        offset = base if domain.type == "pv" else 0
        self.seed_grant_table(domid, offset + saved.console_pfn, offset + saved.store_pfn)
        if domain.type != "pv":
            for index, value in ((_HVM_STORE_PFN, saved.store_pfn), (_HVM_STORE_EVTCHN, store_evtchn),
                                 (_HVM_CONSOLE_PFN, saved.console_pfn), (_HVM_CONSOLE_EVTCHN, console_evtchn)):
                self.set_hvm_param(domid, index, value)
        offline = frozenset(range(domain.vcpus)) - guest.online_vcpus - {0}
        self._update(self.get(domid), offline_vcpus=offline)
        self._guest_memory[domid] = GuestMemory(saved.image_pages * _KB_PER_PAGE, saved.seed, marker)
        return offset + saved.store_pfn, offset + saved.console_pfn

    # -- resume -----------------------------------------------------------

    def resume(self, domid: int) -> Domain:
        """``XEN_DOMCTL_resumedomain``: a shut-down domain runs again."""
        domain = self._guest(domid, "resume")
        if domain.dying:
            raise InvalidOperation("domain %d is dying" % domid)
        if not domain.shutdown:
            return domain
        domain = self._replace(domain, shutdown=False, shutdown_reason=None)
        self._emit(domain, DomainChange.RESUMED)
        return domain

    def xenstored_resume(self, domid: int) -> None:
        """xenstored's ``XS_RESUME``: it forgets it announced C{domid}'s
        shutdown, so the next one fires ``@releaseDomain`` again."""
        self._shutdown_noticed.discard(domid)


def _ring_pfns(domain: Domain) -> Tuple[int, int]:
    """The pfns of the domain's xenstore and console rings."""
    if domain.xenstore_gfn is None or domain.console_gfn is None:
        return _DEFAULT_RING_PFNS
    if domain.type != "pv":
        return domain.xenstore_gfn, domain.console_gfn
    base = domain.mfn_base
    if not base or domain.xenstore_gfn < base or domain.console_gfn < base:
        return _DEFAULT_RING_PFNS
    return domain.xenstore_gfn - base, domain.console_gfn - base

