"""
The daemon's log: what reaches twistd's log observer.

twistd writes every event it is given, debug included, and offers no
level option.  :func:`twistd_observer` builds the observer twistd would
have made itself for its options (``--logfile``, ``--syslog``, standard
output) and puts a level filter in front of it; :class:`DaemonService
<txlibxl.daemon.tap.DaemonService>` sets it as the application's
``ILogObserver`` component, which twistd uses unless ``--logger`` names
another observer (then that one gets every event, unfiltered).

libxl's own messages reach it as the library logs them, starting with
libxl's xentoollog context (``libxl: libxl.c:108: ...``).
"""
from __future__ import annotations

from typing import Any, Optional

from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate

__all__ = ["LOG_LEVELS", "filtered", "twistd_observer"]

#: ``--log-level`` values, least severe first.
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


def filtered(observer: Any, level: str) -> Any:
    """C{observer}, given only events at C{level} or more severe."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    return FilteringLogObserver(observer, [predicate])


def twistd_observer(server_options: Any, level: str) -> Optional[Any]:
    """
    The observer twistd would make for C{server_options} (its own
    ``ServerOptions``), filtered at C{level}; ``None`` if twistd is to use
    a ``--logger`` of the operator's, or if its own observer cannot be made
    here (then twistd logs as it always does).
    """
    if server_options.get("logger"):
        return None
    try:
        from twisted.scripts._twistd_unix import UnixAppLogger

        observer = UnixAppLogger(server_options)._getLogObserver()
    except (ImportError, AttributeError, TypeError):
        return None
    return filtered(observer, level)
