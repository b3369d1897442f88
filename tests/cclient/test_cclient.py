"""
The C client on its own: its command line is checked before libxl is
touched, and without a (simulated) host libxl cannot open a context.
Its behaviour against libxl is tested in tests/sim/test_libxl_on_sim.py.
"""
from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase

from tests.cclient import CClientProcess, CClientUnavailable, cached_build

USAGE = 64
SETUP_FAILED = 2


class CommandLineTests(TestCase):
    def setUp(self) -> None:
        try:
            self.binary = cached_build()
        except CClientUnavailable as e:
            raise SkipTest(f"cannot build the C client: {e}")

    async def run_client(self, *args: Any) -> CClientProcess:
        proc = CClientProcess.spawn(reactor, self.binary, [str(a) for a in args], {})
        self.addCleanup(proc.ensure_stopped)
        await proc.finished()
        return proc

    async def test_an_unknown_command_is_a_usage_error(self) -> None:
        proc = await self.run_client("list", "frobnicate")
        self.assertEqual(proc.exit_code, USAGE)
        self.assertIn(b"unknown command frobnicate", proc.stderr)
        self.assertEqual(proc.lines, [], "libxl was touched before the command line was checked")

    async def test_a_command_without_its_domid_is_a_usage_error(self) -> None:
        proc = await self.run_client("info")
        self.assertEqual(proc.exit_code, USAGE)

    async def test_a_domid_that_is_not_a_number_is_a_usage_error(self) -> None:
        proc = await self.run_client("destroy", "web1")
        self.assertEqual(proc.exit_code, USAGE)

    async def test_no_command_is_a_usage_error(self) -> None:
        proc = await self.run_client()
        self.assertEqual(proc.exit_code, USAGE)

    async def test_without_a_host_libxl_cannot_open_a_context(self) -> None:
        if os.path.exists("/dev/xen/privcmd") or os.path.exists("/proc/xen/privcmd"):
            raise SkipTest("this machine runs Xen: libxl can open a context here")
        proc = await self.run_client("list")
        self.assertEqual(proc.exit_code, SETUP_FAILED)
        self.assertEqual(proc.lines, [{"setup": "libxl_ctx_alloc", "rc": -3}])

    async def test_save_restore_and_timeout_scale_check_their_arguments_first(self) -> None:
        for args in (["save", "1"], ["restore", "cfg.json"], ["resume"], ["timeout-scale", "0"],
                     ["timeout-scale", "x"]):
            proc = await self.run_client(*args)
            self.assertEqual(proc.exit_code, USAGE, args)
            self.assertEqual(proc.lines, [], args)
