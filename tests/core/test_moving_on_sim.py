"""
Saving and restoring domains through a Context, against the real
libxenlight and Debian's save helper on a simulated host: what a save
carries comes back in the restored domain; a cancelled or failed save
leaves the domain running; a bad stream is refused before libxl, or fails
in libxl, and leaves no domain; nothing of libxl's is left behind.
"""
from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SkipTest

from txlibxl import errors
from txlibxl.streamhead import HEAD_SIZE, InvalidSaveStream

from tests.core.test_building_on_sim import BuildingTestCase

#: Debian's save helper (xen-utils-4.17), which libxl runs.
HELPER = "/usr/lib/xen-4.17/bin/libxl-save-helper"


class MovingTestCase(BuildingTestCase):
    def setUp(self) -> Any:
        if not os.access(HELPER, os.X_OK):
            raise SkipTest(f"{HELPER} is not installed (Debian package xen-utils-4.17)")
        return super().setUp()

    @defer.inlineCallbacks
    def guest(self, marker: str = "before the save", image_kb: int = 0) -> Any:
        """A running guest whose agent wrote C{marker}: its domid and config."""
        config = self.config()
        domid = yield self.running(config)
        if image_kb:
            yield self.host.control.guest_image(domid, image_kb)
        yield self.host.control.guest_marker(domid, marker)
        saved = yield self.ctx.domain_config(domid)
        return domid, saved

    def state(self, domid: int) -> str:
        info = self.ctx.domain_info(domid)
        if info.shutdown:
            return f"shutdown:{info.shutdown_reason.name.lower()}"
        return "paused" if info.paused else "running"

    @defer.inlineCallbacks
    def assertQuiet(self) -> Any:
        """No operation, kept C argument, fd, timer or child of libxl's."""
        yield self.until(lambda: not self.ctx.running_children)
        yield self.until(lambda: self.ctx.osevents.stats().timers == 0 and self.ctx.osevents.stats().fds == 0)
        self.assertEqual(self.ctx.operations_in_flight, 0)
        self.assertEqual(self.ctx._ctx.operations_kept, frozenset())


class SaveRestoreTests(MovingTestCase):
    @defer.inlineCallbacks
    def test_save_then_restore_keeps_the_guests_marker(self) -> Any:
        domid, config = yield self.guest("written before the save")
        path = os.path.join(self.files, "web1.save")
        yield self.ctx.save(domid, path)
        self.assertEqual(self.guests(), [])  # saved, then destroyed, as xl save does
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        restored = yield self.ctx.restore(config, path)
        self.assertEqual(self.state(restored), "paused")
        yield self.ctx.unpause(restored)
        info = yield self.host.control.info(restored)
        self.assertEqual((info["marker"], info["state"], info["uuid"]),
                         ("written before the save", "running", config["c_info"]["uuid"]))
        yield self.assertQuiet()

    @defer.inlineCallbacks
    def test_a_live_save_into_an_open_file_restores_from_an_fd(self) -> Any:
        domid, config = yield self.guest("live", image_kb=4096)
        path = os.path.join(self.files, "live.save")
        with open(path, "wb") as f:
            f.write(b"")  # an open file object, left open
            yield self.ctx.save(domid, f, live=True)
            self.assertFalse(f.closed)
        fd = os.open(path, os.O_RDONLY)
        self.addCleanup(os.close, fd)
        restored = yield self.ctx.restore(config, fd)
        info = yield self.host.control.info(restored)
        self.assertEqual((info["marker"], info["image_kb"]), ("live", 4096))

    @defer.inlineCallbacks
    def test_a_checkpoint_leaves_the_domain_running(self) -> Any:
        domid, _ = yield self.guest()
        yield self.ctx.save(domid, os.path.join(self.files, "c.save"), then="resume")
        self.assertEqual(self.state(domid), "running")
        yield self.assertQuiet()

    @defer.inlineCallbacks
    def test_a_kept_domain_stays_suspended_until_resumed(self) -> Any:
        domid, _ = yield self.guest()
        yield self.ctx.save(domid, os.path.join(self.files, "k.save"), then="keep")
        self.assertEqual(self.state(domid), "shutdown:suspend")
        yield self.ctx.resume(domid)
        self.assertEqual(self.state(domid), "running")

    def test_a_bad_then_is_a_value_error(self) -> None:
        self.assertRaises(ValueError, self.ctx.save, 1, "/nonexistent", then="explode")


class CancelledSaveTests(MovingTestCase):
    @defer.inlineCallbacks
    def test_a_save_cancelled_mid_stream_leaves_the_domain_running_and_no_file(self) -> Any:
        domid, _ = yield self.guest(image_kb=262144)
        path = os.path.join(self.files, "cancelled.save")
        d = self.ctx.save(domid, path)
        yield self.until(lambda: os.path.exists(path) and os.path.getsize(path) > (1 << 20))
        d.cancel()
        failure = yield self.assertFailure(d, errors.OperationAborted)
        completed = yield failure.settled
        self.assertFalse(completed)
        self.assertEqual(self.state(domid), "running")
        self.assertFalse(os.path.exists(path))
        yield self.assertQuiet()
        # The domain saves again, whole.
        yield self.ctx.save(domid, path, then="resume")
        self.assertEqual(self.state(domid), "running")

    @defer.inlineCallbacks
    def test_a_save_of_a_missing_domain_fails_typed_and_leaves_no_file(self) -> Any:
        path = os.path.join(self.files, "none.save")
        yield self.assertFailure(self.ctx.save(4242, path), errors.LibxlError)
        self.assertFalse(os.path.exists(path))
        yield self.assertQuiet()


class BadStreamTests(MovingTestCase):
    @defer.inlineCallbacks
    def saved(self) -> Any:
        domid, config = yield self.guest()
        path = os.path.join(self.files, "good.save")
        yield self.ctx.save(domid, path)
        with open(path, "rb") as f:
            return config, f.read()

    def write(self, data: bytes) -> str:
        path = os.path.join(self.files, "bad.save")
        with open(path, "wb") as f:
            f.write(data)
        return path

    @defer.inlineCallbacks
    def test_empty_truncated_and_foreign_starts_are_refused_before_libxl(self) -> Any:
        config, data = yield self.saved()
        cases = {
            "empty stream": b"",
            "truncated libxl header": data[:HEAD_SIZE - 4],
            "not a libxl stream": b"\x55" * 4096,
            "not a little-endian libxl v2 stream": data[:8] + b"\0\0\0\x01" + data[12:],
        }
        for reason, stream in cases.items():
            e = yield self.assertFailure(self.ctx.restore(config, self.write(stream)), InvalidSaveStream)
            self.assertEqual((e.reason, e.code), (reason, errors.ERROR_INVAL))
            self.assertIsInstance(e, ValueError)
            self.assertEqual(self.guests(), [])
        yield self.assertQuiet()

    @defer.inlineCallbacks
    def test_a_stream_cut_in_its_body_fails_in_libxl_and_leaves_no_domain(self) -> Any:
        config, data = yield self.saved()
        yield self.assertFailure(self.ctx.restore(config, self.write(data[: len(data) // 2])), errors.LibxlError)
        yield self.until(lambda: self.guests() == [])
        yield self.assertQuiet()

    @defer.inlineCallbacks
    def test_a_pipe_is_not_read_ahead_so_it_is_refused(self) -> Any:
        config, _ = yield self.saved()
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        yield self.assertFailure(self.ctx.restore(config, r), InvalidSaveStream)

    def test_a_source_that_is_neither_path_file_nor_fd_is_a_type_error(self) -> Any:
        return self.assertFailure(self.ctx.restore(self.config(), 1.5), TypeError)


class CancelledRestoreTests(MovingTestCase):
    @defer.inlineCallbacks
    def test_a_restore_cancelled_mid_stream_leaves_no_domain(self) -> Any:
        domid, config = yield self.guest(image_kb=262144)
        path = os.path.join(self.files, "big.save")
        yield self.ctx.save(domid, path)
        d = self.ctx.restore(config, path)
        # libxl reads its own header, then its helper reads the rest: once
        # the helper runs, the restore is in the stream's body.
        yield self.until(lambda: len(self.ctx.running_children) > 0, 30)
        d.cancel()
        failure = yield self.assertFailure(d, errors.OperationAborted)
        yield failure.settled
        yield self.until(lambda: self.guests() == [])
        yield self.assertQuiet()


class ManyTests(MovingTestCase):
    timeout = 300
    COUNT = 20

    @defer.inlineCallbacks
    def test_twenty_saves_and_restores_at_once_leave_no_fd_timer_or_child(self) -> Any:
        saved = {}
        for i in range(self.COUNT):
            domid = yield self.running(self.config(name=f"s{i}", memory_kb=16384))
            yield self.host.control.guest_image(domid, 1024)
            yield self.host.control.guest_marker(domid, f"guest {i}")
            saved[domid] = (yield self.ctx.domain_config(domid)), os.path.join(self.files, f"s{i}.save")
        yield defer.gatherResults([self.ctx.save(d, path) for d, (_, path) in saved.items()], consumeErrors=True)
        self.assertEqual(self.guests(), [])
        yield self.assertQuiet()
        restored = yield defer.gatherResults([self.ctx.restore(c, path) for c, path in saved.values()],
                                             consumeErrors=True)
        self.assertEqual(len(set(restored)), self.COUNT)
        markers = []
        for domid in restored:
            info = yield self.host.control.info(domid)
            markers.append(info["marker"])
        self.assertEqual(sorted(markers), sorted(f"guest {i}" for i in range(self.COUNT)))
        yield defer.gatherResults([self.ctx.destroy(d) for d in restored], consumeErrors=True)
        yield self.assertNothingLeft()
        yield self.assertQuiet()
