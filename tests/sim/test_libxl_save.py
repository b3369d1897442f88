"""
The real libxenlight saves and restores domains on the simulated host:
``libxl_domain_suspend`` and ``libxl_domain_create_restore``, driven by the
C toolstack (``tests/cclient``), run Debian's own ``libxl-save-helper``,
whose ``xc_domain_save``/``xc_domain_restore`` the simulator serves.  The
contract: what a save carries (UUID, memory, vCPUs, the guest's marker,
the memory image as real bytes) comes back in the restored domain, on this
host or another; a guest that does not suspend fails the save and keeps
running; a stream that is not a faithful one fails the restore and leaves
nothing, and no crash.  Skipped, with the reason, without the helper.
"""
from __future__ import annotations

import io
import os
import sys
from typing import Any, Dict, Optional, Tuple

from twisted.internet import reactor, utils
from twisted.trial.unittest import SkipTest

from tests.cclient import CClientProcess
from tests.sim.libxl_configs import leftover_processes, write_json
from tests.sim.test_libxl_create import CreateTestCase
import uuid

from txlibxl.sim.savestream import SimDomain, SimGuest, libxl_stream, read_stream, split_libxl_stream, write_stream
from txlibxl.sim.savestream import format as fmt
from txlibxl.sim.savestream.writer import record
from txlibxl.testing.simhost import start_simulated_host

#: Debian's save helper (xen-utils-4.17), which libxl runs.
HELPER = "/usr/lib/xen-4.17/bin/libxl-save-helper"
ERROR_INVAL = -6
ERROR_GUEST_TIMEDOUT = -8


def summary(path: str):
    """The simulator's stream inside a libxl stream file, read back."""
    with open(path, "rb") as f:
        data = f.read()
    start, end = split_libxl_stream(data)
    return read_stream(io.BytesIO(data[start:end])), data


class SaveTestCase(CreateTestCase):
    def setUp(self) -> Any:
        if not os.access(HELPER, os.X_OK):
            raise SkipTest(f"{HELPER} is not installed (Debian package xen-utils-4.17)")
        return super().setUp()

    async def running(self, name: str = "web1", image_kb: Optional[int] = None,
                      marker: Optional[str] = None, **kw: Any) -> Tuple[int, Dict[str, Any]]:
        """A libxl-created, running guest: its domid and configuration."""
        cfg = self.config(name, **kw)
        domid, _ = await self.create(cfg, "unpause", "last")
        if image_kb is not None:
            await self.host.control.guest_image(domid, image_kb)
        if marker is not None:
            await self.host.control.guest_marker(domid, marker)
        return domid, cfg

    def stream_path(self, name: str = "web1.save") -> str:
        return os.path.join(self.files, name)

    async def save(self, domid: int, *more: Any, live: bool = False) -> Tuple[Dict[str, Any], str]:
        path = self.stream_path()
        proc = await self.cclient_ok("save", domid, path, *(["live"] if live else []), *more)
        [line] = proc.results("save")
        self.assertNotIn(b"is not simulated", proc.stderr, proc.describe("a stub was hit"))
        return line, path

    async def restore(self, cfg: Dict[str, Any], path: str, *more: Any,
                      env: Optional[Dict[str, str]] = None) -> Tuple[Dict[str, Any], CClientProcess]:
        """cclient restore; C{env} is another host's environment."""
        config = write_json(self.files, "restore-" + cfg["c_info"]["name"], cfg)
        args = ["restore", config, path, *more]
        if env is None:
            proc = self.cclient(*args)
        else:
            proc = CClientProcess.spawn(reactor, self.cclient_binary, [str(a) for a in args], env)
            self.addCleanup(proc.ensure_stopped)
        await proc.finished()
        [line] = proc.results("restore")
        return line, proc

    async def info(self, domid: int, host: Any = None) -> Dict[str, Any]:
        return await (host or self.host).control.info(domid)


class RoundTripTests(SaveTestCase):
    async def test_save_then_restore_keeps_uuid_memory_vcpus_and_the_marker(self) -> None:
        domid, cfg = await self.running(memory_kb=524288, vcpus=3, marker="before the save")
        line, path = await self.save(domid)
        self.assertEqual((line["rc"], line["live"]), (0, False))
        saved = await self.info(domid)
        self.assertEqual((saved["state"], saved["shutdown_reason"]), ("shutdown", "suspend"))
        await self.cclient_ok("destroy", domid)
        restored, proc = await self.restore(cfg, path, "info", "last")
        self.assertEqual(restored["rc"], 0, proc.describe("restore failed"))
        self.assertEqual(proc.timeouts_fired(), [])
        new = restored["domid"]
        self.assertNotEqual(new, domid)
        info = await self.info(new)
        self.assertEqual((info["uuid"], info["memory_kb"], info["vcpus"]), (cfg["c_info"]["uuid"], 524288, 3))
        self.assertEqual((info["marker"], info["state"]), ("before the save", "paused"))
        [libxl_info] = proc.results("info")
        self.assertEqual((libxl_info["domain"]["name"], libxl_info["domain"]["current_memkb"]), ("web1", 524288))
        self.assertEqual(restored["bytes_read"], os.path.getsize(path))

    async def test_a_restored_guest_runs_and_answers_its_toolstack(self) -> None:
        domid, cfg = await self.running(marker="m")
        _, path = await self.save(domid)
        await self.cclient_ok("destroy", domid)
        line, proc = await self.restore(cfg, path, "unpause", "last", "watch-death", "last",
                                        "shutdown", "last", "wait-events", 1)
        self.assertEqual(proc.exit_code, 0, proc.describe("failed"))
        self.assertEqual([e["shutdown_reason"] for e in proc.events("domain_shutdown")], ["poweroff"])
        self.assertEqual(await self.tree_value("/local/domain/%d/device/vbd/51712/state" % line["domid"]), "4")

    async def tree_value(self, path: str) -> str:
        return (await self.xenstore("xenstore-read", path)).strip()

    async def test_the_file_is_libxls_stream_around_the_simulators_which_reads_back(self) -> None:
        domid, cfg = await self.running(marker="inside")
        line, path = await self.save(domid)
        stream, data = summary(path)
        self.assertEqual((stream.domain.uuid.hex, stream.marker), (cfg["c_info"]["uuid"].replace("-", ""), b"inside"))
        self.assertEqual((stream.domain.vcpus, stream.guest.memory_kb), (2, 262144))
        self.assertEqual((stream.pages_sent, stream.domain.image_pages), (256, 256))
        self.assertEqual(len(data), line["bytes"])
        # libxl's END follows the helper's part.
        self.assertEqual(data[split_libxl_stream(data)[1]:], fmt.RECORD.pack(0, 0))

    async def test_a_pvh_guest_round_trips(self) -> None:
        domid, cfg = await self.running("pvh1", type="pvh", marker="pvh")
        _, path = await self.save(domid)
        self.assertEqual(summary(path)[0].header_type, "hvm")
        await self.cclient_ok("destroy", domid)
        line, proc = await self.restore(cfg, path, "unpause", "last")
        self.assertEqual(line["rc"], 0, proc.describe("restore failed"))
        info = await self.info(line["domid"])
        self.assertEqual((info["type"], info["marker"], info["state"]), ("pvh", "pvh", "running"))

    async def test_a_64_mib_image_moves_64_mib_each_way(self) -> None:
        domid, cfg = await self.running(image_kb=65536, marker="big")
        line, path = await self.save(domid)
        pages = 16384
        self.assertGreater(line["bytes"], pages * 4096)
        self.assertLess(line["bytes"], pages * (4096 + 8) + 4096)
        self.assertEqual(os.path.getsize(path), line["bytes"])
        await self.cclient_ok("destroy", domid)
        restored, proc = await self.restore(cfg, path)
        self.assertEqual(restored["rc"], 0, proc.describe("restore failed"))
        self.assertEqual(restored["bytes_read"], line["bytes"])
        info = await self.info(restored["domid"])
        self.assertEqual((info["image_kb"], info["marker"]), (65536, "big"))


class CrossCheckTests(SaveTestCase):
    """The shim's C restore takes what the Python writer writes, and
    refuses what the Python reader refuses."""

    def python_stream(self, cfg: Dict[str, Any], **kw: Any) -> str:
        described = SimDomain("pv", uuid.UUID(cfg["c_info"]["uuid"]), 2, 263168, 256, 0xC0FFEE, 2, 3)
        out = io.BytesIO()
        write_stream(out, described, SimGuest(262144, frozenset({0, 1})), b"from python", **kw)
        path = self.stream_path("python.save")
        with open(path, "wb") as f:
            f.write(libxl_stream(out.getvalue()))
        return path

    async def test_a_stream_the_python_writer_wrote_restores_through_the_helper(self) -> None:
        cfg = self.config("web1")
        path = self.python_stream(cfg, rounds=[range(256), range(0, 256, 4), [0]])
        line, proc = await self.restore(cfg, path)
        self.assertEqual(line["rc"], 0, proc.describe("restore failed"))
        info = await self.info(line["domid"])
        self.assertEqual((info["marker"], info["image_kb"], info["memory_kb"]), ("from python", 1024, 262144))

    async def test_a_python_written_stream_missing_a_page_is_refused_by_the_helper(self) -> None:
        cfg = self.config("web1")
        before = await self.host_tree()
        line, proc = await self.restore(cfg, self.python_stream(cfg, rounds=[range(255)]))
        self.assertNotEqual(line["rc"], 0)
        self.assertIn(b"1 pages of the image never came", proc.stderr)
        await self.assert_nothing_left(before)

    async def test_a_domain_the_simulator_made_saves_and_restores_too(self) -> None:
        made = await self.host.control.create_domain(name="made1", vcpus=2, memory_kb=131072)
        await self.host.control.guest_marker(made["domid"], "made")
        config = await self.cclient_ok("config", made["domid"])
        cfg = config.results("config")[0]["config"]
        _, path = await self.save(made["domid"])
        await self.cclient_ok("destroy", made["domid"])
        line, proc = await self.restore(cfg, path, "unpause", "last")
        self.assertEqual(line["rc"], 0, proc.describe("restore failed"))
        info = await self.info(line["domid"])
        self.assertEqual((info["uuid"], info["marker"], info["state"]), (made["uuid"], "made", "running"))


class LiveAndResumeTests(SaveTestCase):
    async def test_a_live_save_sends_the_image_then_shrinking_dirty_rounds(self) -> None:
        domid, cfg = await self.running(image_kb=4096, marker="live")
        line, path = await self.save(domid, live=True)
        self.assertEqual(line["live"], True)
        stream, _ = summary(path)
        # 1024 pages, then every 4th, 16th, 64th (libxc's policy stops
        # under 50), then every 256th once suspended.
        self.assertEqual(stream.pages_sent, 1024 + 255 + 63 + 15 + 3)
        self.assertEqual((stream.page_records, stream.marker), (5, b"live"))
        await self.cclient_ok("destroy", domid)
        restored, proc = await self.restore(cfg, path)
        self.assertEqual(restored["rc"], 0, proc.describe("restore failed"))
        self.assertEqual((await self.info(restored["domid"]))["marker"], "live")

    async def test_a_domain_resumed_after_a_save_runs_and_its_next_shutdown_is_seen(self) -> None:
        domid, _ = await self.running()
        proc = await self.cclient_ok("save", domid, self.stream_path(), "resume", domid, "watch-death", domid,
                                     "shutdown", domid, "wait-events", 1, 30)
        self.assertEqual(proc.results("resume")[0]["rc"], 0)
        self.assertEqual([e["shutdown_reason"] for e in proc.events("domain_shutdown")], ["poweroff"])

    async def test_a_guest_that_never_suspends_fails_the_save_and_keeps_running(self) -> None:
        domid, _ = await self.running()
        await self.host.control.fault("guest_ignore_shutdown", domid=domid)
        # libxl waits 60 s for the guest's answer: this loop's clock runs 20 times faster.
        proc = self.cclient("timeout-scale", 0.05, "save", domid, self.stream_path())
        self.assertEqual(await proc.finished(), 1)
        [line] = proc.results("save")
        self.assertEqual(line["rc"], ERROR_GUEST_TIMEDOUT, proc.describe("unexpected rc"))
        self.assertEqual([t["after_s"] for t in proc.timeouts_fired()], [60.0])
        self.assertIn(b"guest didn't acknowledge suspend", proc.stderr)
        self.assertEqual((await self.info(domid))["state"], "running")
        self.assertEqual(await self.xenstore("xenstore-read", "/local/domain/%d/control/shutdown" % domid), "\n")
        self.assertEqual(leftover_processes(self.host.info["hypercall"]), [])
        # Once the guest answers again, the same domain saves.
        await self.host.control.fault("clear")
        line, _ = await self.save(domid)
        self.assertEqual(line["rc"], 0)


class BadStreamTests(SaveTestCase):
    async def saved_stream(self) -> Tuple[Dict[str, Any], bytes]:
        domid, cfg = await self.running()
        _, path = await self.save(domid)
        await self.cclient_ok("destroy", domid)
        with open(path, "rb") as f:
            return cfg, f.read()

    def write(self, name: str, data: bytes) -> str:
        path = self.stream_path(name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    async def test_truncated_corrupt_or_foreign_streams_fail_and_leave_nothing(self) -> None:
        cfg, data = await self.saved_stream()
        before = await self.host_tree()
        start, end = split_libxl_stream(data)
        flipped = bytearray(data)
        flipped[start + 200_000] ^= 1
        head = fmt.IHDR.pack(fmt.IHDR_MARKER, fmt.IHDR_ID, 3, 0) + fmt.DHDR.pack(1, 12, 0, 4, 17)
        foreign = fmt.libxl_stream(head + record(2, bytes(8)) + record(0))
        bad = {
            "cut in the pages": data[:len(data) // 2],
            "cut in the libxc header": data[:start + 10],
            "cut before END": data[:end - 8],
            "a page flipped": bytes(flipped),
            "a real libxc stream": foreign,
            "not libxc's framing": data[:start] + b"\0" * 4096,
        }
        for what, stream in bad.items():
            line, proc = await self.restore(cfg, self.write("bad.save", stream))
            self.assertEqual(proc.exit_code, 1, "%s: %s" % (what, proc.describe("did not fail cleanly")))
            self.assertNotEqual(line["rc"], 0, what)
            self.assertNotIn("refused", line, what)
            await self.assert_nothing_left(before)

    async def test_empty_and_non_libxl_streams_are_refused_before_libxl_sees_them(self) -> None:
        cfg, data = await self.saved_stream()
        before = await self.host_tree()
        libxl_header = fmt.LIBXL_HEADER.pack(fmt.LIBXL_IDENT, 2, 0)
        cases = {
            "empty stream": b"",
            "not a libxl stream": b"\x55" * 4096,
            "truncated libxl header": data[:20],
            "not a little-endian libxl v2 stream": fmt.LIBXL_HEADER.pack(fmt.LIBXL_IDENT, 2, 1) + data[16:],
            "no LIBXC_CONTEXT record first": libxl_header + fmt.RECORD.pack(0, 0),
        }
        for why, stream in cases.items():
            line, proc = await self.restore(cfg, self.write("bad.save", stream))
            self.assertEqual((proc.exit_code, line["rc"], line.get("refused")), (1, ERROR_INVAL, why))
            await self.assert_nothing_left(before)

    async def test_a_pv_stream_does_not_restore_into_a_pvh_domain(self) -> None:
        cfg, data = await self.saved_stream()
        before = await self.host_tree()
        cfg["c_info"]["type"] = "pvh"
        cfg["b_info"] = dict(cfg["b_info"], **{"type.pvh": {}})
        del cfg["b_info"]["type.pv"]
        line, proc = await self.restore(cfg, self.write("pv.save", data))
        self.assertNotEqual(line["rc"], 0)
        self.assertIn(b"domain header type 1", proc.stderr)
        await self.assert_nothing_left(before)


class TwoHostsTests(SaveTestCase):
    async def test_a_domain_saved_on_one_host_restores_on_another(self) -> None:
        other = await start_simulated_host()
        self.addCleanup(other.stop)
        domid, cfg = await self.running(vcpus=3, image_kb=8192, marker="moved")
        _, path = await self.save(domid)
        await self.cclient_ok("destroy", domid)
        line, proc = await self.restore(cfg, path, "unpause", "last", env=other.environment(preload=True))
        self.assertEqual(line["rc"], 0, proc.describe("restore on the other host failed"))
        info = await self.info(line["domid"], host=other)
        self.assertEqual((info["uuid"], info["vcpus"], info["image_kb"]), (cfg["c_info"]["uuid"], 3, 8192))
        self.assertEqual((info["marker"], info["state"]), ("moved", "running"))
        # The first host knows nothing of it.
        self.assertEqual(await self.sim_domids(), [0])


class InProcessTests(SaveTestCase):
    async def test_the_helper_gets_the_shim_from_a_process_that_loaded_it_with_rtld_global(self) -> None:
        domid, _ = await self.running(marker="in process")
        path = self.stream_path()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.pathsep.join(sys.path)}
        env.update(self.host.environment(preload=False))
        out, err, code = await utils.getProcessOutputAndValue(
            sys.executable, ["-m", "tests.sim.save_in_process", self.host.shim, str(domid), path], env=env)
        self.assertEqual((code, out.strip()), (0, b"rc=0"), err.decode(errors="replace"))
        self.assertEqual(summary(path)[0].marker, b"in process")
        self.assertEqual(leftover_processes(self.host.info["hypercall"]), [])
