"""
How ``twistd libxl-events`` fails: with a non-zero exit status and one line.

twistd has no way for a plugin to choose the exit status.  Its run
(``twisted.application.app.run`` -> ``twisted.scripts.twistd.runApp``)
ends in one of three ways:

* a ``usage.UsageError`` while parsing options: twistd prints its *whole*
  usage text, then the error, and exits 1;
* an exception out of ``makeService`` or a service's ``startService``
  before the reactor runs: a traceback, exit 1;
* the reactor stops: twistd removes its pid file, logs "Server Shut
  Down." and returns; the process then exits 0, or re-raises the signal
  that stopped the reactor (``reactor._exitSignal``, SIGTERM/SIGINT).

So the daemon does this instead:

* :func:`usage_failed`: an options error is written as one line and a
  pointer to ``--help`` on standard error, and the process exits 2 (the
  LSB status for invalid arguments) before twistd sees it; an
  environment that cannot work (no Xen) exits 1 the same way.
* :class:`StartupError` out of ``makeService`` (an output file that cannot
  be opened, a state directory that cannot be made...) becomes one line on
  standard error and ``SystemExit(1)``: twistd has not started logging or
  written its pid file yet, so there is nothing to clean up.
* :class:`ProcessExit` for what fails once services start (a port
  already taken, a ready file that cannot be written, the simulated host
  that does not start, any unexpected error): :meth:`ProcessExit.fail`
  logs one critical line, stops the reactor (the services stop as on
  SIGTERM: the simulated host is stopped, the pid file removed), and an
  ``atexit`` hook, which runs once twistd has returned, ends the process
  with status 1 (``os._exit``, after flushing standard output and error).
  The hook is only installed for a process that twistd runs (the options
  have a ``parent``), never in a test or an embedding application.
"""
from __future__ import annotations

import atexit
import os
import sys
from typing import Any, Optional

from twisted.logger import Logger
from twisted.python import usage

__all__ = ["StartupError", "NoXenError", "ProcessExit", "usage_failed", "EXIT_FAILURE", "EXIT_USAGE"]

#: The exit status of a start-up failure.
EXIT_FAILURE = 1
#: The exit status of a usage error (LSB: invalid or excess arguments).
EXIT_USAGE = 2

PROGRAM = "twistd libxl-events"

_log = Logger(namespace="txlibxl.daemon")


class StartupError(Exception):
    """
    The daemon cannot start; the message is the one line an operator sees
    (what failed and why, without a traceback).
    """


class NoXenError(StartupError, usage.UsageError):
    """This machine cannot run libxl at all (and ``--simulate`` was not given)."""


def _write_stderr(text: str) -> None:
    try:
        sys.stderr.flush()
    except Exception:
        pass
    try:
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


def usage_failed(error: BaseException, status: int = EXIT_USAGE) -> "SystemExit":
    """
    Write C{error} as one line (and, for a usage error, where the options
    are described) on standard error; the C{SystemExit} to raise.
    """
    text = f"{PROGRAM}: {error}\n"
    if status == EXIT_USAGE:
        text += f"Try '{PROGRAM} --help' for the options.\n"
    _write_stderr(text)
    return SystemExit(status)


class ProcessExit:
    """
    How the process ends once it runs: :meth:`fail` records the first
    failure, logs it and stops the reactor; :meth:`install` makes the
    process exit with ``status`` once twistd is done.

    :param reactor: the reactor to stop.
    :param echo_to_stderr: also write the failure's line on standard
        error at exit (when the log goes to a file or syslog, so that the
        one line is seen where the command was started too).
    """

    def __init__(self, reactor: Any, echo_to_stderr: bool = False) -> None:
        self._reactor = reactor
        self._echo = echo_to_stderr
        self.status = 0
        self.reason: Optional[str] = None
        self._installed = False

    @property
    def failed(self) -> bool:
        return self.reason is not None

    def fail(self, reason: str) -> None:
        """
        Start-up (or the service) failed for C{reason} (one line): log it
        at critical level and stop the reactor.  Only the first failure
        counts; later ones are logged at error level.
        """
        if self.reason is not None:
            _log.error("also: {reason}", reason=reason)
            return
        self.reason = reason
        self.status = EXIT_FAILURE
        _log.critical("{program}: {reason}", program=PROGRAM, reason=reason)
        self._stop_reactor()

    def _stop_reactor(self) -> None:
        reactor = self._reactor
        if reactor.running:
            reactor.stop()
            return

        def stop() -> None:
            if reactor.running:
                reactor.stop()

        reactor.callWhenRunning(stop)

    def install(self) -> None:
        """Exit with ``status`` at interpreter exit (once twistd returned)."""
        if not self._installed:
            self._installed = True
            atexit.register(self._exit)

    def _exit(self) -> None:
        if not self.status:
            return
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        if self._echo and self.reason is not None:
            _write_stderr(f"{PROGRAM}: {self.reason}\n")
        os._exit(self.status)
