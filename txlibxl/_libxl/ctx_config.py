"""
Configurations as libxl's own JSON: :class:`ConfigMixin`, the part of
:class:`~txlibxl._libxl.binding.Ctx` that turns JSON text into libxl's
structs (``libxl_<type>_from_json``) and back (``libxl_<type>_to_json``),
and xl's disk spec strings into a disk (libxlutil's ``xlu_disk_parse``).

No struct's fields are written here: libxl's generated JSON code covers
its whole IDL (``libxl_types.idl``).  The types are ``domain_config``,
``device_disk`` and ``device_nic``.

Every struct is ``libxl_<type>_init``'d before it is filled and
``_dispose``'d on every path: at once when the conversion fails or the
caller only wanted the JSON back, or by the operation's
:class:`~txlibxl._libxl.kept.KeptArguments` when libxl keeps it.  A
refusal raises :class:`~txlibxl.errors.InvalidConfiguration` with
libxl's code and what libxl logged about it.
"""
from __future__ import annotations

import errno
from typing import Any, Dict, Optional, Tuple

from .. import errors
from . import native
from .capture import LibxlSays
from .checks import check_text
from .ctx_base import CtxBase
from .kept import KeptArguments

__all__ = ["ConfigMixin", "STRUCTS"]

_ffi: Any = None
_lib: Any = None

#: The libxl types that cross as JSON: name -> C type.
STRUCTS: Dict[str, str] = {
    "domain_config": "libxl_domain_config",
    "device_disk": "libxl_device_disk",
    "device_nic": "libxl_device_nic",
}

# name -> (init, dispose, from_json, to_json), once the module is loaded
_CALLS: Dict[str, Tuple[Any, Any, Any, Any]] = {}


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib
    for name, ctype in STRUCTS.items():
        _CALLS[name] = tuple(
            getattr(lib, f"{ctype}_{suffix}") for suffix in ("init", "dispose", "from_json", "to_json")
        )


def _struct(kind: str) -> Tuple[Any, Any, Any, Any]:
    if kind not in STRUCTS:
        raise errors.InvalidArgument(call="from_json", message=f"no libxl type {kind!r} crosses as JSON")
    return _CALLS[kind]


def _text(call: str, pointer: Any) -> str:
    """The malloc'd C string C{pointer} as text; freed."""
    if pointer == _ffi.NULL:
        raise errors.from_code(errors.ERROR_NOMEM, call, "libxl produced no JSON")
    try:
        return _ffi.string(pointer).decode("utf-8")
    finally:
        _lib.free(pointer)


class ConfigMixin(CtxBase):
    """
    JSON and disk spec conversions of a :class:`~txlibxl._libxl.binding.Ctx`.
    """

    # -- into C: structs owned by a KeptArguments ------------------------

    def _from_json(self, kind: str, text: str, kept: KeptArguments, quiet: bool = False) -> Any:
        """
        A new ``libxl_<kind>``, filled from JSON C{text} and kept (with its
        dispose) in C{kept}.  On a refusal nothing stays allocated in it
        that C{kept.dispose()} would not free.  C{quiet}: what libxl says
        goes into the error only, not to the log.
        """
        call = f"{STRUCTS[kind]}_from_json"
        init, dispose, from_json, _ = _struct(kind)
        encoded = check_text(call, "the JSON", text)
        ctx = self._enter(call)
        pointer = kept.keep(_ffi.new(f"{STRUCTS[kind]} *"), dispose)
        init(pointer)
        with LibxlSays(quiet) as said:
            rc = from_json(ctx, pointer, encoded)
        if rc:
            raise errors.InvalidConfiguration(
                rc, call, said.message(f"libxl cannot read this {kind} JSON")
            )
        return pointer

    def _disk_from_spec(self, spec: str, kept: KeptArguments) -> Any:
        """
        A new ``libxl_device_disk`` parsed from xl's disk spec C{spec}
        (``xlu_disk_parse``), kept in C{kept}.
        """
        call = "xlu_disk_parse"
        encoded = check_text(call, "the disk spec", spec)
        self._enter(call)
        disk = kept.keep(_ffi.new("libxl_device_disk *"), _lib.libxl_device_disk_dispose)
        _lib.libxl_device_disk_init(disk)
        report = _ffi.new("char **")
        rc = _lib.txl_disk_parse(encoded, disk, report)
        said: Optional[str] = None
        if report[0] != _ffi.NULL:
            try:
                said = _ffi.string(report[0]).decode("utf-8", "replace").strip() or None
            finally:
                _lib.free(report[0])
        if rc:
            # xlu_disk_parse returns an errno value: EINVAL for a bad spec.
            raise errors.InvalidConfiguration(
                errors.ERROR_NOMEM if rc == errno.ENOMEM else errors.ERROR_INVAL,
                call,
                said or f"libxlutil cannot parse the disk spec {spec!r} (errno {rc})",
            )
        return disk

    def _to_json(self, kind: str, pointer: Any, quiet: bool = False) -> str:
        """The JSON libxl writes for the ``libxl_<kind>`` at C{pointer} (C{quiet} as for L{_from_json})."""
        call = f"{STRUCTS[kind]}_to_json"
        to_json = _struct(kind)[3]
        ctx = self._enter(call)
        with LibxlSays(quiet) as said:
            out = to_json(ctx, pointer)
        if out == _ffi.NULL:
            raise errors.from_code(errors.ERROR_FAIL, call, said.message("libxl produced no JSON"))
        return _text(call, out)

    # -- round trips (nothing stays allocated) ---------------------------

    def json_round_trip(self, kind: str, text: str) -> str:
        """
        C{text} (libxl's JSON for a C{kind}: ``"domain_config"``,
        ``"device_disk"``, ``"device_nic"``) read by libxl and written back:
        what libxl keeps of it (keys it does not know, and values of the
        wrong JSON type, are gone; values equal to libxl's defaults are
        left out).  A check, not an action: when libxl cannot read it, its
        words go into the error and not to the log (txlibxl.config probes
        with values libxl is expected to refuse).

        :raises txlibxl.errors.InvalidConfiguration: libxl cannot read it.
        """
        kept = KeptArguments()
        try:
            return self._to_json(kind, self._from_json(kind, text, kept, quiet=True), quiet=True)
        finally:
            kept.dispose()

    def disk_spec_to_json(self, spec: str) -> str:
        """
        xl's disk spec string C{spec} (``"phy:/dev/vg/x,xvda,w"``, as in
        xl.cfg's ``disk=[...]``) parsed by libxlutil, as libxl's JSON for a
        ``libxl_device_disk``.

        :raises txlibxl.errors.InvalidConfiguration: libxlutil refused it
            (its report is the message).
        """
        kept = KeptArguments()
        try:
            return self._to_json("device_disk", self._disk_from_spec(spec, kept))
        finally:
            kept.dispose()
