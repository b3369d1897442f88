"""
Conformance with Debian's xenstore-utils: the real ``xenstore-*`` tools,
built on the real libxenstore, run as child processes against the simulated
xenstored (``XENSTORED_PATH``) listening in the test's reactor.
"""
import os

from twisted.internet import defer, reactor, task
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from txlibxl.sim.store import Store
from txlibxl.sim.xenstored import listen

_TOOLS = "/usr/bin"


def _tool(name: str) -> str:
    return os.path.join(_TOOLS, name)


class XenstoreUtilsTests(TestCase):
    if not os.access(_tool("xenstore-read"), os.X_OK):
        skip = "xenstore-utils is not installed (/usr/bin/xenstore-read missing)"

    def setUp(self) -> None:
        self.store = Store(lambda f: reactor.callLater(0, f))
        self.store.init_dom0()
        self.path = self.mktemp()
        port = listen(reactor, self.store, self.path)
        self.addCleanup(port.stopListening)

    def run_tool(self, name: str, *args: str) -> defer.Deferred:
        """(stdout, stderr, exit code) of one xenstore tool."""
        env = {"XENSTORED_PATH": self.path, "PATH": "/usr/bin:/bin"}
        return getProcessOutputAndValue(_tool(name), args, env=env)

    async def ok(self, name: str, *args: str) -> str:
        out, err, code = await self.run_tool(name, *args)
        self.assertEqual(code, 0, f"{name} {args}: {err!r}")
        return out.decode()

    async def test_write_then_read(self) -> None:
        await self.ok("xenstore-write", "/vm/a", "hello", "/vm/b", "world")
        self.assertEqual(self.store.read("/vm/a"), b"hello")
        self.assertEqual(await self.ok("xenstore-read", "/vm/a", "/vm/b"), "hello\nworld\n")

    async def test_read_of_a_missing_node_fails(self) -> None:
        out, err, code = await self.run_tool("xenstore-read", "/missing")
        self.assertEqual(code, 1)
        self.assertIn(b"couldn't read path /missing", err)

    async def test_relative_paths_are_under_local_domain_0(self) -> None:
        self.assertEqual(await self.ok("xenstore-read", "name"), "Domain-0\n")

    async def test_list(self) -> None:
        for child in ("one", "two", "three"):
            self.store.write(f"/dir/{child}", b"")
        self.assertEqual(await self.ok("xenstore-list", "/dir"), "one\ntwo\nthree\n")

    async def test_ls_shows_the_tree_and_permissions(self) -> None:
        self.store.write("/t/leaf", b"v")
        self.store.set_perms("/t/leaf", ["n0", "r5"])
        out = await self.ok("xenstore-ls", "-p", "/t")
        self.assertIn('leaf = "v"', out)
        self.assertIn("(n0,r5)", out)

    async def test_rm(self) -> None:
        self.store.write("/gone/child", b"")
        await self.ok("xenstore-rm", "/gone")
        self.assertFalse(self.store.exists("/gone"))

    async def test_exists(self) -> None:
        self.assertEqual((await self.run_tool("xenstore-exists", "/tool"))[2], 0)
        self.assertEqual((await self.run_tool("xenstore-exists", "/nothing"))[2], 1)

    async def test_chmod(self) -> None:
        self.store.write("/perm", b"")
        await self.ok("xenstore-chmod", "/perm", "n0", "r3", "b4")
        self.assertEqual(self.store.get_perms("/perm"), ["n0", "r3", "b4"])

    async def test_chmod_recursive(self) -> None:
        self.store.write("/perm/a/b", b"")
        await self.ok("xenstore-chmod", "-r", "/perm", "r0")
        self.assertEqual(self.store.get_perms("/perm/a/b"), ["r0"])

    async def test_watch_reports_the_initial_event_and_a_change(self) -> None:
        self.store.write("/watched", b"")
        done = self.run_tool("xenstore-watch", "-n", "2", "/watched")
        while self.store.watch_count("/watched") == 0:
            await task.deferLater(reactor, 0.01, lambda: None)
        self.store.write("/watched/child", b"x")
        out, err, code = await done
        self.assertEqual((out, code), (b"/watched\n/watched/child\n", 0), err)

    async def test_watch_sees_the_removal_of_an_ancestor(self) -> None:
        self.store.write("/dev/vbd/eject", b"")
        done = self.run_tool("xenstore-watch", "-n", "2", "/dev/vbd/eject")
        while self.store.watch_count("/dev/vbd/eject") == 0:
            await task.deferLater(reactor, 0.01, lambda: None)
        self.store.rm("/dev")
        out, err, code = await done
        self.assertEqual((out, code), (b"/dev/vbd/eject\n/dev/vbd/eject\n", 0), err)

    async def test_special_watch(self) -> None:
        done = self.run_tool("xenstore-watch", "-n", "2", "@releaseDomain")
        while self.store.watch_count("@releaseDomain") == 0:
            await task.deferLater(reactor, 0.01, lambda: None)
        self.store.fire_special("@releaseDomain")
        out, err, code = await done
        self.assertEqual((out, code), (b"@releaseDomain\n@releaseDomain\n", 0), err)
