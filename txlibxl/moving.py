"""
Saving and restoring domains on a :class:`~txlibxl.context.Context`
(:class:`MovingMixin`): :meth:`~MovingMixin.save` a domain's state into
a file or a stream, :meth:`~MovingMixin.restore` a domain from a saved
file, :meth:`~MovingMixin.resume` a suspended one.  Live migration
between hosts is :mod:`txlibxl.migration`'s, built on these.

Every fd libxl reads or writes goes through the context's osevent hooks
(libxl's data copier, its save helper's pipes) and its helper child is
reaped through the loop: nothing blocks the reactor.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional, Tuple

from . import config as _config
from . import errors
from .building import BuildingMixin
from .events import ConsoleAvailable, ShutdownReason
from .operations import NEW_DOMAIN, _Operation

__all__ = ["MovingMixin", "SAVE_THEN"]

#: What :meth:`MovingMixin.save` does with the domain once it is saved.
SAVE_THEN = ("destroy", "resume", "keep")

Target = Any  # a path, a file object with fileno(), or an fd


def _open_fd(where: Any, writing: bool) -> Tuple[int, bool, Optional[str]]:
    """
    The fd of C{where} (a path, an object with ``fileno()``, or an fd),
    whether this call opened it (and must close it), and the path it
    created (a save's file, removed if the save fails).
    """
    if isinstance(where, bool):
        raise TypeError(f"a save target or restore source is a path, a file or an fd, not {where!r}")
    if isinstance(where, int):
        if where < 0:
            raise ValueError(f"an fd is not negative, got {where}")
        return where, False, None
    if isinstance(where, (str, bytes, os.PathLike)):
        path = os.fsdecode(where)
        if writing:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            return fd, True, path
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), True, None
    fileno = getattr(where, "fileno", None)
    if callable(fileno):
        flush = getattr(where, "flush", None)
        if writing and callable(flush):
            flush()  # what Python buffered goes first
        return int(fileno()), False, None
    raise TypeError(f"a save target or restore source is a path, a file or an fd, not {type(where).__name__}")


class MovingMixin(BuildingMixin):
    """
    Save, restore and resume.
    """

    def save(self, domid: int, target: Target, live: bool = False, then: str = "destroy") -> Any:
        """
        Save domain C{domid}'s state into C{target} (``libxl_domain_suspend``):
        libxl asks the guest to suspend, and its save helper writes the
        domain's memory and state as libxl's v2 stream.

        :param target: a path (created, or truncated, with mode 0600; the
            file is closed when the save ends, and removed if it fails), an
            open file object (flushed first; left open) or an fd (left
            open; any fd libxl can write: a file, a pipe, a socket).  The
            stream is written from the fd's current offset.
        :param live: ``LIBXL_SUSPEND_LIVE``: the memory is sent while the
            guest runs, then what it dirtied, in shrinking rounds, and the
            guest is suspended only for the last one.
        :param then: once saved: ``"destroy"`` the domain (as ``xl save``
            does), ``"resume"`` it (a checkpoint, as ``xl save -c``) or
            ``"keep"`` it suspended (resume it with :meth:`resume`).
        :returns: a Deferred that fires with ``None`` once the stream is
            complete and C{then} is done; or fails with the
            :class:`~txlibxl.errors.LibxlError` libxl reported (a guest that
            does not acknowledge the suspend request within libxl's 60
            seconds: ``GuestTimedOut``).  A failed save
            leaves the domain running: if the guest had suspended already,
            txlibxl resumes it before the Deferred fails.  Cancelling
            aborts libxl's save (``libxl_ao_abort``); the domain is left
            running, resumed if it had suspended, also when libxl finished
            the save in spite of the abort: once the ``settled`` Deferred
            of :class:`~txlibxl.operations.OperationCancelled` fires, the
            domain runs.
        """
        self._check_usable()
        if then not in SAVE_THEN:
            raise ValueError(f"then must be one of {SAVE_THEN}, not {then!r}")
        d = self._save(domid, target, live)
        if then == "keep":
            return d

        def done(_: Any) -> Any:
            if then == "destroy":
                return self._operation(
                    "libxl_domain_destroy", domid, lambda op: self._ctx.domain_destroy(domid, op.op_id)
                )
            return self.resume(domid)

        return self._tx.add_callbacks(d, done, None)

    def _save(self, domid: int, target: Target, live: bool) -> Any:
        """The suspend itself: fires once the stream is written, the domain
        left suspended; any failure or cancel leaves it running."""
        opened: list = []

        def start(op: _Operation) -> None:
            fd, close, created = _open_fd(target, writing=True)
            opened[:] = [fd, close, created]
            op.after = lambda rc, _value, answered: self._after_save(domid, rc, answered, fd, close, created)
            try:
                self._ctx.domain_suspend(domid, fd, bool(live), op.op_id)
            except BaseException:
                self._finish_fd(fd, close, created, failed=True)
                raise

        return self._operation("libxl_domain_suspend", domid, start)

    def _finish_fd(self, fd: int, close: bool, created: Optional[str], failed: bool) -> None:
        if close:
            os.close(fd)
        if failed and created is not None:
            try:
                os.unlink(created)
            except OSError:
                pass

    def _after_save(self, domid: int, rc: int, answered: bool, fd: int, close: bool,
                    created: Optional[str]) -> Any:
        """
        The end of a save: the fd closed (if ours), and the domain running
        again unless the caller got a complete save (a failed save whose
        guest had suspended, an aborted one, one libxl finished after its
        caller was told it was cancelled).
        """
        keep_suspended = rc == 0 and not answered
        self._finish_fd(fd, close, created, failed=not keep_suspended)
        if keep_suspended:
            return None
        return self._resume_if_suspended(domid, "a failed or cancelled save")

    def _resume_if_suspended(self, domid: int, why: str) -> Any:
        """Resume C{domid} if it is shut down for a suspend; a Deferred, or
        ``None`` if there is nothing to do."""
        if self._failure is not None or self._closed:
            return None
        try:
            info = self.domain_info(domid)
        except errors.TxlibxlError:
            return None
        if not (info.shutdown and info.shutdown_reason is ShutdownReason.SUSPEND):
            return None
        d = self._operation(
            "libxl_domain_resume", domid,
            lambda op: self._ctx.domain_resume(domid, op.op_id, True),
            internal=True,
        )
        return self._tx.add_callbacks(d, None, lambda f: self.log.failure(
            "resuming domain {domid} after {why}", failure=f, domid=domid, why=why))

    def resume(self, domid: int) -> Any:
        """
        Resume the suspended domain C{domid} (``libxl_domain_resume``,
        cooperatively: the guest goes on from its suspend call, as after a
        cancelled suspend).  A domain that is not suspended fails it with
        libxl's error.

        :returns: a Deferred that fires with ``None`` once the domain runs.
        """
        return self._operation(
            "libxl_domain_resume", domid, lambda op: self._ctx.domain_resume(domid, op.op_id, True)
        )

    def migrate(self, domid: int, endpoint: str, live: bool = True) -> Any:
        """
        Live-migrate domain C{domid} to the migration listener at
        C{endpoint} (a Twisted client endpoint string); with C{live}
        false, suspended for the whole transfer:
        :func:`txlibxl.migration.migrate`.
        """
        from .migration import migrate

        return migrate(self, domid, endpoint, live=live)

    def restore(
        self,
        config: Any,
        source: Target,
        on_console: Optional[Callable[[ConsoleAvailable], None]] = None,
    ) -> Any:
        """
        Create a domain from C{config} (as :meth:`create` takes it: the
        saved domain's configuration, e.g. :meth:`domain_config`'s before
        the save) and the saved state in C{source}
        (``libxl_domain_create_restore``, libxl's v2 stream).  The domain
        is left paused, as after :meth:`create`: :meth:`unpause` starts
        it.

        :param source: a path, an open file object or an fd, of a regular
            file, read from its current offset (closed at the end if this
            call opened it).  Its start is checked before libxl is called:
            an empty or truncated file, or one that is not a libxl v2
            stream, fails the Deferred with
            :class:`~txlibxl.streamhead.InvalidSaveStream` (libxl 4.17
            crashes on some of these).  A stream over a connection is what
            :mod:`txlibxl.migration` is for.
        :param on_console: as for :meth:`create`.
        :returns: a Deferred that fires with the new domid; or fails with
            the typed error (a truncated or corrupt stream: libxl's).  A
            failed restore leaves no domain behind, and neither does a
            cancelled one (cancelling aborts libxl's restore; txlibxl
            destroys what it left, before ``settled`` fires).
        """
        return self._restore(config, source, on_console)

    def _restore(self, config: Any, source: Target, on_console: Any = None,
                 head: Optional[bytes] = None) -> Any:
        """:meth:`restore`; with C{head}, C{source} is an fd whose start
        (C{head}) the caller has read and passes on through it."""
        self._check_usable()

        def start(op: _Operation) -> None:
            if on_console is not None and not callable(on_console):
                raise TypeError(f"on_console must be callable, not {on_console!r}")
            prepared = _config.with_uuid(config)
            text = _config.libxl_json("domain_config", prepared, self._ctx.json_round_trip)
            fd, close, _ = _open_fd(source, writing=False)
            op.uuid = _config.config_uuid(prepared)
            op.on_console = on_console

            def after(rc: int, domid: Optional[int], answered: bool) -> Any:
                if close:
                    os.close(fd)
                return self._after_create(op, rc, domid, answered)

            op.after = after
            op.progress_user = next(self._users)
            self._progress[op.progress_user] = op
            try:
                self._ctx.domain_create_restore(text, fd, op.op_id, op.progress_user, head)
            except BaseException:
                if close:
                    os.close(fd)
                raise

        return self._operation("libxl_domain_create_restore", NEW_DOMAIN, start, result=_domid)


def _domid(value: Optional[int]) -> int:
    if value is None:
        raise errors.from_code(errors.ERROR_FAIL, "libxl_domain_create_restore", "libxl reported no domid")
    return value

