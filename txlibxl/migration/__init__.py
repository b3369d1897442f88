"""
Live migration of domains between hosts, each end a
:class:`~txlibxl.context.Context` on its own host, over a connection
made from a Twisted endpoint: :func:`migrate` on the source,
:func:`listen_for_migrations` on the target.  The protocol is
:mod:`txlibxl.migration.protocol`'s; the errors are
:mod:`txlibxl.migration.errors`'.
"""
from __future__ import annotations

from .errors import MigrationCancelled, MigrationFailed, MigrationIndeterminate, MigrationProtocolError
from .receiver import MigrationListener, listen_for_migrations, migration_endpoint, tls_server_options
from .sender import migrate

__all__ = [
    "migrate", "listen_for_migrations", "migration_endpoint", "tls_server_options", "MigrationListener",
    "MigrationFailed", "MigrationCancelled", "MigrationIndeterminate", "MigrationProtocolError",
]
