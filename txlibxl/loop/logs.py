"""
The logger the loop layer writes to, whatever the framework.

The loop layer logs little: a failure swallowed in a loop callback, libxl
leaving something behind at teardown, a child somebody else reaped.  It
writes through :class:`LoopLogger`: the methods of the txaio logger API
(``txaio.interfaces.ILogger``) it uses, PEP 3101 format strings with
keyword arguments, plus ``failure()`` for the exception being handled, as
``twisted.logger.Logger`` has it.

* The Twisted modules pass a module-level ``twisted.logger.Logger``, so
  log observers (and trial's ``flushLoggedErrors``) see what they always
  saw.
* The asyncio modules take a ``log`` argument, turned into a
  :class:`LoopLogger` by :func:`loop_logger`: a logger from the caller,
  typically ``txaio.make_logger()`` once the caller has chosen its
  framework with ``txaio.use_asyncio()`` (the choice is per process, so
  the loop layer never makes it; txaio's asyncio loggers have no
  ``failure()``, so the traceback goes into an ``error()``).  Without
  one they use a :class:`StdlibLogger`, a thin adapter onto the standard
  library's ``logging`` that forces no framework and formats nothing
  that no handler would emit.
"""
from __future__ import annotations

import logging
import traceback
from typing import Any, Optional, Protocol


__all__ = ["LoopLogger", "StdlibLogger", "loop_logger"]


class LoopLogger(Protocol):
    """
    What the loop layer calls on a logger: the txaio ``ILogger`` methods
    it uses, each taking a PEP 3101 format and its keyword arguments.
    """

    def debug(self, format: str, **kwargs: Any) -> None:
        """A message for debugging."""

    def info(self, format: str, **kwargs: Any) -> None:
        """Something normal worth knowing."""

    def warn(self, format: str, **kwargs: Any) -> None:
        """Something unexpected that was handled."""

    def error(self, format: str, **kwargs: Any) -> None:
        """Something went wrong and could not be helped."""

    def failure(self, format: str, failure: Any = None, **kwargs: Any) -> None:
        """The exception being handled, with C{format} as its context."""


class StdlibLogger:
    """
    A L{LoopLogger} onto the standard library logger called C{name}.

    Messages are formatted with ``str.format(**kwargs)`` only if the
    logger is enabled for their level; ``failure()`` logs at ``ERROR`` with
    the exception being handled (``exc_info``).
    """

    __slots__ = ("_logger",)

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    @property
    def logger(self) -> logging.Logger:
        """The standard library logger written to."""
        return self._logger

    def _emit(self, level: int, format: str, kwargs: Any, exc_info: Any = None) -> None:
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        try:
            text = format.format(**kwargs)
        except Exception:  # a bad format must not hide the message
            text = f"{format} {kwargs!r}"
        logger.log(level, "%s", text, exc_info=exc_info)

    def debug(self, format: str, **kwargs: Any) -> None:
        self._emit(logging.DEBUG, format, kwargs)

    def info(self, format: str, **kwargs: Any) -> None:
        self._emit(logging.INFO, format, kwargs)

    def warn(self, format: str, **kwargs: Any) -> None:
        self._emit(logging.WARNING, format, kwargs)

    def error(self, format: str, **kwargs: Any) -> None:
        self._emit(logging.ERROR, format, kwargs)

    def failure(self, format: str, failure: Optional[BaseException] = None, **kwargs: Any) -> None:
        exc_info: Any = True
        if isinstance(failure, BaseException):
            exc_info = (type(failure), failure, failure.__traceback__)
        self._emit(logging.ERROR, format, kwargs, exc_info)


class _WithFailure:
    """
    A txaio logger without C{failure()} (txaio's asyncio loggers), given
    one that writes the traceback into an C{error()}.
    """

    __slots__ = ("_log",)

    # Looked up on every call: txaio rebinds a logger's methods when its
    # level changes.

    def __init__(self, log: Any) -> None:
        self._log = log

    def debug(self, format: str, **kwargs: Any) -> None:
        self._log.debug(format, **kwargs)

    def info(self, format: str, **kwargs: Any) -> None:
        self._log.info(format, **kwargs)

    def warn(self, format: str, **kwargs: Any) -> None:
        self._log.warn(format, **kwargs)

    def error(self, format: str, **kwargs: Any) -> None:
        self._log.error(format, **kwargs)

    def critical(self, format: str, **kwargs: Any) -> None:
        self._log.critical(format, **kwargs)

    def failure(self, format: str, failure: Optional[BaseException] = None, **kwargs: Any) -> None:
        # txaio's failure objects carry the exception in .value.
        if not isinstance(failure, BaseException):
            failure = getattr(failure, "value", failure)
        if isinstance(failure, BaseException):
            text = "".join(traceback.format_exception(type(failure), failure, failure.__traceback__))
        else:
            text = traceback.format_exc()
        self.error(format + "\n{loop_traceback}", loop_traceback=text, **kwargs)


def loop_logger(log: Any, name: str) -> LoopLogger:
    """
    The L{LoopLogger} for C{log}: C{log} itself if it has C{failure()}
    (``twisted.logger.Logger``, txaio's Twisted loggers), C{log} with a
    C{failure()} added if it is another txaio logger, or a
    L{StdlibLogger} called C{name} if C{log} is C{None}.

    @raise TypeError: C{log} lacks C{debug}, C{info}, C{warn} or C{error}.
    """
    if log is None:
        return StdlibLogger(name)
    missing = [m for m in ("debug", "info", "warn", "error") if not callable(getattr(log, m, None))]
    if missing:
        raise TypeError(f"log must be a txaio-style logger; {log!r} has no {', '.join(missing)}")
    if callable(getattr(log, "failure", None)):
        return log  # type: ignore[no-any-return]
    return _WithFailure(log)  # type: ignore[return-value]
