"""
``twistd libxl-events --accept-migrations``: the daemon as a migration
target.  Its options accept only a unix socket (made 0600) or TLS with a
required client certificate; anything else is a usage error.  Run for
real: two simulated hosts, this test's own (host A, whose Context is the
migration's source, followed by a ``twistd libxl-events`` of its own) and
the target daemon's (host B, ``--simulate``).  The migrated domain is a
``new`` on B with its uuid, and A's daemon says its death came after a
suspend.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import defer, reactor, task
from twisted.python import usage
from twisted.trial.unittest import TestCase

from txlibxl.daemon import tap
from txlibxl.daemon.records import check_record
from txlibxl.migration import MigrationFailed

from tests.core.test_moving_on_sim import MovingTestCase
from tests.core.tlscerts import Authority
from tests.plugin.test_twistd import CHECKOUT, TWISTD, PluginProcess, _Output, _run, _twistd_module_exists


def parse(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(["--simulate", *args])
    return options


class OptionTests(TestCase):
    def test_a_unix_socket_is_accepted_bare_or_with_path_and_mode_600(self) -> None:
        for given in ("unix:/run/m.sock", "unix:path=/run/m.sock", "unix:/run/m.sock:mode=600"):
            spec = parse("--accept-migrations", given)["migration-spec"]
            self.assertEqual((spec.kind, spec.path), ("unix", "/run/m.sock"))

    def test_a_unix_socket_with_another_mode_is_refused(self) -> None:
        e = self.assertRaises(usage.UsageError, parse, "--accept-migrations", "unix:/run/m.sock:mode=660")
        self.assertIn("0600", str(e))

    def test_tls_needs_the_certificate_its_key_and_the_clients_authority(self) -> None:
        files = ("--migration-cert", "c.pem", "--migration-key", "k.pem", "--migration-ca", "ca.pem")
        spec = parse("--accept-migrations", "tls:7700:interface=0.0.0.0", *files)["migration-spec"]
        self.assertEqual((spec.kind, spec.port, spec.interface), ("tls", 7700, "0.0.0.0"))
        self.assertEqual(parse("--accept-migrations", "tls:0", *files)["migration-spec"].interface, "127.0.0.1")
        e = self.assertRaises(usage.UsageError, parse, "--accept-migrations", "tls:7700", *files[:4])
        self.assertIn("--migration-ca", str(e))

    def test_plain_tcp_and_ssl_without_client_certificates_are_refused(self) -> None:
        for given, said in (("tcp:7700", "plain TCP is refused"), ("ssl:7700", "no client certificate"),
                            ("tls:http", "port must be a number"), ("nonsense:1", "use unix:PATH")):
            e = self.assertRaises(usage.UsageError, parse, "--accept-migrations", given)
            self.assertIn(said, str(e))

    def test_tls_files_without_a_tls_listener_are_refused(self) -> None:
        self.assertRaises(usage.UsageError, parse, "--migration-ca", "ca.pem")
        self.assertRaises(usage.UsageError, parse, "--accept-migrations", "unix:/run/m.sock", "--migration-ca", "ca.pem")

    def test_without_the_option_there_is_no_listener(self) -> None:
        self.assertIsNone(parse()["migration-spec"])


class StartupTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        _twistd_module_exists()
        self.tmp = tempfile.mkdtemp(prefix="txm-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def daemon(self, *extra: str) -> List[str]:
        return TWISTD + ["-n", "--pidfile=", "libxl-events", "--simulate",
                         "--simulate-rundir", os.path.join(self.tmp, "host"), *extra]

    async def test_an_insecure_endpoint_exits_2_with_one_line(self) -> None:
        status, output = await _run(self.daemon("--accept-migrations", "tcp:0"))
        self.assertEqual(status.exitCode, 2, output)
        self.assertIn("plain TCP is refused", output)
        self.assertNotIn("Traceback", output)

    async def test_a_socket_that_cannot_be_bound_exits_1_before_the_simulated_host_starts(self) -> None:
        missing = os.path.join(self.tmp, "no-such-dir", "m.sock")
        status, output = await _run(self.daemon("--accept-migrations", f"unix:{missing}"))
        self.assertEqual(status.exitCode, 1, output)
        self.assertIn(f"cannot listen on unix:{missing}", output)
        self.assertNotIn("Traceback", output)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "host", "host.json")))

    async def test_tls_files_that_cannot_be_read_exit_1_with_one_line(self) -> None:
        missing = os.path.join(self.tmp, "none.pem")
        status, output = await _run(self.daemon("--accept-migrations", "tls:0", "--migration-cert", missing,
                                                "--migration-key", missing, "--migration-ca", missing))
        self.assertEqual(status.exitCode, 1, output)
        self.assertIn("cannot read", output)
        self.assertNotIn("Traceback", output)


class _Daemon:
    """``twistd -n libxl-events`` on a test's own simulated host."""

    def __init__(self, testcase: Any, tmp: str) -> None:
        self.testcase = testcase
        self.tmp = tmp
        self.jsonl = os.path.join(tmp, "events.jsonl")
        self.ready = os.path.join(tmp, "ready.json")
        self.proto = _Output()

    @defer.inlineCallbacks
    def start(self, host: Any) -> Any:
        args = TWISTD + ["-n", "--pidfile=", "--logfile", os.path.join(self.tmp, "twistd.log"), "libxl-events",
                         "--output", self.jsonl, "--ready-file", self.ready, "--rescan-interval", "1",
                         # Its own: the default one is for one daemon per host.
                         "--state-dir", os.path.join(self.tmp, "state")]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (CHECKOUT, env.get("PYTHONPATH")) if p)
        env.update(host.environment(preload=True))
        reactor.spawnProcess(self.proto, sys.executable, args, env=env, path=self.tmp)
        self.testcase.addCleanup(self.stop)
        for _ in range(600):
            if os.path.exists(self.ready) or self.proto.ended.called:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        if not os.path.exists(self.ready):
            self.testcase.fail("twistd libxl-events did not become ready:\n" + self.proto.output.decode(errors="replace"))

    @defer.inlineCallbacks
    def stop(self) -> Any:
        if not self.proto.ended.called:
            self.proto.transport.signalProcess("TERM")
        timer = reactor.callLater(30, lambda: self.proto.ended.called or self.proto.transport.signalProcess("KILL"))
        yield self.proto.ended
        if timer.active():
            timer.cancel()

    def records(self) -> List[Dict[str, Any]]:
        with open(self.jsonl, encoding="utf-8") as f:
            return [json.loads(line) for line in f]


def _of(records: List[Dict[str, Any]], uuid: str) -> List[Tuple[str, Optional[int], Optional[str], Optional[str]]]:
    for record in records:
        check_record(record)
    return [(r["type"], r["domid"], r["reason"], r["after"]) for r in records if r["uuid"] == uuid]


class _TwoHosts(MovingTestCase):
    """Host A (this test's, followed by a daemon) and host B (a daemon
    with --accept-migrations)."""

    timeout = 180

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        _twistd_module_exists()
        # AF_UNIX paths are short: a short directory.
        self.sockets = tempfile.mkdtemp(prefix="txm", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.sockets, True)
        self.source = _Daemon(self, self.sockets)
        yield self.source.start(self.host)

    @defer.inlineCallbacks
    def target(self, *extra: str) -> Any:
        self.plugin = PluginProcess(self, extra=extra)
        yield defer.ensureDeferred(self.plugin.start())
        return self.plugin

    def wait(self, condition: Any, seconds: float = 20) -> Any:
        return self.until(condition, seconds)

    @defer.inlineCallbacks
    def migrate_and_check(self, endpoint: str) -> Any:
        domid, config = yield self.guest("travelling", image_kb=4096)
        uuid = config["c_info"]["uuid"]
        yield self.wait(lambda: len(_of(self.source.records(), uuid)) >= 1)
        there = yield self.ctx.migrate(domid, endpoint)
        self.assertEqual(self.guests(), [])
        info = yield self.plugin.control.info(there)
        self.assertEqual((info["uuid"], info["marker"], info["state"]), (uuid, "travelling", "running"))
        yield self.wait(lambda: len(_of(self.plugin.records(), uuid)) >= 1)
        self.assertEqual(_of(self.plugin.records(), uuid), [("new", there, None, None)])
        yield self.wait(lambda: len(_of(self.source.records(), uuid)) >= 3)
        self.assertEqual(_of(self.source.records(), uuid), [("new", domid, None, None),
                                                           ("shutdown", domid, "suspend", None),
                                                           ("death", domid, None, "suspend")])
        yield self.assertQuiet()
        return there


class UnixListenerTests(_TwoHosts):
    @defer.inlineCallbacks
    def test_a_migration_into_the_daemon_is_new_there_and_a_death_after_suspend_here(self) -> Any:
        path = os.path.join(self.sockets, "in.sock")
        yield self.target("--accept-migrations", f"unix:{path}")
        self.assertEqual(self.plugin.info["migrations"], f"unix:{path}")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        yield self.migrate_and_check(f"unix:path={path}")
        # Stopped, the daemon removes its socket.
        yield defer.ensureDeferred(self.plugin.terminate())
        self.assertFalse(os.path.exists(path))


class TLSListenerTests(_TwoHosts):
    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        certs = os.path.join(self.sockets, "certs")
        for sub in ("ca", "other-ca", "keys"):
            os.makedirs(os.path.join(certs, sub))
        self.ca = Authority(os.path.join(certs, "ca"), "ca")
        keys = os.path.join(certs, "keys")
        self.good = self.ca.issue("source", keys)
        self.stranger = Authority(os.path.join(certs, "other-ca"), "other-ca").issue("stranger", keys)
        cert, key = self.ca.issue("target", keys, host="localhost")
        yield self.target("--accept-migrations", "tls:0", "--migration-cert", cert, "--migration-key", key,
                          "--migration-ca", self.ca.path)
        scheme, _, port = self.plugin.info["migrations"].split(":")
        self.assertEqual(scheme, "tls")
        self.ca_dir = os.path.join(certs, "ca")
        self.port = port

    def endpoint(self, client: Tuple[str, str]) -> str:
        return (f"ssl:host=localhost:port={self.port}:caCertsDir={self.ca_dir}"
                f":certKey={client[0]}:privateKey={client[1]}")

    def test_a_source_with_a_certificate_from_the_authority_migrates(self) -> Any:
        return self.migrate_and_check(self.endpoint(self.good))

    @defer.inlineCallbacks
    def test_a_source_with_a_certificate_from_another_authority_is_refused(self) -> Any:
        domid, config = yield self.guest()
        e = yield self.assertFailure(self.ctx.migrate(domid, self.endpoint(self.stranger)), MigrationFailed)
        self.assertEqual(e.side, "target")
        yield self.until(lambda: self.state(domid) == "running", 20)
        self.assertEqual(_of(self.plugin.records(), config["c_info"]["uuid"]), [])


class NoContextTests(MovingTestCase):
    """A listener whose service has no Context open (between libxl
    sessions) refuses migrations; the domain stays on its source."""

    @defer.inlineCallbacks
    def test_a_migration_while_no_context_is_open_is_refused_and_the_domain_runs_on(self) -> Any:
        from txlibxl.migration import MigrationListener, migration_endpoint

        sockets = tempfile.mkdtemp(prefix="txm", dir="/tmp")
        self.addCleanup(shutil.rmtree, sockets, True)
        failures: List[Exception] = []
        listener = MigrationListener(None, on_failure=failures.append, current=lambda: None)
        path = os.path.join(sockets, "none.sock")
        yield listener.listen(migration_endpoint(reactor, unix=path))
        self.addCleanup(listener.stop)
        domid, _ = yield self.guest()
        e = yield self.assertFailure(self.ctx.migrate(domid, f"unix:path={path}"), MigrationFailed)
        self.assertEqual(e.side, "target")
        self.assertIn("no libxl context", str(e))
        self.assertEqual(len(failures), 1)
        yield self.until(lambda: self.state(domid) == "running", 20)
        yield self.assertQuiet()

    def test_a_listener_takes_a_context_or_current_not_both_nor_neither(self) -> None:
        from txlibxl.migration import MigrationListener

        self.assertRaises(ValueError, MigrationListener, None)
        self.assertRaises(ValueError, MigrationListener, self.ctx, current=lambda: self.ctx)
