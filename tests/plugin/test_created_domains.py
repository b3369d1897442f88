"""
``twistd libxl-events`` reports domains that libxl itself builds (here
through :meth:`txlibxl.context.Context.create` in the test process) as
``new`` records, as it does for every other domain: the daemon runs
against the same simulated host as the test, pointed at it the way it
would be pointed at a host started beforehand (the host's environment and
its shim preloaded, no ``--simulate``).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List

import treq
from twisted.internet import defer, reactor, task
from twisted.web.client import HTTPConnectionPool

from txlibxl.daemon.records import check_record

from .test_twistd import CHECKOUT, TWISTD, SSEReader, _Output, _twistd_module_exists

try:
    from txlibxl.testing import SimulatedHostTestCase
except ImportError as e:  # pragma: no cover - the fixture is part of the package
    from twisted.trial.unittest import SkipTest

    raise SkipTest(f"txlibxl.testing is unavailable: {e}")


class CreatedDomainTests(SimulatedHostTestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        _twistd_module_exists()
        from txlibxl.context import Context

        self.tmp = tempfile.mkdtemp(prefix="txlx-created-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.kernel = os.path.join(self.tmp, "vmlinuz")
        with open(self.kernel, "wb") as f:
            f.write(b"\x7fELF simulated kernel")
        self.ctx = Context(reactor)
        self.addCleanup(self.ctx.close)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    @defer.inlineCallbacks
    def start_daemon(self) -> Any:
        """``twistd -n libxl-events`` on this test's host: its base URL."""
        ready = os.path.join(self.tmp, "ready.json")
        args = TWISTD + [
            "-n", "--pidfile=", "--logfile", os.path.join(self.tmp, "twistd.log"),
            "libxl-events",
            "--listen", "tcp:0:interface=127.0.0.1",
            "--output", os.path.join(self.tmp, "events.jsonl"),
            "--ready-file", ready,
            "--rescan-interval", "1",
            # Its own: the default one is for one daemon per host, and other
            # tests run daemons beside this one.
            "--state-dir", os.path.join(self.tmp, "state"),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (CHECKOUT, env.get("PYTHONPATH")) if p)
        env.update(self.host.environment(preload=True))
        proto = _Output()
        reactor.spawnProcess(proto, sys.executable, args, env=env, path=self.tmp)
        self.addCleanup(self.stop_daemon, proto)
        for _ in range(600):
            if os.path.exists(ready) or proto.ended.called:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        if not os.path.exists(ready):
            self.fail("twistd libxl-events did not become ready:\n" + proto.output.decode(errors="replace"))
        with open(ready, encoding="utf-8") as f:
            _, host, port = json.load(f)["listen"][0].split(":")
        return f"http://{host}:{port}"

    @defer.inlineCallbacks
    def stop_daemon(self, proto: _Output) -> Any:
        if not proto.ended.called:
            proto.transport.signalProcess("TERM")
        timer = reactor.callLater(30, lambda: proto.ended.called or proto.transport.signalProcess("KILL"))
        yield proto.ended
        if timer.active():
            timer.cancel()

    @defer.inlineCallbacks
    def stream(self, base: str) -> Any:
        response = yield treq.get(base + "/events?since=0", pool=self.pool, unbuffered=True)
        self.assertEqual(response.code, 200)
        reader = SSEReader()
        response.deliverBody(reader)
        self.addCleanup(lambda: reader.done.called or reader.stop())
        return reader

    def config(self, name: str) -> Dict[str, Any]:
        return {
            "c_info": {"type": "pv", "name": name},
            "b_info": {"max_vcpus": 1, "max_memkb": 65536, "target_memkb": 65536,
                       "kernel": self.kernel, "type.pv": {}},
            "nics": [{"devid": 0, "bridge": "xenbr0"}],
        }

    @defer.inlineCallbacks
    def test_a_domain_created_through_libxl_is_reported_new_then_dead(self) -> Any:
        base = yield self.start_daemon()
        reader = yield self.stream(base)
        domid = yield self.ctx.create(self.config("built1"))
        uuid = self.ctx.domain_info(domid).uuid

        def records(kind: str) -> Any:
            return lambda events: [e["data"] for e in events if e["data"]["type"] == kind and e["data"]["domid"] == domid]

        events: List[Any] = yield reader.wait_for(lambda ev: records("new")(ev))
        [new] = records("new")(events)
        check_record(new)
        self.assertEqual((new["name"], new["uuid"]), ("built1", uuid))
        yield self.ctx.destroy(domid)
        events = yield reader.wait_for(lambda ev: records("death")(ev))
        [death] = records("death")(events)
        self.assertEqual(death["uuid"], uuid)
