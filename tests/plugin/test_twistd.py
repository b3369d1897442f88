"""
``twistd -n libxl-events --simulate`` run for real, as operators run it: a
subprocess serving HTTP on an ephemeral port and writing JSON lines, with
a simulated Xen host as its child; the tests drive the host through its
control socket and read what the plugin publishes.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import treq
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import HTTPConnectionPool

from txlibxl.daemon.records import check_record
from txlibxl.sim.control import ControlClient

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# twistd as a module of this interpreter (twisted.scripts.twistd has no
# __main__ guard).
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


def _environment() -> Dict[str, str]:
    env = dict(os.environ)
    # The checkout on sys.path: twistd finds twisted/plugins/txlibxl_events.py
    # there whatever the install mode.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (CHECKOUT, env.get("PYTHONPATH")) if p)
    for name in ("LD_PRELOAD", "XENSTORED_PATH", "TXLIBXL_SIM_HYPERCALL", "TXLIBXL_SIM_ROOT"):
        env.pop(name, None)
    return env


def _twistd_module_exists() -> None:
    try:
        import twisted.scripts.twistd  # noqa: F401
    except ImportError as e:  # pragma: no cover
        raise SkipTest(f"twistd is not available: {e}")


class _Output(ProcessProtocol):
    """A child's output (both streams, and standard error alone) and its end."""

    def __init__(self) -> None:
        self.output = b""
        self.stderr = b""
        self.ended: defer.Deferred = defer.Deferred()
        self.status: Any = None

    def outReceived(self, data: bytes) -> None:
        self.output = (self.output + data)[-200000:]

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-200000:]
        self.outReceived(data)

    def processEnded(self, reason: Any) -> None:
        self.status = reason.value
        self.ended.callback(reason.value)


async def _run(args: List[str], timeout: float = 60.0) -> Tuple[Any, str]:
    """Run a command to its end: (its exit reason, its output)."""
    proto = await _run_protocol(args, timeout)
    return proto.status, proto.output.decode("utf-8", "replace")


async def _run_protocol(args: List[str], timeout: float = 60.0, path: str = CHECKOUT) -> _Output:
    """Run a command to its end (killed after C{timeout} seconds)."""
    proto = _Output()
    reactor.spawnProcess(proto, args[0], args, env=_environment(), path=path)
    timer = reactor.callLater(timeout, lambda: proto.transport.signalProcess("KILL"))
    try:
        await proto.ended
    finally:
        if timer.active():
            timer.cancel()
    return proto


class SSEReader(Protocol):
    """
    Reads a Server-Sent Events body: ``events`` is a list of dicts with
    ``id``, ``event`` and ``data`` (decoded JSON) as they arrive.
    """

    def __init__(self) -> None:
        self.events: List[Dict[str, Any]] = []
        self._buffer = ""
        self._waiters: List[Tuple[Any, defer.Deferred]] = []
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data.decode()
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            fields: Dict[str, Any] = {}
            for line in block.split("\n"):
                if not line or line.startswith(":"):
                    continue
                key, _, value = line.partition(":")
                fields[key] = value[1:] if value.startswith(" ") else value
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                self.events.append(fields)
        self._check()

    def _check(self) -> None:
        for entry in list(self._waiters):
            predicate, d = entry
            if predicate(self.events):
                self._waiters.remove(entry)
                d.callback(list(self.events))

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> defer.Deferred:
        """Fires with the events once C{predicate(events)} holds."""
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((predicate, d))
        self._check()
        d.addTimeout(timeout, reactor)
        return d

    def stop(self) -> None:
        self.transport.stopProducing()

    def connectionLost(self, reason: Any) -> None:
        self.end = reason
        if not self.done.called:
            self.done.callback(None)


async def metric_samples(text: str) -> Dict[Any, float]:
    """The exposition parsed by prometheus_client: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    found: Dict[Any, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _deaths(n: int) -> Any:
    return lambda events: sum(1 for e in events if e.get("event") == "death") >= n


class PluginProcess:
    """One ``twistd -n libxl-events --simulate`` process and its simulated host."""

    def __init__(self, testcase: TestCase, scenario: Optional[str] = None, extra: Tuple[str, ...] = ()) -> None:
        self.testcase = testcase
        self.tmp = tempfile.mkdtemp(prefix="txlx-plugin-", dir="/tmp")
        testcase.addCleanup(shutil.rmtree, self.tmp, True)
        self.rundir = os.path.join(self.tmp, "host")
        self.jsonl = os.path.join(self.tmp, "events.jsonl")
        self.ready = os.path.join(self.tmp, "ready.json")
        simulate = ["--simulate", scenario] if scenario else ["--simulate"]
        self.args = TWISTD + [
            "-n", "--pidfile=", "--logfile", os.path.join(self.tmp, "twistd.log"),
            "libxl-events", *simulate,
            "--simulate-rundir", self.rundir,
            "--listen", "tcp:0:interface=127.0.0.1",
            "--output", self.jsonl,
            "--ready-file", self.ready,
            "--max-backoff", "0.5",
            "--rescan-interval", "1",
            *extra,
        ]
        self.proto = _Output()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.base = ""
        self.control: Any = None
        self.streams: List[SSEReader] = []

    def log(self) -> str:
        try:
            with open(os.path.join(self.tmp, "twistd.log"), encoding="utf-8", errors="replace") as f:
                return f.read()[-20000:]
        except OSError:
            return self.proto.output.decode("utf-8", "replace")

    async def start(self) -> "PluginProcess":
        _twistd_module_exists()
        reactor.spawnProcess(self.proto, sys.executable, self.args, env=_environment(), path=self.tmp)
        self.testcase.addCleanup(self.stop)
        for _ in range(600):
            if os.path.exists(self.ready) or self.proto.ended.called:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        if not os.path.exists(self.ready):
            raise AssertionError("twistd libxl-events did not become ready:\n" + self.log() + self.proto.output.decode())
        with open(self.ready, encoding="utf-8") as f:
            info = json.load(f)
        self.info = info
        _, host, port = info["listen"][0].split(":")
        self.base = f"http://{host}:{port}"
        with open(os.path.join(self.rundir, "host.json"), encoding="utf-8") as f:
            self.host = json.load(f)
        self.control = await ControlClient.connect(reactor, self.host["control"])
        return self

    async def get(self, path: str, headers: Optional[Dict[str, List[str]]] = None) -> Any:
        return await treq.get(self.base + path, headers=headers, pool=self.pool)

    async def get_json(self, path: str) -> Tuple[int, Any]:
        response = await self.get(path)
        return response.code, await response.json()

    async def stream(self, headers: Optional[Dict[str, List[str]]] = None, query: str = "") -> SSEReader:
        response = await treq.get(self.base + "/events" + query, headers=headers, pool=self.pool, unbuffered=True)
        assert response.code == 200, response.code
        reader = SSEReader()
        response.deliverBody(reader)
        self.streams.append(reader)
        return reader

    def records(self) -> List[Dict[str, Any]]:
        with open(self.jsonl, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    async def terminate(self) -> Any:
        """SIGTERM, and the way the process ended."""
        if not self.proto.ended.called:
            self.proto.transport.signalProcess("TERM")
        timer = reactor.callLater(30, self._kill)
        try:
            return await self.proto.ended
        finally:
            if timer.active():
                timer.cancel()

    def _kill(self) -> None:
        if not self.proto.ended.called:
            self.proto.transport.signalProcess("KILL")

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.disconnect()
            self.control = None
        await self.terminate()
        for reader in self.streams:  # the plugin ended them as it stopped
            if not reader.done.called:
                reader.stop()
            await reader.done
        host_pid = getattr(self, "host", {}).get("pid")
        if host_pid:
            try:
                os.kill(host_pid, signal.SIGKILL)  # only if twistd failed to stop it
            except OSError:
                pass
        await self.pool.closeCachedConnections()


class EventStreamTests(TestCase):
    timeout = 120

    async def _lifecycle(self, plugin: PluginProcess) -> List[Dict[str, Any]]:
        control = plugin.control
        a = await control.create_domain(name="web1", disks=[{"vdev": "hdc", "cdrom": True}])
        b = await control.create_domain(name="db1")
        return [a, b]

    async def test_events_reach_sse_and_json_lines_with_the_documented_schema(self) -> None:
        plugin = await PluginProcess(self, extra=("--disk-eject",)).start()
        stream = await plugin.stream(query="?since=0")
        a, b = await self._lifecycle(plugin)
        await stream.wait_for(lambda ev: sum(1 for e in ev if e["event"] == "new") >= 2)
        await plugin.control.eject(a["domid"], "hdc")
        await stream.wait_for(lambda ev: any(e["event"] == "disk_eject" for e in ev))
        await plugin.control.shutdown(b["domid"], "crash")
        await stream.wait_for(lambda ev: any(e["event"] == "shutdown" for e in ev))
        await plugin.control.destroy([a["domid"], b["domid"]])
        events = await stream.wait_for(_deaths(2))

        sse = [e["data"] for e in events]
        for record in sse:
            check_record(record)
        self.assertEqual([int(e["id"]) for e in events], [r["seq"] for r in sse])
        self.assertEqual([r["seq"] for r in sse], list(range(1, len(sse) + 1)))
        self.assertEqual([e["event"] for e in events], [r["type"] for r in sse])
        by_kind = sorted((r["type"], r["name"], r["reason"], r["vdev"]) for r in sse)
        self.assertEqual(
            by_kind,
            sorted(
                [
                    ("new", "web1", None, None),
                    ("new", "db1", None, None),
                    ("disk_eject", "web1", None, "hdc"),
                    ("shutdown", "db1", "crash", None),
                    ("death", "web1", None, None),
                    ("death", "db1", None, None),
                ]
            ),
        )
        for _ in range(100):  # the file is written as each record is published
            if len(plugin.records()) >= len(sse):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        lines = plugin.records()
        for record in lines:
            check_record(record)
        self.assertEqual(lines, sse)

    async def test_domains_metrics_and_healthz_describe_the_host(self) -> None:
        plugin = await PluginProcess(self).start()
        stream = await plugin.stream()
        a, _ = await self._lifecycle(plugin)
        await stream.wait_for(lambda ev: sum(1 for e in ev if e["event"] == "new") >= 2)
        code, domains = await plugin.get_json("/domains")
        self.assertEqual(code, 200)
        self.assertFalse(domains["stale"])
        rows = {row["name"]: row for row in domains["domains"]}
        self.assertEqual(set(rows), {"Domain-0", "web1", "db1"})
        self.assertTrue(rows["web1"]["watched"])
        self.assertFalse(rows["Domain-0"]["watched"])
        self.assertEqual(rows["web1"]["domid"], a["domid"])
        code, health = await plugin.get_json("/healthz")
        self.assertEqual((code, health["healthy"], health["status"]), (200, True, "running"))
        response = await plugin.get("/metrics")
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        metrics = await metric_samples(await response.text())
        self.assertEqual(metrics[("txlibxl_events_total", (("type", "new"),))], 2)
        self.assertEqual(metrics[("txlibxl_events_total", (("type", "death"),))], 0)
        self.assertEqual(metrics[("txlibxl_watched_domains", ())], 2)
        self.assertEqual(metrics[("txlibxl_disasters_total", ())], 0)
        self.assertEqual(metrics[("txlibxl_up", ())], 1)
        self.assertEqual(metrics[("txlibxl_event_latency_seconds_count", (("type", "new"),))], 2)
        self.assertEqual(metrics[("txlibxl_event_latency_seconds_bucket", (("le", "+Inf"), ("type", "new")))], 2)
        self.assertGreater(metrics[("txlibxl_osevent_fds", ())], 0)
        self.assertEqual(metrics[("txlibxl_sink_queue_depth", (("sink", "http"),))], 0)
        self.assertEqual(metrics[("txlibxl_sink_queue_depth", (("sink", "jsonl"),))], 0)
        for name in ("txlibxl_osevent_timers", "txlibxl_osevent_fd_registrations", "txlibxl_libxl_children",
                     "txlibxl_reconnects_total", "process_cpu_seconds_total", "process_open_fds"):
            self.assertIn(name, {n for n, _ in metrics}, name)
        self.assertGreater(metrics[("txlibxl_libxl_calls_total", (("call", "libxl_list_domain"),))], 0)

    async def test_a_stream_resumes_after_its_last_event_id(self) -> None:
        plugin = await PluginProcess(self).start()
        first = await plugin.stream()
        await self._lifecycle(plugin)
        await first.wait_for(lambda ev: len(ev) >= 2)
        seen = first.events[0]["id"]
        resumed = await plugin.stream(headers={"Last-Event-ID": [seen]})
        events = await resumed.wait_for(lambda ev: len(ev) >= 1)
        self.assertEqual([e["id"] for e in events], [e["id"] for e in first.events[1:]])
        response = await plugin.get("/events", headers={"Last-Event-ID": ["not-a-number"]})
        self.assertEqual(response.code, 400)
        await response.text()


class RecoveryTests(TestCase):
    timeout = 120

    async def test_losing_xenstored_loses_and_repeats_no_event(self) -> None:
        plugin = await PluginProcess(self).start()
        stream = await plugin.stream(query="?since=0")
        control = plugin.control
        gone = await control.create_domain(name="gone")
        crashed = await control.create_domain(name="crashed")
        later = await control.create_domain(name="later")
        await stream.wait_for(lambda ev: sum(1 for e in ev if e["event"] == "new") >= 3)
        await control.shutdown(crashed["domid"], "crash")
        await stream.wait_for(lambda ev: any(e["event"] == "shutdown" for e in ev))

        await control.fault("xenstored_die")
        for _ in range(200):
            _, health = await plugin.get_json("/healthz")
            if not health["healthy"]:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(health["status"], "recovering")
        await control.destroy([gone["domid"]])
        await control.shutdown(later["domid"], "poweroff")
        await control.fault("xenstored_restart")
        events = await stream.wait_for(
            lambda ev: any(e["event"] == "death" for e in ev) and sum(1 for e in ev if e["event"] == "shutdown") >= 2
        )
        newcomer = await control.create_domain(name="newcomer")
        events = await stream.wait_for(lambda ev: sum(1 for e in ev if e["event"] == "new") >= 4)
        await control.destroy([crashed["domid"], later["domid"], newcomer["domid"]])
        events = await stream.wait_for(_deaths(4))

        records = [e["data"] for e in events]
        self.assertEqual([r["seq"] for r in records], list(range(1, len(records) + 1)))
        summary = [(r["type"], r["name"], r["reason"], r["reconciled"]) for r in records]
        expected = [
            ("new", "gone", None, False),
            ("new", "crashed", None, False),
            ("new", "later", None, False),
            ("shutdown", "crashed", "crash", False),  # not repeated after recovery
            ("death", "gone", None, True),  # died while xenstored was down
            ("shutdown", "later", "poweroff", True),  # shut down while it was down
            ("new", "newcomer", None, False),
        ]
        self.assertEqual(summary[: len(expected)], expected)
        self.assertEqual(
            sorted(summary[len(expected):]),
            sorted([("death", name, None, False) for name in ("crashed", "later", "newcomer")]),
        )
        metrics = await metric_samples(await (await plugin.get("/metrics")).text())
        self.assertEqual(metrics[("txlibxl_disasters_total", ())], 1)
        self.assertEqual(metrics[("txlibxl_reconnects_total", ())], 1)


class StopTests(TestCase):
    timeout = 120

    async def test_sigterm_ends_streams_and_stops_the_simulated_host(self) -> None:
        plugin = await PluginProcess(self).start()
        stream = await plugin.stream()
        await plugin.control.disconnect()
        plugin.control = None
        reason = await plugin.terminate()
        # twistd re-raises the signal it stopped for once it has shut down
        # (systemd counts a SIGTERM exit as a clean stop).
        self.assertIn(getattr(reason, "signal", None) or getattr(reason, "exitCode", None), (signal.SIGTERM, 0), repr(reason))
        log = plugin.log()
        self.assertIn("libxl-events stopped after 0 events", log)
        self.assertIn("Server Shut Down", log)
        self.assertNotIn("Traceback", log)
        await stream.done
        self.assertEqual([e["event"] for e in stream.events], ["shutdown"])
        self.assertFalse(os.path.exists(plugin.ready))
        for _ in range(100):
            try:
                os.kill(plugin.host["pid"], 0)
            except OSError:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail("the simulated host outlived twistd")


def _gone(pid: int) -> bool:
    """Whether C{pid} has exited (a zombie nobody reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


class KillTests(TestCase):
    timeout = 120

    async def test_sigkill_leaves_no_simulated_host_behind(self) -> None:
        plugin = await PluginProcess(self).start()
        await plugin.control.disconnect()
        plugin.control = None
        host = plugin.host["pid"]
        self.assertFalse(_gone(host))
        plugin.proto.transport.signalProcess("KILL")
        await plugin.proto.ended
        for _ in range(200):
            if _gone(host):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail("the simulated host outlived twistd killed with SIGKILL")


class _HeadReader(ProcessProtocol):
    """Reads C{lines} lines of the child's standard output, then closes it, as ``| head`` does."""

    def __init__(self, lines: int) -> None:
        self.wanted = lines
        self.lines: List[bytes] = []
        self._buffer = b""
        self.closed: defer.Deferred = defer.Deferred()
        self.ended: defer.Deferred = defer.Deferred()
        self.status: Any = None

    def outReceived(self, data: bytes) -> None:
        if self.closed.called:
            return
        self._buffer += data
        while b"\n" in self._buffer and len(self.lines) < self.wanted:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self.lines.append(line)
        if len(self.lines) >= self.wanted:
            self.transport.closeChildFD(1)
            self.closed.callback(None)

    def processEnded(self, reason: Any) -> None:
        self.status = reason.value
        self.ended.callback(reason.value)


class ClosedOutputTests(TestCase):
    """A closed standard output ends the JSON lines sink: one log line, no traceback."""

    timeout = 120

    def setUp(self) -> None:
        _twistd_module_exists()
        self.tmp = tempfile.mkdtemp(prefix="txlx-head-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.log = os.path.join(self.tmp, "twistd.log")

    async def head(self, *extra: str) -> _HeadReader:
        proto = _HeadReader(3)
        args = TWISTD + ["-n", "--pidfile=", "--logfile", self.log, "libxl-events", "--simulate", "demo",
                         "--output", "-", *extra]
        reactor.spawnProcess(proto, args[0], args, env=_environment(), path=self.tmp)
        self.addCleanup(lambda: proto.ended.called or proto.transport.signalProcess("KILL"))
        await proto.closed.addTimeout(60, reactor)
        return proto

    def read_log(self) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    async def test_the_only_sink_closed_stops_the_daemon(self) -> None:
        proto = await self.head()
        reason = await proto.ended.addTimeout(30, reactor)
        log = self.read_log()
        self.assertEqual(getattr(reason, "exitCode", None), 0, log)
        self.assertEqual([json.loads(line)["seq"] for line in proto.lines], [1, 2, 3])
        self.assertNotIn("Traceback", log)
        ended = [line for line in log.splitlines() if "sink has ended" in line]
        self.assertEqual(len(ended), 1, log)
        self.assertIn("standard output was closed (Broken pipe); no sink left, stopping", ended[0])

    async def test_with_other_sinks_the_daemon_goes_on(self) -> None:
        ready = os.path.join(self.tmp, "ready.json")
        proto = await self.head("--listen", "tcp:0:interface=127.0.0.1", "--ready-file", ready)
        for _ in range(400):
            if "sink has ended" in self.read_log():
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        with open(ready) as f:
            base = "http://" + json.load(f)["listen"][0].split(":", 1)[1]
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = await treq.get(base + "/healthz", pool=pool)
        self.assertEqual(response.code, 200)
        await response.text()
        await pool.closeCachedConnections()
        self.assertFalse(proto.ended.called)
        log = self.read_log()
        self.assertNotIn("Traceback", log)
        [ended] = [line for line in log.splitlines() if "sink has ended" in line]
        self.assertIn("the other sinks go on", ended)
        proto.transport.signalProcess("TERM")
        await proto.ended


class UnixSocketTests(TestCase):
    """The HTTP endpoints have no authentication: a unix socket is private by default."""

    timeout = 120

    def socket_path(self) -> str:
        directory = tempfile.mkdtemp(prefix="txlx-sock-", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory, True)
        return os.path.join(directory, "events.sock")

    async def test_a_unix_socket_is_created_0600(self) -> None:
        import stat

        path = self.socket_path()
        await PluginProcess(self, extra=("--listen", f"unix:{path}")).start()
        mode = os.stat(path).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o600)

    async def test_a_mode_and_a_group_open_it_to_that_group(self) -> None:
        import grp
        import stat

        others = [g for g in grp.getgrall() if g.gr_gid != os.getegid()]
        if os.geteuid() != 0 or not others:
            raise SkipTest("giving a socket to another group needs root and another group")
        group = others[0]
        path = self.socket_path()
        plugin = await PluginProcess(
            self, extra=("--listen", f"unix:{path}:mode=660", "--listen-group", group.gr_name)
        ).start()
        info = os.stat(path)
        self.assertEqual((stat.S_IMODE(info.st_mode), info.st_gid), (0o660, group.gr_gid))
        self.assertIn(f"unix:{path}", plugin.info["listen"])


class LogTests(TestCase):
    """What operators read in the log: no debug lines, no request per scrape, each thing said once."""

    timeout = 120

    async def test_by_default_no_debug_no_access_log_and_head_is_quiet(self) -> None:
        plugin = await PluginProcess(self).start()
        for path in ("/healthz", "/metrics", "/domains"):
            await (await plugin.get(path)).text()
        response = await treq.head(plugin.base + "/healthz", pool=plugin.pool)
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.content(), b"")
        get = await plugin.get("/healthz")
        body = await get.content()
        self.assertEqual(response.headers.getRawHeaders(b"content-length"), [b"%d" % len(body)])
        await plugin.terminate()
        log = plugin.log()
        self.assertNotIn("#debug]", log)
        self.assertNotIn('"GET /metrics', log)
        self.assertNotIn("HEAD request", log)
        self.assertNotIn("Starting factory <twisted.web.server.Site", log)

    async def test_log_level_debug_and_access_log_bring_them_back(self) -> None:
        plugin = await PluginProcess(self, extra=("--log-level", "debug", "--access-log")).start()
        await (await plugin.get("/metrics")).text()
        await plugin.terminate()
        log = plugin.log()
        self.assertIn("#debug]", log)
        self.assertIn('"GET /metrics HTTP/1.1" 200', log)

    async def test_a_lost_xenstored_is_said_once_and_libxl_once(self) -> None:
        plugin = await PluginProcess(self).start()
        await plugin.control.fault("xenstored_die")
        for _ in range(200):
            _, health = await plugin.get_json("/healthz")
            if not health["healthy"]:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        await task.deferLater(reactor, 0.5, lambda: None)  # a few reconnection attempts
        await plugin.control.fault("xenstored_restart")
        for _ in range(200):
            _, health = await plugin.get_json("/healthz")
            if health["healthy"]:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        await plugin.terminate()
        log = plugin.log()
        self.assertEqual(log.count("lost the xenstore connection"), 1, log)
        self.assertIn("cannot connect to xenstore", log)  # libxl's own word, once a line
        self.assertNotIn("libxl: libxl:", log)

    async def test_a_negative_since_is_a_400_naming_the_parameter(self) -> None:
        plugin = await PluginProcess(self).start()
        code, body = await plugin.get_json("/events?since=-5")
        self.assertEqual(code, 400)
        self.assertEqual(body, {"error": "the since parameter must be a sequence number (an integer >= 0), not '-5'"})


class SequenceAcrossRestartsTests(TestCase):
    """With --state-dir, seq goes on across restarts and is never reused after a SIGKILL."""

    timeout = 180

    async def run_once(self, state: str, kill: bool, expect_new: int = 1) -> List[int]:
        plugin = await PluginProcess(self, extra=("--state-dir", state)).start()
        stream = await plugin.stream()
        await plugin.control.create_domain(name=f"dom{len(os.listdir(os.path.dirname(state)))}")
        events = await stream.wait_for(lambda ev: sum(1 for e in ev if e["event"] == "new") >= expect_new)
        await plugin.control.disconnect()
        plugin.control = None
        if kill:
            plugin.proto.transport.signalProcess("KILL")
            await plugin.proto.ended
        else:
            await plugin.terminate()
        return [int(e["id"]) for e in events]

    async def test_seq_goes_on_after_a_stop_and_skips_ahead_after_a_kill(self) -> None:
        state = os.path.join(tempfile.mkdtemp(prefix="txlx-state-", dir="/tmp"), "state")
        self.addCleanup(shutil.rmtree, os.path.dirname(state), True)
        first = await self.run_once(state, kill=False)
        second = await self.run_once(state, kill=True)
        third = await self.run_once(state, kill=False)
        self.assertEqual(first, [1])
        self.assertEqual(second, [2])  # a clean stop leaves no gap
        self.assertGreater(third[0], 2)  # the killed run's block is never reused
        self.assertEqual(third, [1002])
        self.assertEqual(stat_mode(state), 0o700)

    async def test_a_resume_from_an_earlier_run_is_told_of_the_gap(self) -> None:
        state = os.path.join(tempfile.mkdtemp(prefix="txlx-state-", dir="/tmp"), "state")
        self.addCleanup(shutil.rmtree, os.path.dirname(state), True)
        await self.run_once(state, kill=False)
        plugin = await PluginProcess(self, extra=("--state-dir", state)).start()
        await plugin.control.create_domain(name="later")
        resumed = await plugin.stream(headers={"Last-Event-ID": ["1"]})
        events = await resumed.wait_for(lambda ev: any(e["event"] == "new" for e in ev))
        self.assertEqual([(e["event"], e.get("id")) for e in events], [("new", "2")])


def stat_mode(path: str) -> int:
    import stat

    return stat.S_IMODE(os.stat(path).st_mode)


def hotplug_cdrom_nodes(domid: int, uuid: str, name: str, vdev: str) -> List[Tuple[str, str]]:
    """
    The xenstore nodes libxl writes when it adds CD-ROM C{vdev} to a running
    domain (frontend, backend, libxl's copy), as the simulator lays them out.
    """
    from txlibxl.sim.toolstack import DiskSpec, DomainSpec, devices_of, domain_layout

    spec = DomainSpec.from_args({"disks": [{"vdev": vdev, "cdrom": True}]}, name=name)
    devices = devices_of(domid, spec)
    [disk] = [d for d in devices if d.kind == "vbd"]
    prefixes = (disk.frontend, disk.backend, disk.libxl)
    return [
        (node.path, node.value)
        for node in domain_layout(domid, uuid, spec, devices)
        if any(node.path == p or node.path.startswith(p + "/") for p in prefixes)
    ]


class DiscoveryTests(TestCase):
    timeout = 120

    async def test_a_paused_domain_is_new_at_once_not_at_the_rescan(self) -> None:
        plugin = await PluginProcess(self, extra=("--rescan-interval", "60")).start()
        stream = await plugin.stream()
        dom = await plugin.control.create_domain(name="built", paused=True)
        events = await stream.wait_for(lambda ev: any(e["event"] == "new" for e in ev), timeout=3)
        self.assertEqual([(e["data"]["domid"], e["data"]["name"]) for e in events], [(dom["domid"], "built")])


class HotplugCdromTests(TestCase):
    timeout = 120

    async def xenstore_write(self, plugin: PluginProcess, pairs: List[Tuple[str, str]]) -> None:
        args = ["/usr/bin/xenstore-write"] + [x for pair in pairs for x in pair]
        proto = _Output()
        env = {"XENSTORED_PATH": plugin.host["xenstored"], "PATH": "/usr/bin:/bin"}
        reactor.spawnProcess(proto, args[0], args, env=env)
        reason = await proto.ended
        self.assertIsNone(getattr(reason, "exitCode", None) or None, proto.output)

    async def test_a_cdrom_added_after_its_domain_is_armed_is_watched_for_ejects(self) -> None:
        if not os.path.exists("/usr/bin/xenstore-write"):
            raise SkipTest("xenstore-write (xenstore-utils) is not installed")
        plugin = await PluginProcess(self, extra=("--disk-eject",)).start()
        stream = await plugin.stream()
        dom = await plugin.control.create_domain(name="late-cd")
        await stream.wait_for(lambda ev: any(e["event"] == "new" for e in ev))
        # libxl adds the drive (xl block-attach), then the guest ejects its
        # medium: QEMU writes the frontend's eject node.
        nodes = hotplug_cdrom_nodes(dom["domid"], dom["uuid"], "late-cd", "hdc")
        await self.xenstore_write(plugin, nodes)
        for _ in range(100):
            code, domains = await plugin.get_json("/domains")
            [row] = [r for r in domains["domains"] if r["name"] == "late-cd"]
            if row["cdroms"]:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(row["cdroms"], ["hdc"])
        frontend = [p for p, _ in nodes if p.startswith("/local/domain/") and p.endswith("/device-type")][0]
        await self.xenstore_write(plugin, [(frontend.rsplit("/", 1)[0] + "/eject", "eject")])
        events = await stream.wait_for(lambda ev: any(e["event"] == "disk_eject" for e in ev), timeout=10)
        [eject] = [e["data"] for e in events if e["event"] == "disk_eject"]
        self.assertEqual((eject["domid"], eject["vdev"]), (dom["domid"], "hdc"))


class CommandLineTests(TestCase):
    timeout = 120

    async def test_twistd_help_lists_libxl_events(self) -> None:
        _twistd_module_exists()
        _, output = await _run(TWISTD + ["--help"])
        self.assertIn("libxl-events", output)

    async def test_a_bad_option_is_a_usage_error_not_a_traceback(self) -> None:
        _twistd_module_exists()
        reason, output = await _run(TWISTD + ["-n", "--pidfile=", "libxl-events", "--simulate", "--listen", "nonsense:1"])
        self.assertEqual(getattr(reason, "exitCode", None), 2)
        self.assertIn("--listen 'nonsense:1' is not a usable endpoint", output)
        self.assertNotIn("Traceback", output)

    async def test_a_usage_error_is_one_line_and_a_pointer_to_help_not_the_usage(self) -> None:
        _twistd_module_exists()
        proto = await _run_protocol(TWISTD + ["-n", "--pidfile=", "libxl-events", "--simulate", "--no-such-option"])
        self.assertEqual(getattr(proto.status, "exitCode", None), 2)
        lines = proto.stderr.decode().splitlines()
        self.assertEqual(
            lines,
            [
                "twistd libxl-events: option --no-such-option not recognized",
                "Try 'twistd libxl-events --help' for the options.",
            ],
        )
        self.assertEqual(proto.output, proto.stderr)  # nothing on standard output

    async def test_without_xen_or_simulate_it_exits_at_once_saying_how_to_simulate(self) -> None:
        from txlibxl.daemon.tap import xen_available

        _twistd_module_exists()
        if xen_available():
            raise SkipTest("this machine runs on Xen: the plugin would start")
        reason, output = await _run(TWISTD + ["-n", "--pidfile=", "libxl-events"])
        self.assertEqual(getattr(reason, "exitCode", None), 1)
        self.assertIn("no Xen here", output)
        self.assertIn("--simulate", output)
        self.assertNotIn("Traceback", output)


class StartupFailureTests(TestCase):
    """
    Start-up either succeeds or the process ends with a non-zero status
    and one line saying why (systemd sees the failure).
    """

    timeout = 120

    def setUp(self) -> None:
        _twistd_module_exists()
        self.tmp = tempfile.mkdtemp(prefix="txlx-startup-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.log = os.path.join(self.tmp, "twistd.log")

    async def twistd(self, *args: str, logfile: bool = False) -> _Output:
        log = ["--logfile", self.log] if logfile else []
        return await _run_protocol(TWISTD + ["-n", "--pidfile=", *log, "libxl-events", *args], path=self.tmp)

    def critical_lines(self, text: str) -> List[str]:
        return [line for line in text.splitlines() if "#critical]" in line]

    async def test_a_port_already_taken_ends_the_process_before_the_simulated_host_starts(self) -> None:
        import socket

        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proto = await self.twistd("--simulate", "--listen", f"tcp:{port}:interface=127.0.0.1")
        output = proto.output.decode()
        self.assertEqual(getattr(proto.status, "exitCode", None), 1, output)
        [line] = self.critical_lines(output)
        self.assertIn(f"cannot listen on tcp:{port}:interface=127.0.0.1: Address already in use", line)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("simulated host", output)

    async def test_with_a_logfile_the_line_is_in_the_log_and_on_stderr(self) -> None:
        import socket

        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proto = await self.twistd("--simulate", "--listen", f"tcp:{port}:interface=127.0.0.1", logfile=True)
        self.assertEqual(getattr(proto.status, "exitCode", None), 1)
        with open(self.log) as f:
            [line] = self.critical_lines(f.read())
        self.assertIn("Address already in use", line)
        self.assertEqual(
            proto.stderr.decode().splitlines(),
            [f"twistd libxl-events: cannot listen on tcp:{port}:interface=127.0.0.1: Address already in use"],
        )

    async def test_a_ready_file_that_cannot_be_written_ends_the_process(self) -> None:
        proto = await self.twistd("--simulate", "--ready-file", os.path.join(self.tmp, "no-such-dir", "ready.json"))
        self.assertEqual(getattr(proto.status, "exitCode", None), 1)
        [line] = proto.stderr.decode().splitlines()
        self.assertIn("--ready-file", line)
        self.assertIn("No such file or directory", line)

    async def test_an_output_that_cannot_be_opened_is_one_line_not_a_traceback(self) -> None:
        proto = await self.twistd("--simulate", "--output", "/nonexistent-dir/x.jsonl")
        self.assertEqual(getattr(proto.status, "exitCode", None), 1)
        self.assertEqual(
            proto.output.decode().splitlines(),
            ["twistd libxl-events: --output '/nonexistent-dir/x.jsonl': No such file or directory"],
        )

    async def test_an_unexpected_start_up_error_exits_non_zero_with_one_line(self) -> None:
        # The simulated host refuses a run directory too long for its sockets.
        rundir = os.path.join(self.tmp, "x" * 120)
        proto = await self.twistd("--simulate", "--simulate-rundir", rundir)
        output = proto.output.decode()
        self.assertEqual(getattr(proto.status, "exitCode", None), 1, output)
        [line] = self.critical_lines(output)
        self.assertIn("cannot start: ValueError: run directory", line)
        self.assertNotIn("Traceback", output)  # at debug level, for developers
