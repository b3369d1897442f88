"""
The rules of the simulated xenstore, one test each (see
L{txlibxl.sim.store}; each follows the C xenstored of Xen 4.17).
"""
from typing import List, Tuple

from twisted.trial.unittest import TestCase

from txlibxl.sim.store import Quotas, Store, StoreConnection, XenstoreError


class _Events:
    """Collects the events of one connection."""

    def __init__(self) -> None:
        self.events: List[Tuple[str, str]] = []

    def __call__(self, path: str, token: str) -> None:
        self.events.append((path, token))

    def take(self) -> List[Tuple[str, str]]:
        events, self.events = self.events, []
        return events


class _Case(TestCase):
    def setUp(self) -> None:
        self.store = Store()

    def connect(self, domid: int = 0) -> Tuple[StoreConnection, _Events]:
        events = _Events()
        return self.store.connect(domid, events), events

    def assertErrno(self, errno_name: str, f, *args, **kwargs) -> None:
        e = self.assertRaises(XenstoreError, f, *args, **kwargs)
        self.assertEqual(e.errno_name, errno_name, str(e))

    def guest_home(self, domid: int) -> str:
        """/local/domain/<domid>, owned by the guest, as libxl makes it."""
        path = self.store.domain_path(domid)
        self.store.mkdir(path)
        self.store.set_perms(path, [f"n{domid}", "r0"])
        return path


class TreeTests(_Case):
    def test_fresh_store_has_what_a_fresh_xenstored_creates(self) -> None:
        self.assertEqual(sorted(self.store.paths()), ["/", "/tool", "/tool/xenstored"])
        self.assertEqual(self.store.get_perms("/"), ["n0"])

    def test_init_dom0_writes_what_xen_init_dom0_writes(self) -> None:
        self.store.init_dom0()
        self.assertEqual(self.store.read("/local/domain/0/name"), b"Domain-0")
        self.assertEqual(self.store.read("/local/domain/0/domid"), b"0")

    def test_write_creates_missing_parents_with_empty_values(self) -> None:
        self.store.write("/a/b/c", b"v")
        self.assertEqual(self.store.read("/a/b"), b"")
        self.assertEqual(self.store.read("/a/b/c"), b"v")

    def test_directory_lists_children_in_creation_order(self) -> None:
        for name in ("z", "a", "m"):
            self.store.write(f"/d/{name}", b"")
        self.assertEqual(self.store.directory("/d"), ["z", "a", "m"])

    def test_mkdir_leaves_an_existing_value_alone(self) -> None:
        self.store.write("/a", b"keep")
        self.store.mkdir("/a")
        self.assertEqual(self.store.read("/a"), b"keep")

    def test_rm_removes_the_subtree(self) -> None:
        self.store.write("/a/b/c", b"")
        self.store.rm("/a")
        self.assertFalse(self.store.exists("/a/b/c"))
        self.assertNotIn("a", self.store.directory("/"))

    def test_rm_of_a_missing_node_with_existing_parent_succeeds(self) -> None:
        self.store.write("/a", b"")
        self.store.rm("/a/missing")

    def test_rm_of_a_node_whose_parent_is_missing_is_enoent(self) -> None:
        self.assertErrno("ENOENT", self.store.rm, "/no/such")

    def test_rm_of_root_is_einval(self) -> None:
        self.assertErrno("EINVAL", self.store.rm, "/")

    def test_read_of_a_missing_node_is_enoent(self) -> None:
        self.assertErrno("ENOENT", self.store.read, "/missing")

    def test_invalid_paths_are_einval(self) -> None:
        for bad in ("/a//b", "/a/", "/a b", "/a\u00e9", "", "/a/.."):
            self.assertErrno("EINVAL", self.store.read, bad)

    def test_relative_paths_resolve_against_the_callers_domain(self) -> None:
        home = self.guest_home(3)
        self.store.write("x", b"1", domid=3)
        self.assertEqual(self.store.read(home + "/x"), b"1")
        self.assertEqual(self.store.read("x", domid=3), b"1")

    def test_path_length_limit_is_2048_beyond_a_domain_prefix(self) -> None:
        self.store.write("/" + "a" * 2047, b"")
        self.assertErrno("EINVAL", self.store.write, "/" + "a" * 2048, b"")
        prefix = "/local/domain/7/"
        self.store.write(prefix + "b" * 2048, b"")
        self.assertErrno("EINVAL", self.store.write, prefix + "b" * 2049, b"")

    def test_path_limit_is_configurable(self) -> None:
        store = Store(quotas=Quotas(path_max=10))
        store.write("/" + "a" * 9, b"")
        e = self.assertRaises(XenstoreError, store.write, "/" + "a" * 10, b"")
        self.assertEqual(e.errno_name, "EINVAL")

    def test_deep_trees_are_removed_without_recursion_limits(self) -> None:
        path = "/d" * 1000
        self.store.write(path, b"")
        self.store.rm("/d")
        self.assertFalse(self.store.exists("/d"))


class PermissionTests(_Case):
    def test_new_nodes_inherit_the_parents_permissions(self) -> None:
        self.store.write("/p", b"")
        self.store.set_perms("/p", ["n0", "r5"])
        self.store.write("/p/child", b"")
        self.assertEqual(self.store.get_perms("/p/child"), ["n0", "r5"])

    def test_an_unprivileged_creator_becomes_the_owner(self) -> None:
        self.store.write("/p", b"")
        self.store.set_perms("/p", ["r0", "b5"])
        self.store.write("/p/mine", b"", domid=5)
        self.assertEqual(self.store.get_perms("/p/mine"), ["r5", "b5"])

    def test_the_owner_may_read_and_write(self) -> None:
        home = self.guest_home(4)
        self.store.write(home + "/x", b"1", domid=4)
        self.assertEqual(self.store.read(home + "/x", domid=4), b"1")

    def test_others_get_the_owners_default_access(self) -> None:
        self.store.write("/p", b"v")
        self.store.set_perms("/p", ["r0"])
        self.assertEqual(self.store.read("/p", domid=9), b"v")
        self.assertErrno("EACCES", self.store.write, "/p", b"x", domid=9)

    def test_an_acl_entry_overrides_the_default(self) -> None:
        self.store.write("/p", b"v")
        self.store.set_perms("/p", ["n0", "r5"])
        self.assertEqual(self.store.read("/p", domid=5), b"v")
        self.assertErrno("EACCES", self.store.read, "/p", domid=6)

    def test_dom0_is_privileged(self) -> None:
        home = self.guest_home(4)
        self.store.write(home + "/x", b"1", domid=4)
        self.store.set_perms(home + "/x", ["n4"], domid=4)
        self.assertEqual(self.store.read(home + "/x"), b"1")

    def test_a_missing_node_under_an_unreadable_parent_is_eacces(self) -> None:
        self.store.write("/secret", b"")
        self.assertErrno("EACCES", self.store.read, "/secret/missing", domid=5)

    def test_a_missing_node_under_a_readable_parent_is_enoent(self) -> None:
        self.store.write("/open", b"")
        self.store.set_perms("/open", ["r0"])
        self.assertErrno("ENOENT", self.store.read, "/open/missing", domid=5)

    def test_only_the_owner_may_set_permissions(self) -> None:
        self.store.write("/p", b"")
        self.store.set_perms("/p", ["n0", "b5"])
        self.assertErrno("EACCES", self.store.set_perms, "/p", ["n5"], domid=5)

    def test_an_unprivileged_owner_may_not_change_the_owner(self) -> None:
        home = self.guest_home(5)
        self.assertErrno("EPERM", self.store.set_perms, home, ["n6"], domid=5)

    def test_bad_permission_strings_are_einval(self) -> None:
        self.store.write("/p", b"")
        for bad in (["x0"], ["r"], ["r5x"], []):
            self.assertErrno("EINVAL", self.store.set_perms, "/p", bad)

    def test_permission_domids_are_read_like_strtol(self) -> None:
        self.store.write("/p", b"")
        self.store.set_perms("/p", ["n0", "r0x5", "b010"])
        self.assertEqual(self.store.get_perms("/p"), ["n0", "r5", "b8"])

    def test_an_owner_that_does_not_exist_is_enoent(self) -> None:
        store = Store(domain_exists=lambda domid: domid < 10)
        store.write("/p", b"")
        e = self.assertRaises(XenstoreError, store.set_perms, "/p", ["n42"])
        self.assertEqual(e.errno_name, "ENOENT")

    def test_grants_to_a_released_domain_do_not_pass_to_a_reused_domid(self) -> None:
        self.store.write("/p", b"v")
        self.store.set_perms("/p", ["n0", "r5"])
        self.store.introduce(5)
        self.assertEqual(self.store.read("/p", domid=5), b"v")
        self.store.release(5)
        self.store.write("/meanwhile", b"")  # the generation count moves on
        self.store.introduce(5)
        self.assertErrno("EACCES", self.store.read, "/p", domid=5)

    def test_set_target_gives_the_targets_rights(self) -> None:
        home = self.guest_home(5)
        self.store.write(home + "/x", b"1", domid=5)
        self.store.introduce(5)
        self.store.introduce(6)
        self.assertErrno("EACCES", self.store.read, home + "/x", domid=6)
        self.store.set_target(6, 5)
        self.assertEqual(self.store.read(home + "/x", domid=6), b"1")


class QuotaTests(_Case):
    def test_node_quota_is_enospc_for_unprivileged_domains(self) -> None:
        store = Store(quotas=Quotas(nodes_per_domain=3))
        store.mkdir("/local/domain/5")
        store.set_perms("/local/domain/5", ["n5"])  # owns 1
        store.write("/local/domain/5/a", b"", domid=5)
        store.write("/local/domain/5/b", b"", domid=5)
        e = self.assertRaises(XenstoreError, store.write, "/local/domain/5/c", b"", domid=5)
        self.assertEqual(e.errno_name, "ENOSPC")
        store.write("/local/domain/0/many/more/than/three", b"")  # dom0: no quota

    def test_node_size_quota_is_enospc(self) -> None:
        home = self.guest_home(5)
        self.store.write(home + "/small", b"x" * 100, domid=5)
        self.assertErrno("ENOSPC", self.store.write, home + "/big", b"x" * 2048, domid=5)
        self.store.write(home + "/big", b"x" * 4000)  # dom0: no quota

    def test_permission_count_quota_is_enospc(self) -> None:
        home = self.guest_home(5)
        perms = ["n5"] + [f"r{d}" for d in range(1, 6)]
        self.assertErrno("ENOSPC", self.store.set_perms, home, perms, domid=5)
        self.store.set_perms(home, perms[:5], domid=5)

    def test_watch_quota_is_e2big_past_the_limit(self) -> None:
        store = Store(quotas=Quotas(watches_per_domain=2))
        conn = store.connect(5, lambda p, t: None)
        for i in range(3):  # xenstored compares with ">": one more fits
            conn.watch("/w", str(i))
        e = self.assertRaises(XenstoreError, conn.watch, "/w", "x")
        self.assertEqual(e.errno_name, "E2BIG")

    def test_transaction_quota_is_enospc_past_the_limit(self) -> None:
        store = Store(quotas=Quotas(transactions_per_domain=1))
        conn = store.connect(5, lambda p, t: None)
        conn.transaction_start()
        conn.transaction_start()
        e = self.assertRaises(XenstoreError, conn.transaction_start)
        self.assertEqual(e.errno_name, "ENOSPC")

    def test_dom0_connections_have_no_watch_or_transaction_quota(self) -> None:
        store = Store(quotas=Quotas(watches_per_domain=1, transactions_per_domain=1))
        conn = store.connect(0, lambda p, t: None)
        for i in range(5):
            conn.watch("/w", str(i))
            conn.transaction_start()


class TransactionTests(_Case):
    def test_writes_in_a_transaction_are_invisible_until_commit(self) -> None:
        conn, _ = self.connect()
        tx = conn.transaction_start()
        conn.write("/t", b"1", tx)
        self.assertFalse(self.store.exists("/t"))
        self.assertEqual(conn.read("/t", tx), b"1")
        conn.transaction_end(tx, True)
        self.assertEqual(self.store.read("/t"), b"1")

    def test_an_aborted_transaction_changes_nothing(self) -> None:
        conn, _ = self.connect()
        tx = conn.transaction_start()
        conn.write("/t", b"1", tx)
        conn.transaction_end(tx, False)
        self.assertFalse(self.store.exists("/t"))

    def test_a_node_changed_after_the_transaction_read_it_is_eagain(self) -> None:
        self.store.write("/t", b"0")
        conn, _ = self.connect()
        tx = conn.transaction_start()
        conn.read("/t", tx)
        self.store.write("/t", b"other")
        conn.write("/u", b"", tx)
        self.assertErrno("EAGAIN", conn.transaction_end, tx, True)
        self.assertFalse(self.store.exists("/u"))

    def test_a_node_created_after_the_transaction_missed_it_is_eagain(self) -> None:
        conn, _ = self.connect()
        tx = conn.transaction_start()
        self.assertErrno("ENOENT", conn.read, "/late", tx)
        self.store.write("/late", b"")
        self.assertErrno("EAGAIN", conn.transaction_end, tx, True)

    def test_unrelated_changes_do_not_conflict(self) -> None:
        self.store.write("/a/x", b"")
        self.store.write("/b", b"")
        conn, _ = self.connect()
        tx = conn.transaction_start()
        conn.write("/a/x", b"1", tx)
        self.store.write("/b", b"2")
        conn.transaction_end(tx, True)
        self.assertEqual(self.store.read("/a/x"), b"1")

    def test_the_transaction_is_gone_after_eagain(self) -> None:
        self.store.write("/t", b"")
        conn, _ = self.connect()
        tx = conn.transaction_start()
        conn.read("/t", tx)
        self.store.write("/t", b"x")
        self.assertErrno("EAGAIN", conn.transaction_end, tx, True)
        self.assertErrno("ENOENT", conn.read, "/t", tx)

    def test_transaction_ids_start_at_1_per_connection(self) -> None:
        a, _ = self.connect()
        b, _ = self.connect()
        self.assertEqual((a.transaction_start(), a.transaction_start(), b.transaction_start()), (1, 2, 1))

    def test_an_unknown_transaction_id_is_enoent(self) -> None:
        conn, _ = self.connect()
        self.assertErrno("ENOENT", conn.read, "/", 42)

    def test_nested_transactions_are_ebusy(self) -> None:
        conn, _ = self.connect()
        tx = conn.transaction_start()
        self.assertErrno("EBUSY", conn.transaction_start, tx)

    def test_watches_fire_on_commit_only(self) -> None:
        watcher, events = self.connect()
        watcher.watch("/t", "tok")
        events.take()
        conn, _ = self.connect()
        tx = conn.transaction_start()
        conn.write("/t/a", b"1", tx)
        self.assertEqual(events.take(), [])
        conn.transaction_end(tx, True)
        self.assertEqual(events.take(), [("/t/a", "tok")])

    def test_an_aborted_transaction_fires_nothing(self) -> None:
        watcher, events = self.connect()
        watcher.watch("/t", "tok")
        events.take()
        conn, _ = self.connect()
        tx = conn.transaction_start()
        conn.write("/t/a", b"1", tx)
        conn.transaction_end(tx, False)
        self.assertEqual(events.take(), [])

    def test_rm_in_a_transaction_commits(self) -> None:
        self.store.write("/r/a/b", b"")
        conn, _ = self.connect()
        tx = conn.transaction_start()
        conn.rm("/r/a", tx)
        self.assertTrue(self.store.exists("/r/a/b"))
        conn.transaction_end(tx, True)
        self.assertFalse(self.store.exists("/r/a"))
        self.assertEqual(self.store.directory("/r"), [])

    def test_node_quota_is_checked_again_at_commit(self) -> None:
        store = Store(quotas=Quotas(nodes_per_domain=3))
        store.mkdir("/local/domain/5")
        store.set_perms("/local/domain/5", ["n5"])
        conn = store.connect(5, lambda p, t: None)
        tx = conn.transaction_start()
        conn.write("a", b"", tx)
        conn.write("b", b"", tx)
        e = self.assertRaises(XenstoreError, conn.transaction_end, tx, True)
        self.assertEqual(e.errno_name, "ENOSPC")

    def test_transaction_node_quota_fails_the_transaction(self) -> None:
        store = Store(quotas=Quotas(transaction_nodes=3))
        conn = store.connect(5, lambda p, t: None)
        store.write("/q", b"")
        store.set_perms("/q", ["r0"])
        for name in "abcd":
            store.write(f"/q/{name}", b"")
        tx = conn.transaction_start()
        for name in "abc":
            conn.read(f"/q/{name}", tx)
        e = self.assertRaises(XenstoreError, conn.read, "/q/d", tx)
        self.assertEqual(e.errno_name, "ENOSPC")
        e = self.assertRaises(XenstoreError, conn.transaction_end, tx, True)
        self.assertEqual(e.errno_name, "ENOMEM")


class WatchTests(_Case):
    def test_a_new_watch_fires_once_at_once_with_its_own_path(self) -> None:
        conn, events = self.connect()
        conn.watch("/not/there", "tok")
        self.assertEqual(events.take(), [("/not/there", "tok")])

    def test_a_change_fires_watches_on_the_node_and_its_ancestors(self) -> None:
        conn, events = self.connect()
        for path in ("/", "/a", "/a/b", "/a/b/c", "/other"):
            conn.watch(path, path)
        events.take()
        self.store.write("/a/b/c", b"v")
        self.assertEqual(sorted(events.take()),
                         sorted([("/a/b/c", t) for t in ("/", "/a", "/a/b", "/a/b/c")]))

    def test_a_change_does_not_fire_watches_below_the_node(self) -> None:
        conn, events = self.connect()
        conn.watch("/a/b", "tok")
        events.take()
        self.store.write("/a", b"v")
        self.assertEqual(events.take(), [])

    def test_write_fires_once_for_the_written_node_not_its_new_parents(self) -> None:
        conn, events = self.connect()
        conn.watch("/", "tok")
        events.take()
        self.store.write("/x/y/z", b"")
        self.assertEqual(events.take(), [("/x/y/z", "tok")])

    def test_rm_fires_watches_on_removed_descendants(self) -> None:
        self.store.write("/d/dev/eject", b"")
        conn, events = self.connect()
        conn.watch("/d/dev/eject", "eject")
        conn.watch("/d", "top")
        events.take()
        self.store.rm("/d")
        self.assertEqual(events.take(), [("/d/dev/eject", "eject"), ("/d", "top")])

    def test_rm_fires_ancestor_watches_only_for_the_removed_root(self) -> None:
        self.store.write("/d/a/b", b"")
        conn, events = self.connect()
        conn.watch("/", "root")
        events.take()
        self.store.rm("/d/a")
        self.assertEqual(events.take(), [("/d/a", "root")])

    def test_rm_does_not_fire_watches_on_descendants_that_never_existed(self) -> None:
        self.store.write("/d", b"")
        conn, events = self.connect()
        conn.watch("/d/ghost", "g")
        events.take()
        self.store.rm("/d")
        self.assertEqual(events.take(), [])

    def test_set_perms_fires_watches(self) -> None:
        self.store.write("/p", b"")
        conn, events = self.connect()
        conn.watch("/p", "tok")
        events.take()
        self.store.set_perms("/p", ["n0", "r1"])
        self.assertEqual(events.take(), [("/p", "tok")])

    def test_mkdir_of_an_existing_node_fires_nothing(self) -> None:
        self.store.write("/p", b"")
        conn, events = self.connect()
        conn.watch("/p", "tok")
        events.take()
        self.store.mkdir("/p")
        self.assertEqual(events.take(), [])

    def test_relative_watches_report_relative_paths(self) -> None:
        home = self.guest_home(5)
        conn, events = self.connect(5)
        conn.watch("device", "rel")
        self.assertEqual(events.take(), [("device", "rel")])
        self.store.write(home + "/device/vbd", b"")
        self.assertEqual(events.take(), [("device/vbd", "rel")])

    def test_a_dom0_relative_watch_resolves_against_local_domain_0(self) -> None:
        conn, events = self.connect(0)
        conn.watch("domid", "t")
        events.take()
        self.store.write("/local/domain/0/domid", b"0")
        self.assertEqual(events.take(), [("domid", "t")])

    def test_a_duplicate_watch_is_eexist(self) -> None:
        conn, _ = self.connect()
        conn.watch("/a", "t")
        self.assertErrno("EEXIST", conn.watch, "/a", "t")
        conn.watch("/a", "other-token")

    def test_unwatch_stops_events_and_unknown_watches_are_enoent(self) -> None:
        conn, events = self.connect()
        conn.watch("/a", "t")
        conn.unwatch("/a", "t")
        events.take()
        self.store.write("/a", b"")
        self.assertEqual(events.take(), [])
        self.assertErrno("ENOENT", conn.unwatch, "/a", "t")

    def test_reset_watches_drops_watches_and_transactions(self) -> None:
        conn, events = self.connect()
        conn.watch("/a", "t")
        tx = conn.transaction_start()
        conn.reset_watches()
        events.take()
        self.store.write("/a", b"")
        self.assertEqual(events.take(), [])
        self.assertErrno("ENOENT", conn.read, "/", tx)

    def test_events_are_filtered_by_read_permission(self) -> None:
        self.store.write("/priv/x", b"")
        guest, events = self.connect(5)
        guest.watch("/priv/x", "t")
        events.take()
        self.store.write("/priv/x", b"secret")
        self.assertEqual(events.take(), [])
        self.store.set_perms("/priv/x", ["n0", "r5"])
        self.assertEqual(events.take(), [("/priv/x", "t")])

    def test_events_for_an_unreadable_node_under_a_readable_parent_are_sent(self) -> None:
        self.store.write("/pub", b"")
        self.store.set_perms("/pub", ["r0"])
        self.store.write("/pub/hidden", b"")
        self.store.set_perms("/pub/hidden", ["n0"])
        guest, events = self.connect(5)
        guest.watch("/pub/hidden", "t")
        events.take()
        self.store.write("/pub/hidden", b"x")
        self.assertEqual(events.take(), [("/pub/hidden", "t")])

    def test_losing_read_permission_still_sends_that_event(self) -> None:
        self.store.write("/p/x", b"")
        self.store.set_perms("/p/x", ["n0", "r5"])
        guest, events = self.connect(5)
        guest.watch("/p/x", "t")
        events.take()
        self.store.set_perms("/p/x", ["n0"])
        self.assertEqual(events.take(), [("/p/x", "t")])
        self.store.write("/p/x", b"again")
        self.assertEqual(events.take(), [])

    def test_special_watches_fire_only_through_the_api(self) -> None:
        conn, events = self.connect()
        conn.watch("@releaseDomain", "rel")
        conn.watch("/", "all")
        events.take()
        self.store.write("/x", b"")
        self.assertEqual(events.take(), [("/x", "all")])
        self.store.fire_special("@releaseDomain")
        self.assertEqual(events.take(), [("@releaseDomain", "rel")])

    def test_special_watches_need_read_permission_on_the_special(self) -> None:
        guest, events = self.connect(5)
        guest.watch("@introduceDomain", "t")
        events.take()
        self.store.introduce(7)
        self.assertEqual(events.take(), [])
        self.store.set_perms("@introduceDomain", ["n0", "r5"])
        self.store.introduce(8)
        self.assertEqual(events.take(), [("@introduceDomain", "t")])

    def test_unknown_special_names_cannot_be_fired(self) -> None:
        self.assertErrno("EINVAL", self.store.fire_special, "@foo")

    def test_watch_matching_touches_only_the_watched_paths(self) -> None:
        """5000 domains' watches: a change looks up its ancestors only."""
        conns = []
        for domid in range(1, 5001):
            conn, _ = self.connect()
            conn.watch(f"/local/domain/{domid}/control/shutdown", "t")
            conns.append(conn)
        self.assertEqual(len(self.store._watch_index), 5000)
        watcher, events = self.connect()
        watcher.watch("/local/domain/17", "mine")
        events.take()
        self.store.write("/local/domain/17/control/shutdown", b"poweroff")
        self.assertEqual(events.take(), [("/local/domain/17/control/shutdown", "mine")])


class InternalApiTests(_Case):
    def setUp(self) -> None:
        self.queue: List = []
        self.store = Store(schedule=self.queue.append)

    def run_queue(self) -> None:
        while self.queue:
            self.queue.pop(0)()

    def test_internal_watch_callbacks_are_scheduled_not_run_inline(self) -> None:
        seen: List[str] = []
        self.store.watch("/a", seen.append)
        self.assertEqual(seen, [])
        self.run_queue()
        self.assertEqual(seen, ["/a"])
        self.store.write("/a/b", b"")
        self.assertEqual(seen, ["/a"])
        self.run_queue()
        self.assertEqual(seen, ["/a", "/a/b"])

    def test_unwatch_cancels_queued_callbacks(self) -> None:
        seen: List[str] = []
        handle = self.store.watch("/a", seen.append)
        self.store.unwatch(handle)
        self.run_queue()
        self.assertEqual(seen, [])

    def test_introduce_fires_introduce_domain_once(self) -> None:
        seen: List[str] = []
        self.store.watch("@introduceDomain", seen.append)
        self.store.introduce(5)
        self.store.introduce(5)
        self.run_queue()
        self.assertEqual(seen, ["@introduceDomain", "@introduceDomain"])
        self.assertTrue(self.store.is_introduced(5))

    def test_release_removes_the_domains_nodes_and_fires_release_domain(self) -> None:
        seen: List[str] = []
        self.store.mkdir("/local/domain/5")
        self.store.set_perms("/local/domain/5", ["n5", "r0"])
        self.store.write("/local/domain/5/x", b"", domid=5)
        self.store.write("/vm/keep", b"")
        self.store.introduce(5)
        self.store.watch("@releaseDomain", seen.append)
        self.store.release(5)
        self.run_queue()
        self.assertEqual(seen, ["@releaseDomain", "@releaseDomain"])
        self.assertFalse(self.store.exists("/local/domain/5"))
        self.assertTrue(self.store.exists("/vm/keep"))
        self.assertFalse(self.store.is_introduced(5))

    def test_release_of_a_domain_not_introduced_is_enoent(self) -> None:
        self.assertErrno("ENOENT", self.store.release, 9)
        self.assertErrno("EINVAL", self.store.release, 0)

    def test_domain_gone_removes_nodes_of_a_domain_never_introduced(self) -> None:
        seen: List[str] = []
        self.store.mkdir("/local/domain/6")
        self.store.set_perms("/local/domain/6", ["n6"])
        self.store.watch("@releaseDomain", seen.append)
        self.store.domain_gone(6)
        self.run_queue()
        self.assertFalse(self.store.exists("/local/domain/6"))
        self.assertEqual(seen, ["@releaseDomain"])  # the initial event only

    def test_release_disconnects_the_domains_clients(self) -> None:
        released: List[bool] = []
        self.store.introduce(5)
        conn = self.store.connect(5, lambda p, t: None, lambda: released.append(True))
        conn.watch("/x", "t")
        self.store.release(5)
        self.assertEqual(released, [True])
        self.assertEqual(conn.watch_count, 0)

    def test_domain_path(self) -> None:
        self.assertEqual(self.store.domain_path(12), "/local/domain/12")
