"""
The device model stand-in's CD-ROM drives and passed descriptors, through
QMP (what ``libxl_cdrom_insert`` does: ``eject``, ``add-fd``,
``blockdev-change-medium``), the guest's own eject, the device state it
saves, the silent fault; and the command line it takes from libxl.
"""
from __future__ import annotations

import os
from typing import Any, Tuple

from twisted.trial.unittest import TestCase

from tests.sim.test_devicemodel_qmp import Conversation, libxl_argv
from txlibxl.sim.devicemodel.cmdline import UsageError, parse, split_options
from txlibxl.sim.devicemodel.commands import SAVE_MAGIC


class MediumTests(TestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.iso = self.image("other.iso", 4096)
        self.c = Conversation()
        self.addCleanup(self.c.model.close)

    def image(self, name: str, size: int) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.truncate(size)
        return path

    def cd(self) -> Any:
        return self.c.call("query-block")[1]

    def passed(self, path: str, opaque: str = "raw:x") -> Tuple[int, Any]:
        """add-fd with a descriptor of C{path}, as libxl passes it."""
        fd = os.open(path, os.O_RDONLY)
        self.c.session.fd_received(fd)
        return fd, self.c.call("add-fd", {"opaque": opaque})

    @staticmethod
    def is_open(fd: int) -> bool:
        try:
            os.fstat(fd)
        except OSError:
            return False
        return True

    def test_eject_opens_the_tray_and_takes_the_medium_out(self) -> None:
        self.assertEqual(self.c.call("eject", {"id": "ide-5632"}), {})
        cd = self.cd()
        self.assertEqual((cd["tray_open"], "inserted" in cd), (True, False))
        [moved] = self.c.events()
        self.assertEqual(moved["data"], {"device": "ide-5632", "id": "ide-5632", "tray-open": True})
        # An empty drive ejects again without complaint.
        self.assertEqual(self.c.call("eject", {"id": "ide-5632"}), {})

    def test_a_disk_is_not_removable(self) -> None:
        error = self.c.error("eject", {"device": "ide0-hd0"})
        self.assertEqual(error["desc"], "Device 'ide0-hd0' is not removable")

    def test_libxls_insert_a_passed_descriptor_becomes_the_medium(self) -> None:
        self.c.call("query-version")
        self.c.call("eject", {"id": "ide-5632"})
        fd, added = self.passed(self.iso, "raw:" + self.iso)
        self.assertEqual(added["fdset-id"], 0)
        self.assertEqual(self.c.call("query-fdsets"), [{"fdset-id": 0, "fds": [{"fd": fd, "opaque": "raw:" + self.iso}]}])
        self.c.call("blockdev-change-medium", {"id": "ide-5632", "filename": "/dev/fdset/0", "format": "raw"})
        cd = self.cd()
        self.assertEqual((cd["tray_open"], cd["inserted"]["file"], cd["inserted"]["ro"]), (False, "/dev/fdset/0", True))
        self.assertEqual(cd["inserted"]["image"]["virtual-size"], 4096)
        self.assertEqual([e["data"]["tray-open"] for e in self.c.events()], [True, False])

    def test_a_set_a_medium_uses_outlives_its_client_until_ejected(self) -> None:
        fd, _ = self.passed(self.iso)
        self.c.call("blockdev-change-medium", {"id": "ide-5632", "filename": "/dev/fdset/0"})
        self.c.session.connection_lost()
        self.assertTrue(self.is_open(fd))
        again = Conversation(self.c.model)
        again.call("eject", {"id": "ide-5632"})
        self.assertFalse(self.is_open(fd))
        self.assertEqual(again.call("query-fdsets"), [])

    def test_a_set_nobody_uses_goes_with_its_client(self) -> None:
        fd, _ = self.passed(self.iso)
        self.c.session.connection_lost()
        self.assertFalse(self.is_open(fd))
        self.assertEqual(self.c.model.fdsets, {})

    def test_remove_fd_closes_an_unused_set(self) -> None:
        fd, added = self.passed(self.iso)
        self.assertEqual(self.c.error("remove-fd", {"fdset-id": 5})["desc"], "File descriptor named 'fdset-id:5' not found")
        self.c.call("remove-fd", {"fdset-id": added["fdset-id"]})
        self.assertFalse(self.is_open(fd))

    def test_add_fd_needs_a_descriptor_and_others_passed_are_closed(self) -> None:
        self.assertEqual(self.c.error("add-fd")["desc"], "No file descriptor supplied via SCM_RIGHTS")
        stray = os.open(self.iso, os.O_RDONLY)
        self.c.session.fd_received(stray)
        self.c.call("query-status")
        self.assertFalse(self.is_open(stray))

    def test_a_medium_that_cannot_be_opened_leaves_the_drive_as_it_was(self) -> None:
        for name in ("/dev/fdset/3", os.path.join(self.dir, "missing.iso")):
            error = self.c.error("blockdev-change-medium", {"id": "ide-5632", "filename": name})
            self.assertIn("Could not open", error["desc"])
        self.assertEqual(self.cd()["inserted"]["file"], "/srv/cd.iso")
        self.assertIn("Unknown driver", self.c.error(
            "blockdev-change-medium", {"id": "ide-5632", "filename": self.iso, "format": "floppy"})["desc"])

    def test_a_path_medium_and_the_tray_commands(self) -> None:
        self.c.call("blockdev-open-tray", {"id": "ide-5632"})
        self.c.call("blockdev-remove-medium", {"id": "ide-5632"})
        self.c.call("blockdev-close-tray", {"id": "ide-5632"})
        self.assertEqual((self.cd()["tray_open"], "inserted" in self.cd()), (False, False))
        self.assertIn("not open", self.c.error("blockdev-remove-medium", {"id": "ide-5632"})["desc"])
        self.c.call("blockdev-change-medium", {"id": "ide-5632", "filename": self.iso, "read-only-mode": "retain"})
        self.assertEqual(self.cd()["inserted"]["file"], self.iso)

    def test_the_guest_ejecting_opens_the_tray_and_query_block_says_so(self) -> None:
        block = self.c.model.find_block(id="ide-5632")
        self.c.model.guest_ejected(block)
        self.assertEqual((self.cd()["tray_open"], "inserted" in self.cd()), (True, False))

    def test_the_device_state_is_saved_to_a_passed_descriptor(self) -> None:
        path = os.path.join(self.dir, "qemu-save")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        self.c.session.fd_received(fd)
        added = self.c.call("add-fd")
        self.c.call("stop")
        self.c.call("xen-save-devices-state", {"filename": "/dev/fdset/%d" % added["fdset-id"], "live": False})
        with open(path, "rb") as f:
            data = f.read()
        self.assertTrue(data.startswith(SAVE_MAGIC))
        self.assertIn(b'"ide-5632"', data)
        self.assertEqual(self.c.call("xen-set-global-dirty-log", {"enable": False}), {})

    def test_a_silent_device_model_never_answers(self) -> None:
        c = Conversation(negotiate=False, silent=True)
        c.send({"execute": "qmp_capabilities", "id": 1})
        fd = os.open(self.iso, os.O_RDONLY)
        c.session.fd_received(fd)
        self.assertEqual((c.messages(), c.closed), ([], False))
        self.assertFalse(self.is_open(fd))


class CommandLineTests(TestCase):
    def test_libxls_command_line_gives_the_domain_monitors_and_drives(self) -> None:
        cmdline = parse(libxl_argv(domid=12))
        self.assertEqual((cmdline.domid, cmdline.name, cmdline.start_paused), (12, "hvm1", False))
        self.assertEqual(cmdline.monitors, ("libxl-cmd", "libxenstat-cmd"))
        qmp = cmdline.chardev("libxl-cmd")
        self.assertEqual((qmp.backend, qmp.path, qmp.server), ("socket", "/var/run/xen/qmp-libxl-12", True))
        disk, cd = cmdline.drives
        self.assertEqual((disk.id, disk.file, disk.media, disk.readonly), ("ide0-hd0", "/srv/disk.img", "disk", False))
        self.assertEqual((cd.id, cd.file, cd.readonly), ("ide-5632", "/srv/cd.iso", True))
        self.assertEqual(cmdline.device_for("ide-5632")[0], "ide-cd")
        self.assertEqual(cmdline.vnc, "127.0.0.1:0,to=99")

    def test_a_passed_monitor_socket_and_a_paused_start(self) -> None:
        # What libxl writes with dm_restrict: it binds the socket itself.
        cmdline = parse(["-xen-domid", "4", "-chardev", "socket,id=libxl-cmd,fd=9,server=on,wait=off",
                         "-S", "-mon", "chardev=libxl-cmd,mode=control", "-xen-domid-restrict"])
        self.assertEqual((cmdline.chardev("libxl-cmd").fd, cmdline.start_paused), (9, True))

    def test_a_cdrom_without_a_medium(self) -> None:
        cmdline = parse(["-xen-domid", "4", "-drive", "if=none,readonly=on,id=ide-5632",
                         "-device", "ide-cd,id=ide-5632,drive=ide-5632,bus=ide.1,unit=0"])
        self.assertIsNone(cmdline.drives[0].file)

    def test_commas_are_doubled_in_option_values(self) -> None:
        self.assertEqual(split_options("socket,path=/a,,b,server=on"), [(None, "socket"), ("path", "/a,b"), ("server", "on")])

    def test_what_qemu_would_refuse_is_a_usage_error(self) -> None:
        for argv in ([], ["-name", "x"], ["-xen-domid", "x"], ["-xen-domid", "1", "-m"], ["-xen-domid", "1", "disk.img"],
                     ["-xen-domid", "1", "-mon", "chardev=nope,mode=control"]):
            self.assertRaises(UsageError, parse, argv)

    def test_options_it_does_not_use_are_accepted(self) -> None:
        cmdline = parse(["--xen-domid", "2", "-usb", "-device", "usb-tablet", "-global", "x=y", "-nographic"])
        self.assertEqual(cmdline.domid, 2)
