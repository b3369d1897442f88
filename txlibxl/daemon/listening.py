"""
The daemon's listening sockets: :class:`ListeningService` binds one
Twisted endpoint (before privileges are shed and before any other service
starts) and reports a failure to bind as one line; ``unix:`` sockets are
private (mode 0600) unless their endpoint says otherwise.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, List, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["ListeningService", "private_unix_endpoint", "PRIVATE_SOCKET_MODE"]

_log = Logger(namespace="txlibxl.daemon.tap")


def _fail_by_logging(reason: str) -> None:
    _log.critical("{reason}", reason=reason)


#: The mode of a ``unix:`` listening socket whose endpoint gives none:
#: only the daemon's own user may connect.
PRIVATE_SOCKET_MODE = "600"


def _is_unix(description: str) -> bool:
    return description.split(":", 1)[0].strip().lower() == "unix"


def private_unix_endpoint(description: str) -> str:
    """
    C{description}, with ``mode=600`` added if it is a ``unix:`` endpoint
    that names no mode (Twisted's default is 0666: anyone on the host).
    """
    if not _is_unix(description):
        return description
    # Parameters are separated by unescaped colons (Twisted's endpoint syntax).
    params = re.split(r"(?<!\\):", description)[1:]
    if any(p.strip().startswith("mode=") for p in params):
        return description
    return f"{description}:mode={PRIVATE_SOCKET_MODE}"


class ListeningService(Service):
    """
    Listens with C{factory} on the endpoint C{description} while running;
    ``address`` is the bound address as an endpoint string
    (``tcp:127.0.0.1:8080``, ``unix:/run/x.sock``) once listening.

    It binds in ``privilegedStartService`` (before twistd sheds privileges
    with ``--uid``, and before any other service starts).  A failure to
    bind is given to C{on_failure} as one line.
    """

    #: What is served, for the log.
    what = "HTTP"
    #: How a bound TCP address is written.
    tcp_scheme = "tcp"

    def __init__(
        self,
        reactor: Any,
        description: str,
        factory: Any,
        on_failure: Callable[[str], None] = _fail_by_logging,
        group: Optional[int] = None,
    ) -> None:
        self._reactor = reactor
        self.description = description
        self._group = group
        self._factory = factory
        self._on_failure = on_failure
        self._port: Any = None
        self._binding: Optional[defer.Deferred] = None
        self.address: Optional[str] = None
        self._listening: List[defer.Deferred] = []

    def when_listening(self) -> defer.Deferred:
        """Fires with ``address`` once bound (fails if binding failed)."""
        if self.address is not None:
            return defer.succeed(self.address)
        d: defer.Deferred = defer.Deferred()
        self._listening.append(d)
        return d

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        self._listen()

    def endpoint(self) -> Any:
        """The server endpoint to listen on: C{description}'s."""
        from twisted.internet.endpoints import serverFromString

        return serverFromString(self._reactor, self.description)

    def _listen(self) -> None:
        if self._binding is not None:
            return
        # A unix socket is bound with the mode its endpoint gives, but
        # chmod'ed only after bind(): bind it under a umask that lets no one
        # else in meanwhile.
        previous = os.umask(0o177) if _is_unix(self.description) else None
        try:
            self._binding = self.endpoint().listen(self._factory)
        finally:
            if previous is not None:
                os.umask(previous)
        self._binding.addCallbacks(self._bound, self._failed)

    def _bound(self, port: Any) -> None:
        self._port = port
        host = port.getHost()
        if getattr(host, "type", None) in ("TCP", "TCP6"):
            self.address = f"{self.tcp_scheme}:{host.host}:{host.port}"
        else:
            path = getattr(host, "name", host)
            if isinstance(path, bytes):
                path = path.decode()
            self.address = f"unix:{path}"
            if self._group is not None:
                try:
                    os.chown(path, -1, self._group)
                except OSError as e:
                    self._port = None
                    port.stopListening()
                    self._failed(Failure(e))
                    return
        _log.info("libxl-events {what} listening on {address}", what=self.what, address=self.address)
        waiting, self._listening = self._listening, []
        for d in waiting:
            d.callback(self.address)

    def _failed(self, failure: Any) -> None:
        waiting, self._listening = self._listening, []
        for d in waiting:
            d.errback(failure)
        self._on_failure(f"cannot listen on {self.description}: {_reason(failure.value)}")

    def stopService(self) -> Any:
        super().stopService()
        self._binding = None
        port, self._port = self._port, None
        if port is not None:
            return port.stopListening()
        return None


def _reason(error: BaseException) -> str:
    """An exception as the end of one line: its message, or its type."""
    from twisted.internet.error import CannotListenError

    if isinstance(error, CannotListenError) and isinstance(error.socketError, BaseException):
        return _reason(error.socketError)
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
        if error.filename:
            text = f"{error.filename}: {text}"
        return text
    text = str(error).strip()
    # twisted.internet.error.CannotListenError: "Couldn't listen on any:8080: [Errno 98] ..."
    return text or type(error).__name__
