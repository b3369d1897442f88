"""
Building and changing domains: :class:`DomainsMixin`, the part of
:class:`~txlibxl._libxl.binding.Ctx` that creates domains, retrieves their
configuration, sets their vCPUs and memory target, renames them and finds
their console.  Devices are :mod:`.ctx_devices`'.

The asynchronous ones start through
:meth:`~txlibxl._libxl.ctx_operations.OperationsMixin._start_ao` with a
:class:`~txlibxl._libxl.kept.KeptArguments` holding what libxl keeps a
pointer to; their results are read by
:meth:`~txlibxl._libxl.ctx_operations.OperationsMixin.finish_operation`.
The synchronous ones (libxl has no ``ao_how`` form of them) return their
result; libxl's error messages go into the errors they raise.
"""
from __future__ import annotations

from typing import Any, Optional

from .. import errors
from . import native
from .capture import LibxlSays
from .checks import check_c_int, check_domid, check_text, check_uint64, is_int
from .constants import DOMID_FIRST_RESERVED
from .ctx_config import ConfigMixin
from .ctx_operations import OperationsMixin
from .kept import KeptArguments

__all__ = ["DomainsMixin", "CONSOLE_TYPES"]

_ffi: Any = None
_lib: Any = None

#: libxl_console_type by name.
CONSOLE_TYPES = {"serial": 1, "pv": 2, "vuart": 3}

_INT64_LIMIT = 1 << 63


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


class DomainsMixin(ConfigMixin, OperationsMixin):
    """
    Domain building and changes of a :class:`~txlibxl._libxl.binding.Ctx`.
    """

    # -- asynchronous ----------------------------------------------------

    def domain_create_new(self, config_json: str, op_id: int, console_user: int) -> None:
        """
        ``libxl_domain_create_new`` of the domain configuration C{config_json}
        (libxl's JSON for a ``libxl_domain_config``), asynchronous.

        Its console-available progress report comes as a
        ``DOMAIN_CREATE_CONSOLE_AVAILABLE`` event with
        ``for_user=console_user`` (through the event callback, in libxl's
        order, before the completion).  :meth:`finish_operation` gives the
        domid libxl wrote (``None`` if it made none): on ``ERROR_ABORTED``
        libxl leaves that half-built domain in place, on other failures it
        destroys it itself.

        :raises txlibxl.errors.InvalidConfiguration: libxl cannot read it.
        """
        call = "libxl_domain_create_new"
        check_uint64(call, "console_user", console_user, 1)
        kept = KeptArguments()
        try:
            config = self._from_json("domain_config", config_json, kept)
            domid = kept.keep(_ffi.new("uint32_t *", 0xFFFFFFFF))  # INVALID_DOMID
            progress = kept.keep(_ffi.new("libxl_asyncprogress_how *"))
            _lib.txl_progress_how_init(progress, console_user)
        except BaseException:
            kept.dispose()
            raise

        def read() -> Optional[int]:
            value = int(domid[0])
            return value if value < DOMID_FIRST_RESERVED else None

        kept.read_with(read)
        self._start_ao(
            call,
            op_id,
            lambda ctx, how: _lib.libxl_domain_create_new(ctx, config, domid, how, progress),
            kept,
        )

    def retrieve_domain_configuration(self, domid: int, op_id: int) -> None:
        """
        ``libxl_retrieve_domain_configuration`` of C{domid}, asynchronous
        (API 0x041400): :meth:`finish_operation` gives the configuration as
        libxl's JSON text.
        """
        call = "libxl_retrieve_domain_configuration"
        check_domid(call, domid)
        kept = KeptArguments()
        config = kept.keep(_ffi.new("libxl_domain_config *"), _lib.libxl_domain_config_dispose)
        _lib.libxl_domain_config_init(config)
        kept.read_with(lambda: self._to_json("domain_config", config))
        self._start_ao(
            call,
            op_id,
            lambda ctx, how: _lib.libxl_retrieve_domain_configuration(ctx, domid, config, how),
            kept,
        )

    def set_vcpuonline(self, domid: int, count: int, op_id: int) -> None:
        """
        ``libxl_set_vcpuonline``, asynchronous: vCPUs 0 .. C{count}-1 of
        C{domid} online, the others offline.
        """
        call = "libxl_set_vcpuonline"
        check_domid(call, domid)
        check_c_int(call, "count", count, 1, 1 << 16)
        ctx = self._enter(call)
        kept = KeptArguments()
        bitmap = kept.keep(_ffi.new("libxl_bitmap *"), _lib.libxl_bitmap_dispose)
        _lib.libxl_bitmap_init(bitmap)
        rc = _lib.txl_vcpu_bitmap(ctx, bitmap, count)
        if rc:
            kept.dispose()
            raise errors.from_code(rc, call, "cannot make the vCPU bitmap")
        self._start_ao(
            call, op_id, lambda ctx, how: _lib.libxl_set_vcpuonline(ctx, domid, bitmap, how), kept
        )

    # -- synchronous -----------------------------------------------------

    def set_memory_target(self, domid: int, target_kb: int, relative: bool, enforce: bool) -> None:
        """
        ``libxl_set_memory_target``: C{domid}'s balloon target to
        C{target_kb} KiB (added to the current one if C{relative}); with
        C{enforce}, its maximum memory too.
        """
        call = "libxl_set_memory_target"
        check_domid(call, domid)
        low = -_INT64_LIMIT if relative else 0
        if not is_int(target_kb) or not low <= target_kb < _INT64_LIMIT:
            raise errors.InvalidArgument(
                call=call, message=f"target_kb must be an int from {low} to 2**63-1, not {target_kb!r}"
            )
        ctx = self._enter(call)
        with LibxlSays() as said:
            rc = _lib.libxl_set_memory_target(ctx, domid, target_kb, int(bool(relative)), int(bool(enforce)))
        if rc:
            raise errors.from_code(rc, call, said.message())

    def get_memory_target(self, domid: int) -> int:
        """
        ``libxl_get_memory_target``: C{domid}'s balloon target, in KiB.
        """
        call = "libxl_get_memory_target"
        check_domid(call, domid)
        ctx = self._enter(call)
        out = _ffi.new("uint64_t *")
        with LibxlSays() as said:
            rc = _lib.libxl_get_memory_target(ctx, domid, out)
        if rc:
            raise errors.from_code(rc, call, said.message())
        return int(out[0])

    def domain_rename(self, domid: int, new_name: str, old_name: Optional[str] = None) -> None:
        """
        ``libxl_domain_rename``: C{domid} is called C{new_name} from now on
        (in one xenstore transaction, which checks that it is still called
        C{old_name} if one is given, and that no other domain has the name).
        """
        call = "libxl_domain_rename"
        check_domid(call, domid)
        new = check_text(call, "new_name", new_name)
        old = _ffi.NULL if old_name is None else check_text(call, "old_name", old_name)
        ctx = self._enter(call)
        with LibxlSays() as said:
            rc = _lib.libxl_domain_rename(ctx, domid, old, new)
        if rc:
            raise errors.from_code(rc, call, said.message())

    def console_get_tty(self, domid: int, number: int = 0, kind: str = "pv") -> str:
        """
        ``libxl_console_get_tty``: the tty of console C{number} of type
        C{kind} (``"pv"``, ``"serial"``, ``"vuart"``) of C{domid}.
        """
        call = "libxl_console_get_tty"
        check_domid(call, domid)
        check_c_int(call, "number", number, 0, 1 << 31)
        if kind not in CONSOLE_TYPES:
            raise errors.InvalidArgument(
                call=call, message=f"kind must be one of {sorted(CONSOLE_TYPES)}, not {kind!r}"
            )
        ctx = self._enter(call)
        out = _ffi.new("char **")
        with LibxlSays() as said:
            rc = _lib.libxl_console_get_tty(ctx, domid, number, CONSOLE_TYPES[kind], out)
        if rc:
            raise errors.from_code(rc, call, said.message())
        if out[0] == _ffi.NULL:
            raise errors.from_code(errors.ERROR_FAIL, call, "libxl returned no tty path")
        try:
            return _ffi.string(out[0]).decode("utf-8", "replace")
        finally:
            _lib.free(out[0])
