"""
A fleet for real: three simulated hosts, each with its own ``twistd
libxl-events --amqp``, publishing to a three-node RabbitMQ cluster on
loopback (the stream replicated on all three) while a storm runs on every
host, and ``python -m txlibxl.fleet`` reading the stream.  Whatever fails
mid-storm (the node leading the stream, a daemon, the consumer), the
consumer ends with every record exactly once, each host's in order, none
missing.

The cluster is started once per test process (about 15 s) and stopped
when it exits; each test has a stream and an exchange of its own.  The
daemons and the consumer run on the test's reactor.  Under epoll every
test runs (about two minutes in all); under the other reactors only the
storm without faults does, which shows the sink and the consumer working
on that reactor: the fault runs exercise the broker and the processes,
not the reactor, and would add some six minutes of CI under the three
other reactors.
"""
from __future__ import annotations

import atexit
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet import reactor, task, threads
from twisted.trial.unittest import SkipTest, TestCase

from txlibxl.testing.simhost import start_simulated_host

from .broker import BrokerCluster, BrokerUnavailable, broker_available
from .processes import Consumer, Daemon, reactor_name, state_dir_supported, storm

HOSTS = ("xen1", "xen2", "xen3")




class _SharedCluster:
    """One three-node cluster for the tests of a class, started on first use."""

    cluster: Optional[BrokerCluster] = None
    failed: Optional[str] = None
    users = 0

    @classmethod
    def get(cls) -> BrokerCluster:
        if cls.failed:
            raise SkipTest(cls.failed)
        if cls.cluster is None:
            why = broker_available()
            if why:
                cls.failed = why
                raise SkipTest(why)
            try:
                cls.cluster = BrokerCluster(3).start()
            except BrokerUnavailable as e:
                cls.failed = f"RabbitMQ would not start here: {e}"
                raise SkipTest(cls.failed)
            atexit.register(cls.stop)
        return cls.cluster

    @classmethod
    def stop(cls) -> None:
        cluster, cls.cluster = cls.cluster, None
        if cluster is not None:
            cluster.stop()


def check_exactly_once(test: TestCase, got: List[Dict[str, Any]], daemons: Sequence[Daemon],
                       may_have_more: Sequence[str] = ()) -> Tuple[int, int]:
    """
    The consumer's records are the daemons' records, each once, each
    host's in seq order.  A host in C{may_have_more} was killed: its last
    record may have been spooled (and published) without reaching its
    JSON lines file.
    """
    seen: Dict[Tuple[str, int], Dict[str, Any]] = {}
    repeats = []
    last: Dict[str, int] = {}
    disorder = []
    for record in got:
        key = (record["host"], record["seq"])
        if key in seen:
            repeats.append(key)
        seen[key] = record
        if record["seq"] <= last.get(record["host"], 0):
            disorder.append(key)
        last[record["host"]] = record["seq"]
    truth = {(r["host"], r["seq"]): r for d in daemons for r in d.records()}
    missing = sorted(set(truth) - set(seen))
    extra = sorted(k for k in set(seen) - set(truth))
    test.assertEqual(repeats, [], "records the consumer holds twice")
    test.assertEqual(missing[:20], [], f"{len(missing)} records missing")
    test.assertEqual(disorder[:20], [], "records out of order")
    test.assertEqual([k for k in extra if k[0] not in may_have_more], [], "records no daemon wrote")
    test.assertLessEqual(len(extra), len(may_have_more), "more unwritten records than kills")
    differing = [k for k, r in truth.items() if seen[k] != r]
    test.assertEqual(differing[:5], [], "records that changed on the way")
    return len(truth), len(got)


class _FleetCase(TestCase):
    """Three hosts, their daemons and a consumer on the shared cluster."""

    timeout = 420
    ROUNDS = 6

    #: Tests that also run under the reactors other than epoll.
    every_reactor = ("test_a_storm_reaches_the_consumer_exactly_once",)

    def setUp(self) -> None:
        if reactor_name() != "epoll" and self.id().rsplit(".", 1)[-1] not in self.every_reactor:
            raise SkipTest("the fault runs and the page run under the epoll reactor only (see the module docstring)")
        self.cluster = _SharedCluster.get()
        self.name = self.id().rsplit(".", 1)[-1][5:40]
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)
        self.started = time.monotonic()

    async def fleet(self, daemon_order: Sequence[int] = (1, 2, 3), consumer_order: Sequence[int] = (3, 2, 1)) -> None:
        """Hosts, their daemons and the consumer, all running."""
        self.stream = f"fleet.{self.name}"
        self.exchange = f"fleet.{self.name}"
        self.hosts = []
        for name in HOSTS:
            host = await start_simulated_host(reactor)
            self.hosts.append(host)
            self.addCleanup(host.stop)
        url = self.cluster.url(daemon_order)
        self.daemons = [Daemon(self.tmp, name, host, url, self.stream, self.exchange)
                        for name, host in zip(HOSTS, self.hosts)]
        for d in self.daemons:
            self.addCleanup(self._stop_daemon, d)
        await self._all([d.start() for d in self.daemons])
        self.consumer = Consumer(self.tmp, self.cluster.url(consumer_order), self.stream)
        self.addCleanup(lambda: self.consumer.child and self.consumer.child.stop())
        await self.consumer.start()

    async def _stop_daemon(self, daemon: Daemon) -> None:
        if daemon.child is not None:
            await daemon.child.stop()

    async def _all(self, coroutines: List[Any]) -> List[Any]:
        from twisted.internet import defer

        return await defer.gatherResults([defer.ensureDeferred(c) for c in coroutines], consumeErrors=True)

    def storms(self) -> Any:
        from twisted.internet import defer

        return defer.gatherResults(
            [defer.ensureDeferred(storm(h.control, f"{n}-", rounds=self.ROUNDS)) for n, h in zip(HOSTS, self.hosts)],
            consumeErrors=True,
        )

    async def until_caught_up(self, timeout: float = 120.0) -> None:
        """Until the consumer holds every record the daemons wrote."""
        deadline = time.monotonic() + timeout
        while True:
            truth = {(r["host"], r["seq"]) for d in self.daemons for r in d.records()}
            got = {(r["host"], r["seq"]) for r in self.consumer.records()}
            if truth <= got:
                return
            if time.monotonic() > deadline:
                self.fail(f"the consumer lacks {len(truth - got)} of {len(truth)} records after {timeout} s; "
                          f"e.g. {sorted(truth - got)[:5]}")
            await task.deferLater(reactor, 0.5, lambda: None)

    async def finish(self, may_have_more: Sequence[str] = ()) -> Tuple[int, int]:
        """Wait for the consumer, stop everything, check the output, and that no socket left loopback."""
        await self.until_caught_up()
        offences, replication = await threads.deferToThread(self.cluster.non_loopback_sockets)
        self.assertEqual(offences, [], "broker sockets off loopback")
        await self._all([d.child.stop() for d in self.daemons])
        await task.deferLater(reactor, 1.0, lambda: None)
        await self.consumer.child.stop()
        result = check_exactly_once(self, self.consumer.records(), self.daemons, may_have_more)
        elapsed = time.monotonic() - self.started
        import json

        with open(os.path.join(self.consumer.dir, "state", "checkpoint.json")) as f:
            chains = json.load(f)["chains"]
        repeats = sum(c["repeats"] for c in chains.values())
        missing = sum(c["missing"] for c in chains.values())
        self.assertEqual(missing, 0, "the consumer gave up waiting for records")
        print(f"\n{self.name}: {result[0]} records from {len(self.daemons)} hosts, consumer holds {result[1]}, "
              f"{repeats} repeats dropped, {elapsed:.1f} s; replication listeners on the wildcard address: {len(replication)}")
        return result

    async def mid_storm(self, delay: float = 2.0) -> Any:
        storms = self.storms()
        await task.deferLater(reactor, delay, lambda: None)
        return storms



class FleetTests(_FleetCase):
    """The fault runs; each test storms all three hosts and breaks one thing mid-storm."""

    async def test_a_storm_reaches_the_consumer_exactly_once(self) -> None:
        await self.fleet()
        await self.storms()
        total, _ = await self.finish()
        self.assertGreater(total, 3 * self.ROUNDS * 40 * 2)
        first = {}
        for record in self.consumer.records():
            first.setdefault(record["host"], record)
        self.assertEqual({h: (r["type"], r["domains"]) for h, r in first.items()},
                         {h: ("snapshot", []) for h in HOSTS}, "each host starts with a snapshot of its domains")

    async def test_killing_the_stream_leader_loses_and_repeats_nothing(self) -> None:
        await self.fleet()
        storms = await self.mid_storm()
        leader = await threads.deferToThread(self.cluster.stream_leader, self.stream)
        await threads.deferToThread(leader.kill)
        await task.deferLater(reactor, 3.0, lambda: None)
        await threads.deferToThread(self._restart, leader)
        await storms
        await self.finish()
        metrics = [d.log(0) for d in self.daemons]
        self.assertTrue(any("lost" in m for m in metrics), "no daemon saw its connection go")

    def _restart(self, node: Any) -> None:
        node.start()
        node.wait_ready()
        self.cluster.wait_clustered()

    async def test_a_daemon_killed_and_restarted_resends_its_spool_and_goes_on(self) -> None:
        if not state_dir_supported():
            raise SkipTest("twistd libxl-events has no --state-dir yet: its seq starts at 1 again after a restart, "
                           "so the restarted daemon's records would be taken for repeats")
        await self.fleet()
        storms = await self.mid_storm()
        victim = self.daemons[1]
        await victim.child.kill()
        await task.deferLater(reactor, 1.0, lambda: None)
        await victim.start()
        await storms
        await self.finish(may_have_more=[victim.name])
        seqs = [r["seq"] for r in victim.records()]
        self.assertEqual(seqs, sorted(seqs), "the restarted daemon's seq went back")

    async def test_a_consumer_killed_and_restarted_resumes_from_its_offset(self) -> None:
        await self.fleet()
        storms = await self.mid_storm(3.0)
        before = len(self.consumer.records())
        await self.consumer.child.kill()
        await task.deferLater(reactor, 1.0, lambda: None)
        await self.consumer.start()
        await storms
        await self.finish()
        self.assertGreater(before, 0, "the consumer had read nothing before it was killed")
        import re

        resumed = re.search(rb"reading stream \S+ on \S+ from (\d+)", self.consumer.child.output)
        self.assertIsNotNone(resumed, "the restarted consumer did not resume from a stored offset")


class LivePageTests(_FleetCase):
    """The consumer's live page in a real headless browser."""

    async def test_the_page_shows_hosts_and_domains_and_a_new_state_without_a_reload(self) -> None:
        from .browser import Browser, chromium

        if chromium() is None:
            raise SkipTest("no chromium here: install Debian's chromium (make check does)")
        await self.fleet()
        made = {}
        for name, host in zip(HOSTS, self.hosts):
            made[name] = await host.control.create_domains(count=2, prefix=f"{name}-web")
        await self.until_caught_up()
        browser = await Browser(os.path.join(self.tmp, "chromium")).start()
        self.addCleanup(browser.stop)
        port = self.consumer.address.rsplit(":", 1)[1]
        await browser.send("Page.navigate", url=f"http://127.0.0.1:{port}/")
        await browser.wait_for("document.querySelectorAll('section.host').length === 3")
        await browser.wait_for("document.querySelectorAll('tr.domain').length === 6")
        hosts = await browser.evaluate("Array.from(document.querySelectorAll('section.host')).map(s => s.dataset.host)")
        self.assertEqual(hosts, list(HOSTS))
        names = await browser.evaluate("Array.from(document.querySelectorAll('tr.domain td:nth-child(2)')).map(t => t.textContent)")
        self.assertEqual(sorted(names), sorted(d["name"] for ds in made.values() for d in ds))
        await browser.evaluate("window.notReloaded = true")
        target = made["xen2"][1]
        await self.hosts[1].control.shutdown(target["domid"], "poweroff")
        row = f"document.querySelector('section.host[data-host=\"xen2\"] tr.domain[data-uuid=\"{target['uuid']}\"]')"
        await browser.wait_for(f"{row} && {row}.dataset.state === 'shutdown'")
        self.assertIn("poweroff", await browser.evaluate(f"{row}.textContent"))
        self.assertTrue(await browser.evaluate("window.notReloaded === true"), "the page was reloaded")
        await browser.screenshot(os.path.join(self.tmp, "fleet-page.png"))
        print(f"\nscreenshot: {os.path.join(self.tmp, 'fleet-page.png')}")
        await self.finish()
