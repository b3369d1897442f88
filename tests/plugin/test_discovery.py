"""
Discovery and reconciliation rules, without a host: which domains are
new, still there, or gone, told apart by (domid, uuid).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.trial.unittest import TestCase

from txlibxl import errors
from txlibxl.daemon.discovery import DomainFilter, TrackedDomain, cdrom_vdevs, compare
from txlibxl.events import DomainInfo


def info(domid: int, uuid: str, name: Optional[str] = None) -> DomainInfo:
    return DomainInfo(
        domid=domid, uuid=uuid, name=name, type="pv", running=True, blocked=False, paused=False,
        shutdown=False, dying=False, shutdown_reason=None, current_memkb=0, max_memkb=0,
        cpu_time_ns=0, vcpus_online=1,
    )


def tracked(*doms: TrackedDomain) -> Dict[Any, TrackedDomain]:
    return {d.key: d for d in doms}


class CompareTests(TestCase):
    def test_an_untracked_domain_is_new_and_domain_0_never_is(self) -> None:
        changes = compare({}, [info(0, "u0"), info(1, "u1")], DomainFilter())
        self.assertEqual([i.domid for i in changes.new], [1])

    def test_a_tracked_domain_still_there_is_present(self) -> None:
        dom = TrackedDomain(1, "u1", "a")
        changes = compare(tracked(dom), [info(1, "u1")], DomainFilter())
        self.assertEqual((changes.new, [d for d, _ in changes.present], changes.gone), ([], [dom], []))

    def test_a_tracked_domain_missing_from_the_host_is_gone(self) -> None:
        dom = TrackedDomain(1, "u1", "a")
        self.assertEqual(compare(tracked(dom), [], DomainFilter()).gone, [dom])

    def test_a_reused_domid_is_a_death_and_a_new_domain(self) -> None:
        dom = TrackedDomain(1, "old", "a")
        changes = compare(tracked(dom), [info(1, "new")], DomainFilter())
        self.assertEqual(([i.uuid for i in changes.new], changes.gone), (["new"], [dom]))

    def test_the_filter_picks_domains_by_domid_or_name(self) -> None:
        wanted = DomainFilter.parse("2,web1")
        changes = compare({}, [info(1, "u1", "web1"), info(2, "u2", "x"), info(3, "u3", "y")], wanted)
        self.assertEqual(sorted(i.domid for i in changes.new), [1, 2])

    def test_an_empty_item_in_the_filter_is_refused(self) -> None:
        self.assertRaises(ValueError, DomainFilter.parse, "1,")


class _Store:
    def __init__(self, nodes: Dict[str, str]) -> None:
        self.nodes = nodes

    def directory(self, path: str) -> list:
        prefix = path + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.nodes if p.startswith(prefix)})

    def read(self, path: str) -> Optional[str]:
        return self.nodes.get(path)


class CdromTests(TestCase):
    def test_cdroms_are_the_vbds_whose_device_type_is_cdrom(self) -> None:
        base = "/libxl/4/device/vbd"
        store = _Store(
            {
                f"{base}/51712/dev": "xvda", f"{base}/51712/device-type": "disk",
                f"{base}/5632/dev": "hdc", f"{base}/5632/device-type": "cdrom",
            }
        )
        self.assertEqual(cdrom_vdevs(store, 4), ["hdc"])

    def test_a_domain_without_disks_has_no_cdrom(self) -> None:
        self.assertEqual(cdrom_vdevs(_Store({}), 4), [])


# -- the service against a fake host: what is new, and when ------------------

from twisted.internet import defer  # noqa: E402
from twisted.internet.testing import MemoryReactorClock  # noqa: E402
from zope.interface import implementer  # noqa: E402

from txlibxl.daemon.service import LibxlEventsService  # noqa: E402
from txlibxl.daemon.sinks import IEventSink  # noqa: E402


class _Watch:
    active = True

    def next_event(self) -> defer.Deferred:
        return defer.Deferred()

    def cancel(self) -> None:
        self.active = False


class _Context:
    failed = None
    children_running = 0

    def __init__(self, host: "_Host") -> None:
        self.host = host

    def list_domains(self) -> list:
        return list(self.host.domains)

    def subscribe(self, callback: Any, on_failure: Any = None) -> object:
        return object()

    def watch_domain(self, domid: int, buffered: bool = True) -> _Watch:
        if domid in self.host.gone:
            raise errors.DomainNotFound(call="libxl_domain_info")
        return _Watch()

    def close(self) -> defer.Deferred:
        return defer.succeed(None)


class _Xenstore:
    """A libxenstore connection: watches set, firings queued until read."""

    def __init__(self) -> None:
        self.watched: set = set()
        self.queue: list = []
        import os

        self._pipe = os.pipe()

    def fileno(self) -> int:
        return self._pipe[0]

    def watch(self, path: str, token: str) -> None:
        self.watched.add(path)
        self.queue.append((path, token))  # xenstored fires a new watch once

    def unwatch(self, path: str, token: str) -> None:
        self.watched.discard(path)

    def fire(self, path: str) -> None:
        self.queue.append((path, path))

    def read_watches(self) -> list:
        fired, self.queue = self.queue, []
        return fired

    def directory(self, path: str) -> list:
        return []

    def read(self, path: str) -> None:
        return None

    def close(self) -> None:
        import os

        for fd in self._pipe:
            os.close(fd)


class _Host:
    def __init__(self) -> None:
        self.domains = [info(0, "00000000-0000-0000-0000-000000000000", "Domain-0")]
        self.gone: set = set()  # listed, but gone by the time they are watched


@implementer(IEventSink)
class _Records:
    name = "list"

    def __init__(self) -> None:
        self.records: list = []

    def publish(self, record: Any) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


def being_built(domid: int, uuid: str, name: Optional[str] = None) -> DomainInfo:
    import attr

    return attr.evolve(info(domid, uuid, name), running=False, paused=True)


class DiscoveryLatencyTests(TestCase):
    """
    A new domain is published on the @introduceDomain firing itself, in
    whatever state it is then (paused, nameless while being built), not
    at the next rescan.
    """

    def start(self, domains: Optional[DomainFilter] = None) -> Any:
        self.clock = MemoryReactorClock()
        self.host = _Host()
        self.xs = _Xenstore()
        self.sink = _Records()
        service = LibxlEventsService(
            self.clock,
            [self.sink],
            domains=domains,
            rescan_interval=5.0,
            open_context=lambda reactor: _Context(self.host),
            open_xenstore=lambda: self.xs,
        )
        service.startService()
        self.addCleanup(service.stopService)
        self.service = service
        return service

    def introduce(self, domain: DomainInfo) -> None:
        self.host.domains.append(domain)
        self.xs.fire("@introduceDomain")
        self.service._watcher.check()

    def test_a_paused_nameless_domain_is_new_at_once_and_gets_its_name_when_written(self) -> None:
        self.start()
        self.introduce(being_built(7, "u7"))
        self.assertEqual([(r.type, r.domid, r.name) for r in self.sink.records], [("new", 7, None)])
        self.assertIn("/local/domain/7/name", self.xs.watched)
        self.host.domains[-1] = attr_evolve(self.host.domains[-1], name="web1")
        self.xs.fire("/local/domain/7/name")
        self.service._watcher.check()  # no clock advance: no rescan
        self.assertEqual(self.service.tracked[(7, "u7")].name, "web1")
        self.assertNotIn("/local/domain/7/name", self.xs.watched)

    def test_a_name_filter_decides_on_a_nameless_domain_as_its_name_is_written(self) -> None:
        self.start(DomainFilter.parse("web1"))
        self.introduce(being_built(7, "u7"))
        self.assertEqual(self.sink.records, [])
        self.assertIn("/local/domain/7/name", self.xs.watched)
        self.host.domains[-1] = attr_evolve(self.host.domains[-1], name="web1")
        self.xs.fire("/local/domain/7/name")
        self.service._watcher.check()
        self.assertEqual([(r.type, r.domid, r.name) for r in self.sink.records], [("new", 7, "web1")])


class VanishingDomainTests(TestCase):
    start = DiscoveryLatencyTests.start
    introduce = DiscoveryLatencyTests.introduce

    def test_a_domain_gone_before_its_watch_is_armed_is_published_dead(self) -> None:
        self.start()
        self.host.gone.add(7)
        self.introduce(being_built(7, "u7"))
        self.assertEqual([(r.type, r.domid) for r in self.sink.records], [("new", 7), ("death", 7)])
        self.assertNotIn((7, "u7"), self.service.tracked)


class MetricsTests(TestCase):
    start = DiscoveryLatencyTests.start

    def test_the_children_gauge_is_the_contexts_count_of_libxls_children(self) -> None:
        service = self.start()
        service.context.children_running = 2
        self.assertIn("txlibxl_libxl_children 2.0", service.metrics_text())


def attr_evolve(value: Any, **changes: Any) -> Any:
    import attr

    return attr.evolve(value, **changes)
