"""
The target side of a live migration: :func:`listen_for_migrations` and
the :class:`MigrationListener` it gives.

Only two kinds of listener are offered, both authenticated: a unix socket
(mode 0600: only this user, root for a toolstack, can connect), and TLS
that requires a client certificate signed by the configured authority.
Plain TCP is refused unless asked for by name (``allow_plain_tcp``).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional, Set, Tuple

from twisted.internet import defer
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint, UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import errors
from ..streamhead import HEAD_SIZE, InvalidSaveStream, refusal
from . import protocol as p
from .errors import MigrationCancelled, MigrationFailed

_log = Logger()

#: The end of the temporary name of a domain migrated into a host that has
#: a domain of its name (the source, migrating to its own host).
INCOMING = "--incoming"

#: How long a migration that failed here waits, after telling the source,
#: for the source to close the connection.
LINGER_S = 10.0

__all__ = ["MigrationListener", "listen_for_migrations", "migration_endpoint", "tls_server_options"]


class _Receiver(p.FrameProtocol):
    """One incoming migration."""

    peer_side = "source"

    def __init__(self, listener: "MigrationListener") -> None:
        self.listener = listener
        self.ctx = listener.context()
        self.state = "hello"
        self.config: Any = None
        self.domid: Optional[int] = None
        self._head = b""
        self._pipe: Optional[p.PipeWriter] = None
        self._read_end = -1
        self._restore: Optional[defer.Deferred] = None
        #: (the domid holding the domain's name here, the name), when the
        #: domain is restored under a temporary name (see _start_restore).
        self._renaming: Optional[Tuple[int, str]] = None
        #: After a failure told to the source: the end of the wait for it to close.
        self._linger: Any = None

    def connectionMade(self) -> None:
        self.listener._incoming.add(self)
        if self.ctx is None:
            self._fail(MigrationFailed("the target has no libxl context open", "target", errors.ERROR_FAIL))

    def frameReceived(self, kind: bytes, payload: Any) -> None:
        if kind == p.ERROR:
            self._fail(MigrationFailed(f"the source failed: {payload.get('message')}", "source",
                                       payload.get("code")), tell=False)
        elif kind == p.HELLO and self.state == "hello":
            if payload.get("protocol") != p.PROTOCOL or payload.get("version") != p.VERSION \
                    or not isinstance(payload.get("config"), dict):
                self._fail(MigrationFailed(
                    f"unsupported: {payload.get('protocol')!r} version {payload.get('version')!r}", "target"))
                return
            self.config = payload["config"]
            self.state = "head"
            self.send(p.ACCEPT, version=p.VERSION)
        elif kind == p.DATA and self.state == "head":
            self._head += payload
            if len(self._head) >= HEAD_SIZE:
                self._start_restore()
        elif kind == p.DATA and self.state == "streaming":
            self._pipe.write(payload)
        elif kind == p.END and self.state in ("head", "streaming"):
            if self.state == "head":
                self._fail(InvalidSaveStream(refusal(self._head) or "truncated libxl header"))
                return
            self.state = "restoring"
            self._pipe.unregisterProducer()  # else closing the pipe closes the connection
            # The pipe may have paused the connection (full) while this
            # chunk's frames were parsed: unregistered, it would never
            # resume it, and the permission would never be read.
            self.transport.resumeProducing()
            self._pipe.loseConnection()
        elif kind == p.GO and self.state == "ready":
            self.state = "running"
            self._go()
        else:
            self._fail(MigrationFailed(f"frame {kind!r} out of turn ({self.state})", "target"))

    def protocolBroken(self, error: Exception) -> None:
        self._fail(error)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.listener._incoming.discard(self)
        self._end_linger()
        if self.state not in ("done", "failed"):
            self._fail(MigrationFailed(f"the connection to the source was lost: {reason.getErrorMessage()}",
                                       "source"), tell=False)

    # -- restore -------------------------------------------------------

    def _start_restore(self) -> None:
        head, self._head = self._head, b""
        reason = refusal(head)
        if reason is not None:
            self._fail(InvalidSaveStream(reason))
            return
        r, w = os.pipe2(os.O_CLOEXEC)
        p.enlarge_pipe(w)
        self._read_end = r
        # The checked start goes into the empty pipe at once (it is far
        # below PIPE_BUF, so it is written whole): however soon the
        # migration fails, libxl reads at least that, never a stream cut
        # inside its first records (which libxl 4.17 crashes on).
        first = head[:HEAD_SIZE]
        os.write(w, first)
        self._pipe = p.PipeWriter(self.ctx._reactor, w, self._pipe_lost)
        self._pipe.registerProducer(self.transport, True)
        self.state = "streaming"
        if len(head) > HEAD_SIZE:
            self._pipe.write(head[HEAD_SIZE:])
        self._restore = self.ctx._restore(self._config_here(), r, head=head[:HEAD_SIZE])
        self._restore.addCallbacks(self._restored, self._restore_failed)

    def _config_here(self) -> Any:
        """
        The configuration to restore on this host.  A domain of this host
        with the same name (the source itself, migrating to its own host,
        as ``xl migrate localhost``) would make libxl refuse the restore:
        the domain is restored as ``NAME--incoming`` and renamed once that
        domain is gone (the source destroys it after *done*).
        """
        name = (self.config.get("c_info") or {}).get("name")
        if not name:
            return self.config
        try:
            holder = self.ctx.name_to_domid(name)
        except errors.LibxlError:
            return self.config
        self._renaming = (holder, name)
        config = dict(self.config, c_info=dict(self.config["c_info"], name=name + INCOMING))
        return config

    def _pipe_lost(self, reason: Failure) -> None:
        self._pipe = None

    def _close_read_end(self) -> None:
        r, self._read_end = self._read_end, -1
        if r >= 0:
            os.close(r)

    def _restored(self, domid: int) -> None:
        self._close_read_end()
        self.domid = domid
        if self.state == "failed":
            self._destroy()
            return
        self.state = "ready"
        self.send(p.READY, domid=domid)

    def _restore_failed(self, f: Failure) -> None:
        settled = getattr(f.value, "settled", None)
        if settled is not None:  # cancelled: libxl reads the pipe until it settles
            settled.addBoth(lambda _: self._close_read_end())
        else:
            self._close_read_end()
        if self.state == "failed":
            return
        code = f.value.code if isinstance(f.value, errors.LibxlError) else None
        self._fail(MigrationFailed(f"the restore failed: {f.getErrorMessage()}", "target", code))

    @defer.inlineCallbacks
    def _go(self) -> Any:
        try:
            yield self.ctx.unpause(self.domid)
        except Exception as e:
            self._fail(MigrationFailed(f"cannot unpause the restored domain: {e}", "target"))
            return
        if self._renaming is not None:
            holder, name = self._renaming
            watch = self.ctx.watch_domain(holder)
        self.state = "done"
        self.send(p.DONE, domid=self.domid)
        if self._renaming is not None:
            try:
                yield watch.when_dead()
                self.ctx.rename(self.domid, name, name + INCOMING)
            except Exception as e:
                _log.warn("the migrated domain {domid} keeps its name {name!r}: {error}",
                          domid=self.domid, name=name + INCOMING, error=e)
            finally:
                watch.cancel()
        self.listener._arrived(self.domid, self.config)

    # -- the end ---------------------------------------------------------

    def _end_linger(self) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()

    def _abort(self) -> None:
        """Close the connection now, whatever is under way on it."""
        self._end_linger()
        if self.transport is not None:
            self.transport.abortConnection()

    def cancel(self) -> None:
        """Stop this migration, unless the domain runs here already."""
        if self.state in ("running", "done", "failed"):
            return
        self._fail(MigrationCancelled("the migration was cancelled on the target", "target"))

    def _fail(self, error: Exception, tell: bool = True) -> None:
        if self.state in ("done", "failed"):
            return
        _log.info("an incoming migration failed ({state}): {error}", state=self.state, error=error)
        self.state = "failed"
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            pipe.unregisterProducer()
            pipe.stopWriting()
            pipe.connectionLost(Failure(error))
        if self.transport is not None and tell:
            self.send(p.ERROR, message=str(getattr(error, "message", error)),
                      code=getattr(error, "code", errors.ERROR_FAIL))
            # Closing now, under the stream the source is still sending,
            # could reset the connection before the source read the error
            # (its write fails first).  The source closes once it has read
            # it; until then what it sends is read and dropped, for at
            # most LINGER_S.
            self.transport.resumeProducing()
            self._linger = self.listener.clock.callLater(LINGER_S, self._abort)
        elif self.transport is not None:
            self.transport.loseConnection()
        # A restore under way is not aborted (libxl 4.17 was seen to call
        # through a null pointer in libxl_ao_abort of a restore whose pipe
        # had just been closed): its stream ends instead, the pipe being
        # closed above, so libxl fails the restore and destroys the
        # half-built domain; one that completes all the same is destroyed
        # in _restored.
        if self.domid is not None and (self._restore is None or self._restore.called):
            self._destroy()
        self.listener._failed(error)

    def _destroy(self) -> None:
        d = self.ctx.destroy(self.domid)
        d.addErrback(lambda f: self.ctx.log.failure("destroying a failed migration's domain", failure=f))


class MigrationListener:
    """
    Accepts migrations into C{ctx}: each arriving domain runs once its
    source gave permission; C{on_arrival(domid, config)} is called then,
    C{on_failure(error)} for each migration that failed here.

    C{ctx} is the Context migrations go into; or, if it is ``None``,
    C{current()} gives the Context of the moment (a service whose Context
    is reopened after a failure), and a migration that comes while it
    gives ``None`` is refused.

    C{clock} (default: the global reactor) times how long a migration
    that failed here keeps its connection open for the source to read why.

    :ivar port: the listening port.
    """

    def __init__(self, ctx: Any, on_arrival: Optional[Callable[[int, Any], None]] = None,
                 on_failure: Optional[Callable[[Exception], None]] = None, *,
                 current: Optional[Callable[[], Any]] = None, clock: Any = None) -> None:
        if (ctx is None) == (current is None):
            raise ValueError("give exactly one of a Context and current")
        if clock is None:
            from twisted.internet import reactor as clock
        #: The clock of a failed migration's wait for its source to close.
        self.clock = clock
        self.ctx = ctx
        self._current = current
        self.port: Any = None
        self._on_arrival = on_arrival
        self._on_failure = on_failure
        self._incoming: Set[_Receiver] = set()

    def context(self) -> Any:
        """The Context an incoming migration goes into now, or ``None``."""
        return self.ctx if self._current is None else self._current()

    def factory(self) -> Factory:
        """The factory of the protocol that receives one migration each."""
        return Factory.forProtocol(lambda: _Receiver(self))

    def listen(self, endpoint: Any) -> defer.Deferred:
        """Listen on C{endpoint} (one from :func:`migration_endpoint`):
        fires with this listener once listening."""

        def listening(port: Any) -> "MigrationListener":
            self.port = port
            return self

        return endpoint.listen(self.factory()).addCallback(listening)

    @property
    def incoming(self) -> int:
        """How many migrations are under way into this host."""
        return len(self._incoming)

    def cancel_incoming(self) -> None:
        """Cancel every migration under way that has not been permitted."""
        for receiver in list(self._incoming):
            receiver.cancel()

    def stop(self) -> defer.Deferred:
        """
        Stop listening and cancel the migrations under way; the
        connections of those that failed are closed at once (a source
        may then see the connection lost rather than the failure).
        """
        self.cancel_incoming()
        for receiver in list(self._incoming):
            if receiver.state == "failed":
                receiver._abort()
        return defer.maybeDeferred(self.port.stopListening)

    def _arrived(self, domid: int, config: Any) -> None:
        if self._on_arrival is not None:
            self._on_arrival(domid, config)

    def _failed(self, error: Exception) -> None:
        if self._on_failure is not None:
            self._on_failure(error)


def tls_server_options(certificate: str, private_key: str, client_ca: str) -> Any:
    """
    TLS options that present C{certificate} (PEM file; C{private_key} its
    key) and require a client certificate signed by the authority in
    C{client_ca} (PEM file): a peer without one fails the handshake.
    """
    from twisted.internet import ssl

    with open(certificate, "rb") as f:
        cert = f.read()
    with open(private_key, "rb") as f:
        key = f.read()
    with open(client_ca, "rb") as f:
        ca = ssl.Certificate.loadPEM(f.read())
    server = ssl.PrivateCertificate.loadPEM(cert + b"\n" + key)
    return server.options(ca)


def listen_for_migrations(
    ctx: Any,
    unix: Optional[str] = None,
    tls: Any = None,
    port: int = 0,
    interface: str = "127.0.0.1",
    allow_plain_tcp: bool = False,
    on_arrival: Optional[Callable[[int, Any], None]] = None,
    on_failure: Optional[Callable[[Exception], None]] = None,
) -> defer.Deferred:
    """
    Listen for migrations into C{ctx}: on the unix socket at path C{unix}
    (created with mode 0600), or with C{tls} (options from
    :func:`tls_server_options`, which require a client certificate) on
    C{interface}:C{port} (0: any free port).  Plain TCP on
    C{interface}:C{port} only with C{allow_plain_tcp} (anyone who can
    connect can then send a domain).

    :returns: a Deferred firing with the :class:`MigrationListener`.
    :raises ValueError: not exactly one kind of listener asked for.
    """
    endpoint = migration_endpoint(ctx._reactor, unix, tls, port, interface, allow_plain_tcp)
    return MigrationListener(ctx, on_arrival, on_failure, clock=ctx._reactor).listen(endpoint)


def migration_endpoint(
    reactor: Any,
    unix: Optional[str] = None,
    tls: Any = None,
    port: int = 0,
    interface: str = "127.0.0.1",
    allow_plain_tcp: bool = False,
) -> Any:
    """
    The server endpoint a migration listener listens on, with the rules
    of :func:`listen_for_migrations` (whose arguments these are).

    :raises ValueError: not exactly one kind of listener asked for.
    """
    kinds = [unix is not None, tls is not None, allow_plain_tcp]
    if sum(kinds) != 1:
        raise ValueError("listen on exactly one of: a unix socket, TLS, or (allow_plain_tcp) plain TCP")
    if unix is not None:
        return UNIXServerEndpoint(reactor, unix, mode=0o600)
    if tls is not None:
        return SSL4ServerEndpoint(reactor, port, tls, interface=interface)
    return TCP4ServerEndpoint(reactor, port, interface=interface)
