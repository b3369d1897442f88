"""
The loop layer's loggers (txlibxl.loop.logs): the standard-library one the
asyncio modules use by default, and what a caller's logger is turned into.
"""
from __future__ import annotations

import logging
from typing import Any, List, Tuple

from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from txlibxl.loop.logs import StdlibLogger, loop_logger


class Counted:
    """A value that counts how often it is formatted."""

    def __init__(self) -> None:
        self.formatted = 0

    def __format__(self, spec: str) -> str:
        self.formatted += 1
        return "counted"


class TxaioLikeLogger:
    """Like txaio's asyncio logger: debug/info/warn/error, no failure()."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, str, dict]] = []

    def _bind(self, level: str) -> Any:
        return lambda format, **kw: self.calls.append((level, format, kw))

    def __getattr__(self, name: str) -> Any:
        if name in ("debug", "info", "warn", "error"):
            return self._bind(name)
        raise AttributeError(name)


class StdlibLoggerTests(TestCase):
    def test_a_message_is_formatted_only_if_its_level_is_enabled(self) -> None:
        log = StdlibLogger("txlibxl.test.quiet")
        log.logger.setLevel(logging.WARNING)
        self.addCleanup(log.logger.setLevel, logging.NOTSET)
        value = Counted()
        log.debug("ignored {value}", value=value)
        self.assertEqual(value.formatted, 0)
        with self.assertLogs("txlibxl.test.quiet", "WARNING") as logged:
            log.warn("seen {value}", value=value)
        self.assertEqual(value.formatted, 1)
        self.assertEqual(logged.output, ["WARNING:txlibxl.test.quiet:seen counted"])

    def test_failure_logs_the_exception_being_handled_at_error(self) -> None:
        log = StdlibLogger("txlibxl.test.failure")
        with self.assertLogs("txlibxl.test.failure", "ERROR") as logged:
            try:
                1 / 0
            except ZeroDivisionError:
                log.failure("dividing for fd {fd}", fd=7)
        [record] = logged.records
        self.assertEqual(record.getMessage(), "dividing for fd 7")
        self.assertIs(record.exc_info[0], ZeroDivisionError)  # type: ignore[index]

    def test_a_bad_format_still_logs_the_message(self) -> None:
        log = StdlibLogger("txlibxl.test.bad")
        with self.assertLogs("txlibxl.test.bad", "ERROR") as logged:
            log.error("no such {key}")
        self.assertIn("no such {key}", logged.output[0])


class LoopLoggerTests(TestCase):
    def test_none_gives_the_standard_library_logger_of_that_name(self) -> None:
        log = loop_logger(None, "txlibxl.loop.somewhere")
        self.assertIsInstance(log, StdlibLogger)
        self.assertEqual(log.logger.name, "txlibxl.loop.somewhere")

    def test_a_logger_with_failure_is_used_as_it_is(self) -> None:
        log = Logger()
        self.assertIs(loop_logger(log, "unused"), log)

    def test_a_txaio_logger_without_failure_gets_the_traceback_in_an_error(self) -> None:
        caller = TxaioLikeLogger()
        log = loop_logger(caller, "unused")
        log.warn("plain {n}", n=1)
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("dividing for fd {fd}", fd=7)
        [(level, format, kw), (flevel, fformat, fkw)] = caller.calls
        self.assertEqual((level, format, kw), ("warn", "plain {n}", {"n": 1}))
        self.assertEqual(flevel, "error")
        self.assertTrue(fformat.startswith("dividing for fd {fd}"))
        self.assertEqual(fkw["fd"], 7)
        self.assertIn("ZeroDivisionError", fformat.format(**fkw))

    def test_something_that_is_not_a_logger_is_refused(self) -> None:
        self.assertRaises(TypeError, loop_logger, object(), "unused")
