"""
Saving, restoring and resuming domains: :class:`MovingMixin`, the part of
:class:`~txlibxl._libxl.binding.Ctx` that starts ``libxl_domain_suspend``,
``libxl_domain_create_restore`` and ``libxl_domain_resume``.

The stream fds are the caller's: libxl reads or writes them (and hands
them to its save helper) until the operation completes, and never closes
them.  Two libxl 4.17 crash traps are guarded here:
``libxl_domain_restore_params.stream_version`` is always 2 (libxl's
default, 1, makes it exec the absent ``convert-legacy-stream`` and jump to
NULL), and a restore stream whose start is not a libxl v2 stream's
(:mod:`txlibxl.streamhead`) is refused before libxl sees it.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Optional

from .. import errors
from .. import streamhead
from . import native
from .checks import check_c_int, check_domid, check_uint64
from .constants import DOMID_FIRST_RESERVED
from .ctx_config import ConfigMixin
from .ctx_operations import OperationsMixin
from .kept import KeptArguments

__all__ = ["MovingMixin"]

_ffi: Any = None
_lib: Any = None

#: libxl_domain_restore_params.stream_version: libxl's v2 stream.
_STREAM_V2 = 2
#: LIBXL_CHECKPOINTED_STREAM_NONE: a plain save, not Remus or COLO.
_CHECKPOINTED_NONE = 0


@native.on_load
def _bind(ffi: Any, lib: Any) -> None:
    global _ffi, _lib
    _ffi, _lib = ffi, lib


def _check_fd(call: str, fd: int) -> None:
    check_c_int(call, "fd", fd, 0, 1 << 31)
    try:
        os.fstat(fd)
    except OSError as e:
        raise errors.InvalidArgument(call=call, message=f"fd {fd} is not open: {e.strerror}") from None


def read_head(fd: int) -> bytes:
    """
    The first :data:`~txlibxl.streamhead.HEAD_SIZE` octets of the regular
    file open on C{fd}, from its current offset, without moving it.

    :raises txlibxl.streamhead.InvalidSaveStream: C{fd} is not a regular
        file (its start cannot be read ahead).
    """
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise streamhead.InvalidSaveStream("not a regular file (its start cannot be checked ahead)")
    return os.pread(fd, streamhead.HEAD_SIZE, os.lseek(fd, 0, os.SEEK_CUR))


class MovingMixin(ConfigMixin, OperationsMixin):
    """
    Save, restore and resume of a :class:`~txlibxl._libxl.binding.Ctx`.
    """

    def domain_suspend(self, domid: int, fd: int, live: bool, op_id: int) -> None:
        """
        ``libxl_domain_suspend`` of C{domid} into C{fd}, asynchronous; with
        C{live}, ``LIBXL_SUSPEND_LIVE`` (memory is sent while the guest
        runs, then the dirty pages).  On success the domain is left shut
        down (suspended); on failure libxl leaves it as it got (running, or
        suspended if it failed after the guest suspended: resume it).
        """
        call = "libxl_domain_suspend"
        check_domid(call, domid)
        _check_fd(call, fd)
        flags = _lib.LIBXL_SUSPEND_LIVE if live else 0
        self._start_ao(call, op_id, lambda ctx, how: _lib.libxl_domain_suspend(ctx, domid, fd, flags, how))

    def domain_resume(self, domid: int, op_id: int, cooperative: bool = True) -> None:
        """
        ``libxl_domain_resume`` of the suspended C{domid}, asynchronous;
        C{cooperative} is libxl's ``suspend_cancel`` (the guest goes on
        from its suspend call, as after a cancelled suspend).
        """
        self._start(
            "libxl_domain_resume",
            lambda ctx, domid, how: _lib.libxl_domain_resume(ctx, domid, int(bool(cooperative)), how),
            domid,
            op_id,
        )

    def domain_create_restore(
        self,
        config_json: str,
        fd: int,
        op_id: int,
        console_user: int,
        head: Optional[bytes] = None,
    ) -> None:
        """
        ``libxl_domain_create_restore`` of the domain configuration
        C{config_json} from the stream on C{fd}, asynchronous, with
        ``stream_version`` 2.  The domain is left paused.
        :meth:`finish_operation` gives the domid (``None`` if libxl made
        none); the console report is as for :meth:`domain_create_new`.

        The stream's start is checked first: read ahead from C{fd}, which
        must then be a regular file, or C{head}, what the caller read of it
        before (a pipe it fills, having checked what it passes on).

        :raises txlibxl.streamhead.InvalidSaveStream: the stream is empty,
            truncated or not libxl's; libxl was not called.
        """
        call = "libxl_domain_create_restore"
        check_uint64(call, "console_user", console_user, 1)
        _check_fd(call, fd)
        streamhead.check(read_head(fd) if head is None else head)
        kept = KeptArguments()
        try:
            config = self._from_json("domain_config", config_json, kept)
            domid = kept.keep(_ffi.new("uint32_t *", 0xFFFFFFFF))  # INVALID_DOMID
            params = kept.keep(
                _ffi.new("libxl_domain_restore_params *"), _lib.libxl_domain_restore_params_dispose
            )
            _lib.libxl_domain_restore_params_init(params)
            params.stream_version = _STREAM_V2
            params.checkpointed_stream = _CHECKPOINTED_NONE
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
            lambda ctx, how: _lib.libxl_domain_create_restore(ctx, config, domid, fd, -1, params, how, progress),
            kept,
        )
