"""
The daemon's log: what reaches twistd's log observer.

twistd writes every event it is given, debug included, and offers no
level option.  :func:`twistd_observer` builds the observer twistd would
have made itself for its options (``--logfile``, ``--syslog``, standard
output) and puts a level filter in front of it; :class:`DaemonService
<txlibxl.daemon.tap.DaemonService>` sets it as the application's
``ILogObserver`` component, which twistd uses unless ``--logger`` names
another observer (then that one gets every event, unfiltered).

:class:`TidyObserver` also removes the ``libxl: `` prefix the library's
context puts before libxl's own messages, which already start with
libxl's xentoollog context (``libxl: libxl: libxl.c:108: ...``).
"""
from __future__ import annotations

from typing import Any, Optional

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    Logger,
)
from zope.interface import implementer

__all__ = ["LOG_LEVELS", "TidyObserver", "filtered", "twistd_observer"]

#: ``--log-level`` values, least severe first.
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")

_LIBXL_FORMAT = "libxl: {message}"

_log = Logger(namespace="txlibxl.daemon")


@implementer(ILogObserver)
class TidyObserver:
    """Passes each event to C{observer}, a doubled ``libxl: libxl:`` made single."""

    def __init__(self, observer: Any) -> None:
        self._observer = observer

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_format") == _LIBXL_FORMAT and str(event.get("message", "")).startswith("libxl: "):
            event = dict(event, log_format="{message}")
        self._observer(event)


def filtered(observer: Any, level: str) -> Any:
    """C{observer}, given only events at C{level} or more severe, tidied."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    return FilteringLogObserver(TidyObserver(observer), [predicate])


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
