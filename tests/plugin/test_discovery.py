"""
Discovery and reconciliation rules, without a host: which domains are
new, still there, or gone, told apart by (domid, uuid).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.trial.unittest import TestCase

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
