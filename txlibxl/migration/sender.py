"""
The source side of a live migration: :func:`migrate`.

Its way (:mod:`txlibxl.migration.protocol` has the frames): connect, send
the domain's configuration, wait for the target to accept; save the
domain live (``LIBXL_SUSPEND_LIVE``) into a pipe whose other end is
relayed to the target; once libxl's stream is complete and the target has
restored the domain (paused), give permission; once the target reports
the domain running, destroy the source's copy.  Anything that fails
before the permission leaves the domain running on the source (a save
in flight is aborted; a suspended domain is resumed) and the target
destroys what it restored.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from twisted.internet import defer
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import errors
from . import protocol as p
from .errors import MigrationCancelled, MigrationFailed, MigrationIndeterminate, MigrationProtocolError

__all__ = ["migrate"]

_log = Logger()


class _Sender(p.FrameProtocol):
    """One migration's source end; :attr:`done` fires with the target's
    domid or fails with a :class:`~txlibxl.migration.errors.MigrationFailed`."""

    peer_side = "target"

    def __init__(self, ctx: Any, domid: int, config: Any, live: bool = True) -> None:
        self.live = live
        self.ctx = ctx
        self.domid = domid
        self.config = config
        self.done: defer.Deferred = defer.Deferred(lambda _: self.cancel())
        self.state = "connecting"
        self._save: Optional[defer.Deferred] = None
        self._pipe: Optional[p.PipeReader] = None
        self._saved = False
        self._stream_ended = False
        self._target_domid: Optional[int] = None

    # -- connection ----------------------------------------------------

    def connectionMade(self) -> None:
        self.state = "hello"
        self.send(p.HELLO, protocol=p.PROTOCOL, version=p.VERSION, config=self.config)

    def frameReceived(self, kind: bytes, payload: Any) -> None:
        if kind == p.ERROR:
            message = str(payload.get("message", "the target failed"))
            self._fail(MigrationFailed(f"the target failed: {message}", "target", payload.get("code")),
                       tell=False)
        elif kind == p.ACCEPT and self.state == "hello":
            if payload.get("version") != p.VERSION:
                self._fail(MigrationProtocolError(f"the target speaks version {payload.get('version')!r}",
                                                  "target"))
                return
            self._start_save()
        elif kind == p.READY and self.state == "streaming" and self._stream_ended:
            self._target_domid = payload.get("domid")
            self.state = "permitted"
            self.send(p.GO)
        elif kind == p.DONE and self.state == "permitted":
            self.state = "finishing"
            self._finish(payload.get("domid", self._target_domid))
        else:
            self._fail(MigrationProtocolError(f"frame {kind!r} out of turn ({self.state})", "target"))

    def protocolBroken(self, error: Exception) -> None:
        self._fail(error)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.state in ("finishing", "failed", "done"):
            return
        self._fail(MigrationFailed(f"the connection to the target was lost: {reason.getErrorMessage()}",
                                   "target"), tell=False)

    # -- the stream ----------------------------------------------------

    def _start_save(self) -> None:
        self.state = "streaming"
        r, w = os.pipe2(os.O_CLOEXEC)
        p.enlarge_pipe(w)
        self._write_end = w
        self._pipe = p.PipeReader(self.ctx._reactor, r, self._data, self._pipe_ended)
        self.transport.registerProducer(self._pipe, True)
        self._pipe.startReading()
        self._save = self.ctx._save(self.domid, w, self.live)

        def saved(_: Any) -> None:
            self._saved = True
            self._close_write_end()
            if self.state == "failed":  # finished in spite of an abort
                self.ctx._resume_if_suspended(self.domid, "a failed migration")

        def failed(f: Failure) -> None:
            settled = getattr(f.value, "settled", None)
            if settled is not None:
                # Cancelled: libxl has the fd until the save settles (it
                # restores the fd's flags at the end).
                self._settled = settled
                settled.addBoth(lambda result: (self._close_write_end(), result)[1])
            else:
                self._close_write_end()
            if self.state not in ("failed", "done"):
                code = f.value.code if isinstance(f.value, errors.LibxlError) else None
                self._fail(MigrationFailed(f"the save failed: {f.getErrorMessage()}", "source", code))

        self._save.addCallbacks(saved, failed)

    def _close_write_end(self) -> None:
        w, self._write_end = getattr(self, "_write_end", -1), -1
        if w >= 0:
            os.close(w)

    def _data(self, data: bytes) -> None:
        # One frame per read of the pipe (at most PIPE_SIZE, below
        # MAX_DATA), its header written beside it rather than joined to it.
        self.transport.writeSequence([p.header(p.DATA, len(data)), data])

    def _pipe_ended(self, reason: Failure) -> None:
        self._pipe = None
        if self.transport is not None:
            self.transport.unregisterProducer()
        if self._saved and self.state == "streaming":
            self._stream_ended = True
            self.send(p.END)

    # -- the end ---------------------------------------------------------

    def cancel(self) -> None:
        """The caller cancelled: before the permission, stop and leave the
        domain running; after it, the migration completes regardless."""
        if self.state in ("permitted", "finishing", "done", "failed"):
            return
        self._fail(MigrationCancelled("the migration was cancelled on the source", "source"))

    def _fail(self, error: Exception, tell: bool = True) -> None:
        """
        Stop: the target told (unless it is the one that failed), the
        connection closed, the domain running on the source again (unless
        the permission was given and the target did not report a failure:
        then it stays suspended), and :attr:`done` failed with C{error}.
        A cancel fails it at once, with ``settled`` firing once the domain
        runs again; any other failure once it does.
        """
        if self.state in ("failed", "done", "finishing"):
            return
        permitted = self.state == "permitted"
        _log.info("a migration of domain {domid} failed ({state}): {error}", domid=self.domid,
                  state=self.state, error=error)
        self.state = "failed"
        if tell and self.transport is not None:
            code = getattr(error, "code", errors.ERROR_FAIL)
            self.send(p.ERROR, message=str(getattr(error, "message", error)), code=code)
        if self.transport is not None:
            self.transport.loseConnection()
        target_failed = not tell and isinstance(error, MigrationFailed) and error.side == "target" \
            and not isinstance(error, MigrationProtocolError) and "connection" not in error.message
        if permitted and not target_failed:
            error = MigrationIndeterminate(
                f"after the permission, before the target reported: {getattr(error, 'message', error)}",
                "target")
            undo: defer.Deferred = defer.succeed(None)
        else:
            undo = self._undo()
        if isinstance(error, MigrationCancelled):
            error.settled = undo
            self.done.errback(Failure(error))
            return

        def deliver(_: Any) -> None:
            if not self.done.called:
                self.done.errback(Failure(error))

        undo.addBoth(deliver)

    def _undo(self) -> defer.Deferred:
        """The domain running on the source again: a save in flight
        aborted (which resumes the domain), or a completed save's domain
        resumed."""
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            pipe.stopReading()
            pipe.connectionLost(Failure(MigrationFailed("stopped", "source")))
        save = self._save
        if save is not None and not save.called:
            save.cancel()
            settled = getattr(self, "_settled", None)
            if settled is not None:
                return settled
        d = self.ctx._resume_if_suspended(self.domid, "a failed migration")
        return d if d is not None else defer.succeed(None)

    def _finish(self, target_domid: Optional[int]) -> None:
        d = self.ctx.destroy(self.domid)

        def destroyed(_: Any) -> None:
            self.state = "done"
            if self.transport is not None:
                self.transport.loseConnection()
            self.done.callback(target_domid)

        def not_destroyed(f: Failure) -> None:
            self.state = "done"
            self.done.errback(f)

        d.addCallbacks(destroyed, not_destroyed)


def migrate(ctx: Any, domid: int, endpoint: str, reactor: Any = None, live: bool = True) -> defer.Deferred:
    """
    Live-migrate domain C{domid} of C{ctx} to the migration listener at
    C{endpoint}, a Twisted client endpoint string (``unix:path=...``,
    ``tcp:host=...:port=...``, ``ssl:host=...:port=...:certKey=...:privateKey=...:caCertsDir=...``).
    With C{live} false, the domain is suspended first and stays so while
    its whole memory is sent (a hypervisor that cannot track a guest's
    dirty pages, such as one built without shadow paging for PV guests,
    can only migrate it so).

    :returns: a Deferred that fires with the domain's domid on the target
        once it runs there and the source's copy is destroyed; or fails
        with a :class:`~txlibxl.migration.errors.MigrationFailed` (the
        domain runs on the source, nothing is left on the target), or
        :class:`~txlibxl.migration.errors.MigrationIndeterminate` (the
        connection was lost after the permission: the source's copy is
        kept suspended).  Cancelling it before the permission fails it
        with :class:`~txlibxl.migration.errors.MigrationCancelled` once
        the domain runs on the source again; after the permission the
        migration completes regardless.
    """
    if reactor is None:
        reactor = ctx._reactor
    if not isinstance(endpoint, str):
        raise TypeError(f"endpoint is a Twisted endpoint string, not {type(endpoint).__name__}")
    point = clientFromString(reactor, endpoint)

    @defer.inlineCallbacks
    def start() -> Any:
        config = yield ctx.domain_config(domid)
        proto = _Sender(ctx, domid, config, live)
        yield point.connect(Factory.forProtocol(lambda: proto))
        value = yield proto.done
        return value

    def failed(f: Failure) -> Any:
        if f.check(errors.TxlibxlError):
            return f
        if f.check(defer.CancelledError):
            cancelled = MigrationCancelled("the migration was cancelled on the source", "source")
            cancelled.settled = defer.succeed(None)
            return Failure(cancelled)
        return Failure(MigrationFailed(f"cannot reach the target: {f.getErrorMessage()}", "target"))

    return start().addErrback(failed)
