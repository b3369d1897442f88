"""
QMP on a real Unix socket (:mod:`txlibxl.sim.devicemodel.server`): a
descriptor passed with ``SCM_RIGHTS`` reaches ``add-fd``, a socket the
toolstack bound can be served, and closing removes the socket file only
while it is still the listener's.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.sim.qmp_client import qmp_connect
from tests.sim.test_devicemodel_qmp import libxl_argv
from txlibxl.sim.devicemodel.cmdline import parse
from txlibxl.sim.devicemodel.model import DeviceModel
from txlibxl.sim.devicemodel.qmp import QmpSession
from txlibxl.sim.devicemodel.server import QmpFactory, QmpListener



class ServerTests(TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="txq-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "qmp")
        self.model = DeviceModel.from_command_line(parse(libxl_argv()))
        self.addCleanup(self.model.close)
        self.factory = QmpFactory(lambda send, close: QmpSession(self.model, send, close))

    def listen(self) -> QmpListener:
        listener = QmpListener.bind(reactor, self.path, self.factory)
        self.addCleanup(listener.close)
        return listener

    async def test_a_descriptor_passed_with_a_command_is_added_and_used(self) -> None:
        self.listen()
        iso = os.path.join(self.dir, "other.iso")
        with open(iso, "wb") as f:
            f.truncate(8192)
        client = await qmp_connect(self.path)
        fd = os.open(iso, os.O_RDONLY)
        try:
            added = await client.call("add-fd", {"opaque": "raw:" + iso}, fd=fd)
        finally:
            os.close(fd)  # the device model has its own copy
        await client.call("blockdev-change-medium",
                          {"id": "ide-5632", "filename": "/dev/fdset/%d" % added["fdset-id"], "format": "raw"})
        [cd] = [b for b in await client.call("query-block") if b.get("qdev") == "ide-5632"]
        self.assertEqual(cd["inserted"]["image"]["virtual-size"], 8192)
        await client.close()

    async def test_the_socket_is_its_owners_only(self) -> None:
        self.listen()
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    async def test_a_socket_the_toolstack_bound_is_served(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        listener = QmpListener.adopt(reactor, os.dup(sock.fileno()), self.factory)
        sock.close()
        self.addCleanup(listener.close)
        client = await qmp_connect(self.path)
        self.assertEqual((await client.call("query-status"))["status"], "running")
        await client.close()

    async def test_closing_removes_the_socket_only_if_it_is_still_its_own(self) -> None:
        first = self.listen()
        first.close()
        self.assertFalse(os.path.exists(self.path))
        second = self.listen()
        # libxl removed the socket and a new device model of the same domid
        # listens there now: the old one's late clean-up leaves it.
        os.unlink(self.path)
        third = QmpListener.bind(reactor, self.path, self.factory)
        self.addCleanup(third.close)
        second.close()
        self.assertTrue(os.path.exists(self.path))
        client = await qmp_connect(self.path)
        await client.close()
