"""
``twistd libxl-events`` options: what is accepted, and what is refused
with a usage error saying why (never a traceback).
"""
from __future__ import annotations

import os
from typing import List

from twisted.python import usage
from twisted.trial.unittest import TestCase

from txlibxl.daemon import tap
from txlibxl.daemon.startup import StartupError


def parse(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(args))
    return options


class OptionTests(TestCase):
    def test_simulate_alone_means_an_empty_host(self) -> None:
        self.assertEqual(parse("--simulate")["simulate"], "")

    def test_simulate_takes_a_shipped_scenario_by_name(self) -> None:
        self.assertEqual(parse("--simulate", "demo")["simulate"], "demo")

    def test_simulate_before_another_option_takes_no_scenario(self) -> None:
        options = parse("--simulate", "--disk-eject")
        self.assertEqual(options["simulate"], "")
        self.assertTrue(options["disk-eject"])

    def test_an_unknown_scenario_is_a_usage_error_naming_the_shipped_ones(self) -> None:
        e = self.assertRaises(usage.UsageError, parse, "--simulate", "no-such-scenario")
        self.assertIn("demo", str(e))

    def test_listen_is_repeatable(self) -> None:
        options = parse("--simulate", "--listen", "tcp:0", "--listen", "unix:/tmp/x.sock")
        self.assertEqual(options["listen"], ["tcp:0", "unix:/tmp/x.sock:mode=600"])

    def test_a_unix_socket_is_private_unless_its_endpoint_gives_a_mode(self) -> None:
        self.assertEqual(parse("--simulate", "--listen", "unix:/tmp/x.sock")["listen"], ["unix:/tmp/x.sock:mode=600"])
        self.assertEqual(
            parse("--simulate", "--listen", "unix:/tmp/x.sock:mode=660")["listen"], ["unix:/tmp/x.sock:mode=660"]
        )
        self.assertEqual(parse("--simulate", "--listen", "tcp:0")["listen"], ["tcp:0"])

    def test_listen_group_is_a_known_group_for_a_unix_socket(self) -> None:
        import grp

        name = grp.getgrgid(os.getegid()).gr_name
        options = parse("--simulate", "--listen", "unix:/tmp/x.sock", "--listen-group", name)
        self.assertEqual(options["listen-gid"], os.getegid())
        self.assertRaises(usage.UsageError, parse, "--simulate", "--listen", "unix:/tmp/x.sock", "--listen-group", "no-such-group-here")
        self.assertRaises(usage.UsageError, parse, "--simulate", "--listen", "tcp:0", "--listen-group", name)

    def test_a_bad_endpoint_is_a_usage_error(self) -> None:
        e = self.assertRaises(usage.UsageError, parse, "--simulate", "--listen", "nonsense:1")
        self.assertIn("nonsense:1", str(e))

    def test_events_go_to_stdout_without_listen_or_output(self) -> None:
        self.assertEqual(parse("--simulate")["output"], "-")

    def test_with_listen_there_is_no_default_output(self) -> None:
        self.assertIsNone(parse("--simulate", "--listen", "tcp:0")["output"])

    def test_numbers_must_be_positive(self) -> None:
        for option in ("--rescan-interval", "--max-backoff", "--buffer"):
            for bad in ("0", "-1", "many"):
                self.assertRaises(usage.UsageError, parse, "--simulate", option, bad)

    def test_libxl_log_level_is_one_of_the_known_levels(self) -> None:
        self.assertEqual(parse("--simulate", "--libxl-log-level", "debug")["libxl-log-level"], "debug")
        self.assertRaises(usage.UsageError, parse, "--simulate", "--libxl-log-level", "loud")

    def test_domains_is_a_list_of_domids_and_names(self) -> None:
        wanted = parse("--simulate", "--domains", "3,web1")["domain-filter"]
        self.assertEqual((wanted.domids, wanted.names), ({3}, {"web1"}))

    def test_an_empty_domain_in_the_list_is_a_usage_error(self) -> None:
        self.assertRaises(usage.UsageError, parse, "--simulate", "--domains", "3,,web1")

    def test_simulate_rundir_needs_simulate(self) -> None:
        self.assertRaises(usage.UsageError, parse, "--simulate-rundir", "/tmp/x")

    def test_without_xen_and_without_simulate_the_error_says_how_to_simulate(self) -> None:
        if tap.xen_available():
            self.skipTest("this machine runs on Xen")
        e = self.assertRaises(usage.UsageError, parse)
        self.assertIn("no Xen here", str(e))
        self.assertIn("--simulate", str(e))

    def test_a_process_pointed_at_a_simulated_host_counts_as_xen(self) -> None:
        saved = {k: os.environ.get(k) for k in ("TXLIBXL_SIM_HYPERCALL", "XENSTORED_PATH")}

        def restore() -> None:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

        self.addCleanup(restore)
        os.environ["TXLIBXL_SIM_HYPERCALL"] = "/tmp/h.sock"
        os.environ["XENSTORED_PATH"] = "/tmp/x.sock"
        self.assertTrue(tap.xen_available())


class MakeServiceTests(TestCase):
    def test_listen_and_output_make_both_sinks_and_a_listener_per_endpoint(self) -> None:
        path = self.mktemp()
        options = parse("--simulate", "--listen", "tcp:0:interface=127.0.0.1", "--listen", "tcp:0", "--output", path)
        top = tap.makeService(options)
        events = top.getServiceNamed("libxl-events")
        self.addCleanup(lambda: [s.close() for s in events.sinks if s.name == "jsonl"])
        self.assertEqual(sorted(s.name for s in events.sinks), ["http", "jsonl"])
        listeners: List[tap.ListeningService] = [s for s in top if isinstance(s, tap.ListeningService)]
        self.assertEqual([s.description for s in listeners], ["tcp:0:interface=127.0.0.1", "tcp:0"])
        self.assertIsNotNone(events.host)

    def test_an_output_file_that_cannot_be_opened_is_a_startup_error(self) -> None:
        options = parse("--simulate", "--output", "/nonexistent-dir/events.jsonl")
        e = self.assertRaises(StartupError, tap.makeService, options)
        self.assertIn("/nonexistent-dir/events.jsonl", str(e))

    def test_the_listeners_start_before_the_events_service(self) -> None:
        options = parse("--simulate", "--listen", "tcp:0:interface=127.0.0.1")
        top = tap.makeService(options)
        self.assertEqual(
            [type(s).__name__ for s in top], ["ListeningService", "LibxlEventsService"]
        )


class ReadyFileTests(TestCase):
    def test_a_ready_file_that_cannot_be_written_later_is_a_failure(self) -> None:
        from twisted.internet import defer

        class Events:
            def when_running(self) -> defer.Deferred:
                return defer.succeed(None)

        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "ready.json")
        tap.ReadyFileService.check_writable(path)
        os.rmdir(directory)
        failures: List[str] = []
        service = tap.ReadyFileService(path, Events(), [], None, on_failure=failures.append)
        service.startService()
        self.assertEqual(len(failures), 1)
        self.assertIn("cannot write the ready file", failures[0])
