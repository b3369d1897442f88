"""
A migration that fails on the target tells the source why, and keeps the
connection open until the source closes it (or a while has passed): a
close under the stream the source is still sending could reset the
connection before the source reads the error.
"""
from __future__ import annotations

from typing import Any, List

from twisted.internet.address import UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from txlibxl.migration import MigrationListener
from txlibxl.migration import protocol as p
from txlibxl.migration.receiver import LINGER_S


class LingerTests(TestCase):
    def refused(self) -> Any:
        # No Context open: the migration is refused as soon as it connects.
        self.clock = Clock()
        self.failures: List[Exception] = []
        self.listener = MigrationListener(None, on_failure=self.failures.append, current=lambda: None,
                                          clock=self.clock)
        receiver = self.listener.factory().buildProtocol(UNIXAddress("/tmp/none.sock"))
        transport = StringTransport()
        receiver.makeConnection(transport)
        return receiver, transport

    def test_the_error_is_sent_and_the_connection_left_for_the_source_to_close(self) -> None:
        receiver, transport = self.refused()
        self.assertTrue(transport.value().startswith(p.ERROR))
        self.assertIn(b"no libxl context", transport.value())
        self.assertFalse(transport.disconnecting)
        receiver.connectionLost(Failure(ConnectionDone()))  # the source closed it
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.listener.incoming, 0)

    def test_a_source_that_does_not_close_is_cut_off_after_the_linger(self) -> None:
        receiver, transport = self.refused()
        self.clock.advance(LINGER_S - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnected)  # aborted, not closed after the stream
        receiver.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopping_the_listener_cuts_off_a_lingering_connection(self) -> None:
        receiver, transport = self.refused()

        class Port:
            def stopListening(self) -> None:
                pass

        self.listener.port = Port()
        self.successResultOf(self.listener.stop())
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])
