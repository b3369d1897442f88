"""
libxl's events: :class:`EventsMixin`, the part of
:class:`~txlibxl._libxl.binding.Ctx` that enables and disables event
generators (domain death, disk eject), receives libxl's ``event_occurs``
callback, and takes queued events with ``libxl_event_check``.

Events are queued in C and taken in batches (:mod:`.ctx_reports`); a
domain-death generator lives in C, which disables it when its death
arrives, so :meth:`EventsMixin.evdisable_domain_death` after a death calls
no libxl.  libxl 4.17 leaves a death's UUID
and a disk eject's vdev out of its events; this part remembers both when
a generator is enabled, keyed by ``(domid, for_user)``, and fills them in.
"""
from __future__ import annotations

from collections import deque
from itertools import repeat
from typing import Any, Callable, Dict, Iterable, Optional, Set, Tuple

from .. import errors
from . import native
from .checks import check_callable, check_domid, check_text, check_uint64, check_uuid
from .constants import EVENTMASK_ALL, NIL_UUID
from .ctx_base import CtxBase
from .ctx_queries import uuid_of
from .values import RawEvent, read_event

__all__ = ["EventsMixin"]

_log = native.log

_ffi: Any = None
_lib: Any = None


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


class _EventGenerator:
    """
    The opaque handle of one enabled libxl event generator; pass it back to
    the matching ``evdisable_*`` once.
    """

    # One per watch, thousands on a host: what disabling it needs, no more.
    __slots__ = ("ctx", "kind", "pointer", "user", "domid", "uuid")

    def __init__(self, ctx: "EventsMixin", kind: str, pointer: Any, user: int) -> None:
        self.ctx = ctx
        self.kind = kind
        self.pointer = pointer
        self.user = user
        self.domid: Optional[int] = None
        self.uuid: Optional[str] = None

    def __repr__(self) -> str:
        state = "enabled" if self.pointer is not None else "disabled"
        return f"<libxl {self.kind} generator user={self.user} {state}>"


#: The pointer of a domain-death generator's handle: the C side keeps the
#: generator itself (by user value).
_IN_C = True


def _ignore_event(raw: RawEvent) -> None:
    _log.warn("libxl event of type {type} with no handler, dropped", type=raw.type)


class EventsMixin(CtxBase):
    """
    The event callbacks and generators of a :class:`~txlibxl._libxl.binding.Ctx`.
    """

    def _init_state(self, log: Callable[[int, str], None]) -> None:
        super()._init_state(log)
        self._on_event: Callable[[RawEvent], None] = _ignore_event
        # Disk-eject generators; domain-death ones by user value (as the
        # C side keeps them), each handle with its domain's uuid.
        self._generators: Set[_EventGenerator] = set()
        self._deaths: Dict[int, _EventGenerator] = {}
        # (domid, user) -> what libxl leaves out of a disk eject generator's events
        self._eject_vdevs: Dict[Tuple[int, int], str] = {}
        self._uuids: Dict[Tuple[int, int], str] = {}
        # (domid, user) -> how many enabled generators share it (so that a
        # disable finds out in O(1) whether the entries above are still used)
        self._key_refs: Dict[Tuple[int, int], int] = {}
        self._died = _ffi.new("int *")

    def _after_free(self) -> None:
        super()._after_free()
        for generator in self._generators:
            generator.pointer = None
        for generator in self._deaths.values():
            generator.pointer = None
        self._generators.clear()
        self._deaths.clear()
        self._key_refs.clear()
        self._eject_vdevs.clear()
        self._uuids.clear()

    # -- setup -----------------------------------------------------------

    def register_event_callbacks(
        self,
        on_event: Callable[[RawEvent], None],
        on_disaster: Callable[[int, str, int], None],
        mask: int = EVENTMASK_ALL,
    ) -> None:
        """
        ``libxl_event_register_callbacks``: events whose type's bit is set
        in C{mask} (bit N for type N; default: all) are copied, freed and
        handed to C{on_event(raw_event)}; the others stay queued for
        :meth:`event_check`.  libxl's disasters go to
        C{on_disaster(type, message, errnoval)}, which must not call libxl.

        Both are called from inside libxl, on any thread that calls libxl.
        libxl allows this only while no event generator is enabled.
        """
        call = "libxl_event_register_callbacks"
        check_callable(call, "on_event", on_event)
        check_callable(call, "on_disaster", on_disaster)
        check_uint64(call, "mask", mask)
        ctx = self._enter(call)
        if self._generators or self._deaths:
            raise errors.ContextStateError(
                f"{call}: libxl forbids this while event generators are enabled"
            )
        self._on_event = on_event
        self._on_disaster = on_disaster
        _lib.txl_register_event_callbacks(ctx, self._event_hooks, mask, self._queue)

    # -- callbacks (called by libxl through C) ---------------------------

    def _copy_event(self, event: Any) -> RawEvent:
        raw = read_event(event, self._eject_vdevs, self._uuids)
        if raw.uuid == NIL_UUID:
            raw = raw._replace(uuid=self._death_uuid(raw.domid, raw.for_user))
        return raw

    def _death_uuid(self, domid: int, user: int) -> str:
        """The uuid of domain C{domid} known to its death generator C{user} (or nil)."""
        generator = self._deaths.get(user)
        if generator is None or generator.domid != domid or generator.uuid is None:
            return NIL_UUID
        return generator.uuid

    # -- event generators ------------------------------------------------

    @property
    def generators_enabled(self) -> int:
        """
        The number of event generators enabled and not yet disabled.
        """
        return len(self._generators) + len(self._deaths)

    def evenable_domain_death(self, domid: int, user: int, uuid: Optional[str] = None) -> Any:
        """
        ``libxl_evenable_domain_death``: report DOMAIN_SHUTDOWN (at most
        once) and DOMAIN_DEATH of C{domid}, with C{for_user=user}.  libxl
        does not check that the domain exists (a missing one yields DEATH).

        The events carry C{uuid}, the domain's UUID (libxl 4.17 leaves it
        out of them); without it, it is read after the generator is
        enabled (one ``libxl_domain_info``).  C{user} must not be that of
        another domain-death generator still enabled: the C side finds
        the generator by it when its death comes.

        :returns: an opaque handle for :meth:`evdisable_domain_death`.
        """
        call = "libxl_evenable_domain_death"
        check_domid(call, domid)
        check_uint64(call, "user", user)
        check_uuid(call, uuid)
        ctx = self._enter(call)
        if user in self._deaths:
            raise errors.InvalidArgument(
                call=call, message=f"user value {user} is another enabled death generator's"
            )
        died = self._died
        self._libxl_busy = True
        # The C side keeps the generator by user value and disables it
        # when its death arrives (c/txl_queue.c); this handle names it.
        rc = _lib.txl_evenable_death(self._queue, domid, user, died)
        self._take_reports(False)
        if rc:
            raise errors.from_code(rc, call)
        generator = _EventGenerator(self, "domain_death", _IN_C, user)
        generator.domid = domid
        generator.uuid = uuid if uuid is not None else uuid_of(ctx, domid)
        self._deaths[user] = generator
        return generator

    def evdisable_domain_death(self, handle: Any) -> None:
        """
        ``libxl_evdisable_domain_death``.  Events that occurred before may
        still be delivered.
        """
        self._disable(handle, "domain_death", "libxl_evdisable_domain_death", self._disable_death)

    def death_generator_spent(self, handle: Any) -> None:
        """
        The death of C{handle}'s generator was reported: the C side
        disabled it then, so this only forgets it (no libxl call, no
        checks: the context's own handles only).  The handle counts as
        disabled afterwards.
        """
        if self._forget_death(handle):
            handle.pointer = None

    def death_generators_spent(self, users: Iterable[int]) -> None:
        """
        The deaths of the death generators with these user values were
        reported with :data:`~txlibxl._libxl.ctx_reports.DEATH_SPENT`
        (the C side disabled them): forget them all, in loops that run no
        Python per generator.  A user value with no enabled generator is
        skipped.  Each handle may still be given to
        :meth:`evdisable_domain_death` once, which is then a no-op in
        libxl, as libxl's contract for a generator after its death asks.
        """
        deque(map(self._deaths.pop, users, repeat(None)), 0)

    def _forget_death(self, handle: Any) -> bool:
        """Take C{handle} out of the enabled death generators; whether it was in."""
        deaths = self._deaths
        if deaths.get(handle.user) is handle:
            del deaths[handle.user]
            return True
        return False

    def _release_key(self, key: Tuple[int, int]) -> None:
        """One generator fewer with C{key}: the last one takes its uuid and eject vdev along."""
        refs = self._key_refs
        left = refs.pop(key, 1) - 1
        if left > 0:
            refs[key] = left
        else:
            self._uuids.pop(key, None)
            self._eject_vdevs.pop(key, None)

    def _disable_death(self, ctx: Any, pointer: Any) -> None:
        # Called once _disable has forgotten the generator, if it was still
        # enabled (a spent one forgotten in a batch is not: its user value
        # may be another generator's by now).  A no-op in C if the
        # generator's death disabled it already.
        _lib.txl_evdisable_death(self._queue, self._disabling.user)

    def evenable_disk_eject(self, domid: int, vdev: str, user: int, uuid: Optional[str] = None) -> Any:
        """
        ``libxl_evenable_disk_eject``: report DISK_EJECT of the disk
        C{vdev} (e.g. ``"xvdc"``, ``"hdc"``) of C{domid}, with
        C{for_user=user}; C{uuid} as for :meth:`evenable_domain_death`.

        :returns: an opaque handle for :meth:`evdisable_disk_eject`.
        """
        call = "libxl_evenable_disk_eject"
        check_domid(call, domid)
        vdev_bytes = check_text(call, "vdev", vdev)
        check_uint64(call, "user", user)
        check_uuid(call, uuid)
        ctx = self._enter(call)
        out = _ffi.new("libxl_evgen_disk_eject **")
        self._libxl_busy = True
        rc = _lib.libxl_evenable_disk_eject(ctx, domid, vdev_bytes, user, out)
        self._take_reports(False)
        if rc:
            raise errors.from_code(rc, call)
        generator = _EventGenerator(self, "disk_eject", out[0], user)
        generator.domid = domid
        key = self._add_generator(generator)
        self._eject_vdevs[key] = vdev
        if uuid is None:
            uuid = uuid_of(ctx, domid)
        if uuid is not None:
            self._uuids[key] = uuid
        return generator

    def evdisable_disk_eject(self, handle: Any) -> None:
        """
        ``libxl_evdisable_disk_eject``.
        """
        self._disable(handle, "disk_eject", "libxl_evdisable_disk_eject",
                      _lib.libxl_evdisable_disk_eject)

    def _disable(self, handle: Any, kind: str, call: str, disable: Callable[[Any, Any], None]) -> None:
        # On a death storm this runs once per death: checks first, then
        # the least bookkeeping that keeps the maps exact.
        if not isinstance(handle, _EventGenerator) or handle.kind != kind:
            raise errors.InvalidArgument(
                call=call, message=f"not a {kind} generator handle: {handle!r}"
            )
        if handle.ctx is not self:
            raise errors.InvalidArgument(call=call, message="the generator is another context's")
        ctx = self._enter(call)
        pointer = handle.pointer
        if pointer is None:
            raise errors.InvalidArgument(call=call, message="the generator is disabled already")
        handle.pointer = None
        self._disabling = handle
        if kind == "domain_death":
            if not self._forget_death(handle):
                return  # forgotten as spent: disabled in C already
        else:
            self._generators.discard(handle)
            self._release_key((handle.domid, handle.user))
        disable(ctx, pointer)
        self._take_reports(False)

    def _add_generator(self, generator: _EventGenerator) -> Tuple[int, int]:
        # _key_refs counts only keys shared by two generators or more (a
        # key with entries and no count has one): one entry per watch less.
        self._generators.add(generator)
        key = (generator.domid, generator.user)
        refs = self._key_refs
        if key in refs:
            refs[key] += 1
        elif key in self._uuids or key in self._eject_vdevs:
            refs[key] = 2
        return key

    # -- queued events ---------------------------------------------------

    def event_check(
        self,
        typemask: int = EVENTMASK_ALL,
        predicate: Optional[Callable[[RawEvent], bool]] = None,
    ) -> Optional[RawEvent]:
        """
        ``libxl_event_check``: the first queued event whose type's bit is
        set in C{typemask} and that C{predicate} accepts (any, without
        one), removed from libxl's queue; ``None`` if there is none.

        Only events outside the mask given to
        :meth:`register_event_callbacks` are queued.  C{predicate} runs
        inside libxl and must not call libxl; an exception from it is
        logged and counts as "no".
        """
        call = "libxl_event_check"
        check_uint64(call, "typemask", typemask)
        if predicate is not None:
            check_callable(call, "predicate", predicate)
        ctx = self._enter(call)
        out = _ffi.new("libxl_event **")
        user = _ffi.new_handle((self, predicate)) if predicate is not None else _ffi.NULL
        rc = _lib.txl_event_check(ctx, out, typemask, user)
        if rc == errors.ERROR_NOT_READY:
            return None
        if rc:
            raise errors.from_code(rc, call)
        try:
            return self._copy_event(out[0])
        finally:
            _lib.libxl_event_free(ctx, out[0])
