"""The ``--amqp*`` options of ``twistd libxl-events``: each mistake is one usage error."""
from __future__ import annotations

from typing import List

from twisted.python import usage
from twisted.trial.unittest import TestCase

from txlibxl.daemon.tap import Options


def parse(args: List[str]) -> Options:
    options = Options()
    options.parseOptions(["--simulate", "--state-dir", "/tmp/x"] + args)
    return options


class AMQPOptionsTests(TestCase):
    def test_a_url_with_several_nodes_and_the_stream_settings(self) -> None:
        o = parse(["--amqp", "amqp://u:p@127.0.0.1:5672,127.0.0.1:5673/", "--amqp-max-age", "1D",
                   "--amqp-max-bytes", "1000000", "--amqp-cluster-size", "3"])
        self.assertEqual(len(o["amqp-url"].nodes), 2)
        self.assertEqual(o["amqp-topology"].queue_arguments()["x-max-length-bytes"], 1000000)
        self.assertIsNone(o["output"], "with --amqp, nothing goes to standard output unless asked")

    def test_mistakes_are_usage_errors(self) -> None:
        for bad in (["--amqp", "http://h"], ["--amqp", "amqp://h", "--amqp-window", "0"],
                    ["--amqp", "amqp://h", "--amqp-max-age", "forever"], ["--host-name", "a b"]):
            self.assertRaises(usage.UsageError, parse, bad)

    def test_a_lasting_spool_needs_a_lasting_seq(self) -> None:
        options = Options()
        self.assertRaises(usage.UsageError, options.parseOptions,
                          ["--simulate", "--amqp", "amqp://h", "--amqp-spool", "/tmp/spool"])
