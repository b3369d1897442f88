"""
How :mod:`tests.realxen.guests` makes its guests: the xl configuration and
command line a test's :class:`~tests.realxen.scenarios.GuestSpec` gives,
and the initrd overlay that makes the guest's action happen once.  No Xen
needed.
"""
from __future__ import annotations

import gzip
import os
from typing import Dict, List

from twisted.trial.unittest import TestCase

from .guests import RealGuestHost, boot_overlay, write_initrd
from .scenarios import GuestSpec


def read_newc(data: bytes) -> Dict[str, bytes]:
    """The files of an uncompressed newc cpio archive (until its trailer)."""
    files: Dict[str, bytes] = {}
    at = 0
    while True:
        assert data[at : at + 6] == b"070701", data[at : at + 6]
        fields = [int(data[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name_at = at + 110
        name = data[name_at : name_at + namesize - 1].decode()
        body_at = name_at + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return files
        files[name] = data[body_at : body_at + size]
        at = body_at + size + (-size % 4)


class GuestConfigTests(TestCase):
    def setUp(self) -> None:
        self.host = RealGuestHost(reactor=None, workdir="/work")

    def _settings(self, spec: GuestSpec) -> Dict[str, str]:
        lines: List[str] = self.host.config("g1", spec).splitlines()
        return dict((k.strip(), v.strip().strip('"')) for k, _, v in (l.partition("=") for l in lines if l))

    def test_every_shutdown_is_preserved_for_the_test_by_default(self) -> None:
        settings = self._settings(GuestSpec("poweroff"))
        self.assertEqual([settings[k] for k in ("on_poweroff", "on_reboot", "on_crash")], ["preserve"] * 3)
        self.assertEqual(RealGuestHost.create_arguments(GuestSpec("poweroff"), "g.cfg"), ["create", "-p", "-e", "g.cfg"])

    def test_a_test_chooses_the_on_actions_and_then_xls_daemon_carries_them_out(self) -> None:
        spec = GuestSpec("reboot", on_reboot="restart", on_crash="destroy")
        settings = self._settings(spec)
        self.assertEqual(settings["on_reboot"], "restart")
        self.assertEqual(settings["on_crash"], "destroy")
        self.assertEqual(settings["on_poweroff"], "preserve")
        self.assertEqual(RealGuestHost.create_arguments(spec, "g.cfg"), ["create", "-p", "g.cfg"])

    def test_each_guest_boots_its_own_initrd(self) -> None:
        self.assertEqual(self._settings(GuestSpec())["ramdisk"], "/work/g1.initrd")


class BootOverlayTests(TestCase):
    def test_the_overlay_is_a_newc_archive_with_the_action_and_the_boot(self) -> None:
        files = read_newc(boot_overlay("reboot", "first"))
        self.assertEqual(files, {"realxen-boot": b"action=reboot\nboot=first\n"})

    def test_the_initrd_is_one_uncompressed_stream_the_shared_archive_then_the_overlay(self) -> None:
        base = self.mktemp()
        shared = boot_overlay("shared", "archive")[:-3]  # any archive, not 4-byte aligned
        with open(base, "wb") as f:
            f.write(gzip.compress(shared))
        path = self.mktemp()
        write_initrd(path, "crash", "first", base=base)
        first = open(path, "rb").read()
        write_initrd(path, "idle", "restart", base=base)
        again = open(path, "rb").read()
        # Not gzip (libxc would inflate it to the last member's size only).
        self.assertNotEqual(first[:2], b"\x1f\x8b")
        self.assertTrue(first.startswith(shared))
        overlay_at = len(shared) + (-len(shared) % 4)  # the kernel wants archives 4-byte aligned
        self.assertEqual(read_newc(first[overlay_at:]), {"realxen-boot": b"action=crash\nboot=first\n"})
        self.assertEqual(read_newc(again[overlay_at:]), {"realxen-boot": b"action=idle\nboot=restart\n"})
        self.assertFalse(os.path.exists(path + ".tmp"))
