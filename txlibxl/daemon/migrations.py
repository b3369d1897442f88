"""
``twistd libxl-events --accept-migrations ENDPOINT``: the daemon as the
target of live migrations (:mod:`txlibxl.migration`), into the Context
its events service has open.

Only the two authenticated kinds of listener are accepted:

``unix:PATH`` (or ``unix:path=PATH``)
    A unix socket created with mode 0600: only the daemon's own user
    (root, on a Xen host) can connect.  An endpoint that asks for another
    mode is refused.
``tls:PORT[:interface=ADDRESS]``
    TLS on ``ADDRESS`` (default ``127.0.0.1``), presenting
    ``--migration-cert`` (its key ``--migration-key``) and requiring a
    client certificate signed by the authority in ``--migration-ca``; all
    three must be given.

Anything else (plain ``tcp:``, Twisted's ``ssl:`` that requires no client
certificate) is a usage error, as are TLS files given without a ``tls:``
endpoint.  The listener binds before the simulated host starts or libxl
opens, so that a path or port that cannot be bound ends start-up with one
line and a non-zero status.  A migration arriving while the daemon has no
Context open (recovering from a lost libxl session) is refused, the
domain staying on its source; a stop cancels the migrations under way.
An arrived domain is published like any other: a ``new`` with the uuid
it had on its source.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

from twisted.logger import Logger
from twisted.python import usage

from .startup import StartupError
from .listening import ListeningService

__all__ = ["MIGRATION_PARAMETERS", "MigrationSpec", "check_migration_options", "MigrationListeningService",
           "make_migration_service"]

_log = Logger(namespace="txlibxl.daemon.migrations")

#: The options this module adds to ``twistd libxl-events``.
MIGRATION_PARAMETERS: List[List[Any]] = [
    ["accept-migrations", None, None,
     "Accept live migrations into this host on this endpoint: unix:PATH (mode 0600) or "
     "tls:PORT[:interface=ADDRESS] (with --migration-cert, --migration-key and --migration-ca)."],
    ["migration-cert", None, None, "With a tls: --accept-migrations: this host's certificate (PEM)."],
    ["migration-key", None, None, "With a tls: --accept-migrations: the certificate's private key (PEM)."],
    ["migration-ca", None, None,
     "With a tls: --accept-migrations: the authority (PEM) that must have signed every source's certificate."],
]

_TLS_FILES = ("migration-cert", "migration-key", "migration-ca")


class MigrationSpec:
    """
    A checked ``--accept-migrations``: C{kind} ``"unix"`` with C{path},
    or ``"tls"`` with C{port} and C{interface}.
    """

    def __init__(self, kind: str, path: Optional[str] = None, port: int = 0, interface: str = "127.0.0.1") -> None:
        self.kind = kind
        self.path = path
        self.port = port
        self.interface = interface

    @classmethod
    def parse(cls, description: str) -> "MigrationSpec":
        """
        :raises ValueError: C{description} is not a ``unix:`` or ``tls:``
            endpoint this module accepts (the message says why).
        """
        kind, _, rest = description.partition(":")
        kind = kind.strip().lower()
        params = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", rest)] if rest else []
        if kind == "unix":
            path = None
            for param in params:
                key, eq, value = param.partition("=")
                if eq and key == "path":
                    path = value
                elif eq and key == "mode":
                    if value.strip() not in ("600", "0600", "0o600"):
                        raise ValueError(f"a migration socket is mode 0600 (only this user connects), not {value}")
                elif not eq and path is None:
                    path = param
                else:
                    raise ValueError(f"unknown parameter {param!r}")
            if not path:
                raise ValueError("unix: needs a path")
            return cls("unix", path=path)
        if kind == "tls":
            port: Optional[int] = None
            interface = "127.0.0.1"
            for param in params:
                key, eq, value = param.partition("=")
                if eq and key == "interface":
                    interface = value
                elif eq and key == "port" or not eq and port is None:
                    text = value if eq else param
                    if not text.isdigit() or int(text) > 65535:
                        raise ValueError(f"the port must be a number from 0 to 65535, not {text!r}")
                    port = int(text)
                else:
                    raise ValueError(f"unknown parameter {param!r}")
            if port is None:
                raise ValueError("tls: needs a port")
            return cls("tls", port=port, interface=interface)
        if kind in ("tcp", "tcp6"):
            raise ValueError("plain TCP is refused (anyone who can connect could send a domain): "
                             "use unix:PATH, or tls:PORT with --migration-cert, --migration-key and --migration-ca")
        if kind == "ssl":
            raise ValueError("ssl: requires no client certificate: use tls:PORT with --migration-ca")
        raise ValueError("use unix:PATH, or tls:PORT[:interface=ADDRESS]")

    def describe(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"tls:{self.interface}:{self.port}"


def check_migration_options(options: Dict[str, Any]) -> None:
    """
    Check the migration options of C{options} (``postOptions``); sets
    ``options["migration-spec"]`` (a :class:`MigrationSpec` or ``None``).
    What the module docstring refuses raises twisted's ``UsageError``.
    """
    options["migration-spec"] = None
    description = options.get("accept-migrations")
    given = [name for name in _TLS_FILES if options.get(name) is not None]
    if description is None:
        if given:
            raise usage.UsageError(f"--{given[0]} needs --accept-migrations tls:PORT")
        return
    try:
        spec = MigrationSpec.parse(description)
    except ValueError as e:
        raise usage.UsageError(f"--accept-migrations {description!r}: {e}")
    if spec.kind == "tls":
        missing = [name for name in _TLS_FILES if options.get(name) is None]
        if missing:
            raise usage.UsageError(f"--accept-migrations {description!r} needs " +
                                   ", ".join(f"--{name}" for name in missing))
    elif given:
        raise usage.UsageError(f"--{given[0]} is for a tls: --accept-migrations, not {description!r}")
    options["migration-spec"] = spec


def _tls_options(options: Dict[str, Any]) -> Any:
    """The TLS options of the listener.

    :raises StartupError: a file cannot be read, or is not what it should be.
    """
    from txlibxl.migration import tls_server_options

    try:
        return tls_server_options(options["migration-cert"], options["migration-key"], options["migration-ca"])
    except OSError as e:
        raise StartupError(f"--accept-migrations: cannot read {e.filename!r}: {e.strerror or e}") from None
    except Exception as e:  # OpenSSL's errors: a file that is not a PEM certificate or key
        raise StartupError(f"--accept-migrations: the certificate, key or authority is not usable: "
                           f"{type(e).__name__}: {e}") from None


class MigrationListeningService(ListeningService):
    """
    The migration listener of the daemon, into C{events}' Context of the
    moment; binds like any :class:`~txlibxl.daemon.listening.ListeningService`.

    :ivar listener: the :class:`~txlibxl.migration.MigrationListener`.
    """

    name = "migrations"
    what = "migrations"
    tcp_scheme = "tls"

    def __init__(self, reactor: Any, spec: MigrationSpec, events: Any, tls: Any = None, **kwargs: Any) -> None:
        from txlibxl.migration import MigrationListener

        self.spec = spec
        self._tls = tls
        self.listener = MigrationListener(None, self._arrived, self._failed_one, current=lambda: events.context)
        super().__init__(reactor, spec.describe(), self.listener.factory(), **kwargs)

    def endpoint(self) -> Any:
        from txlibxl.migration import migration_endpoint

        if self.spec.kind == "unix":
            return migration_endpoint(self._reactor, unix=self.spec.path)
        return migration_endpoint(self._reactor, tls=self._tls, port=self.spec.port, interface=self.spec.interface)

    def _arrived(self, domid: int, config: Any) -> None:
        name = (config.get("c_info") or {}).get("name") if isinstance(config, dict) else None
        _log.info("domain {name!r} arrived by migration as domid {domid}", name=name, domid=domid)

    def _failed_one(self, error: Exception) -> None:
        _log.warn("an incoming migration failed: {error}", error=error)

    def stopService(self) -> Any:
        self.listener.cancel_incoming()
        return super().stopService()


def make_migration_service(options: Dict[str, Any], reactor: Any, events: Any,
                           on_failure: Any) -> Optional[MigrationListeningService]:
    """
    The migration listener C{options} ask for, or ``None``.

    :raises StartupError: its TLS files are not usable.
    """
    spec = options.get("migration-spec")
    if spec is None:
        return None
    tls = _tls_options(options) if spec.kind == "tls" else None
    return MigrationListeningService(reactor, spec, events, tls, on_failure=on_failure)
