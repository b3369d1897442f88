"""
What the shim gives libxl's HVM create path: a scratch page for the
hvm_info_table libxl maps (``xc_map_foreign_range``), and the redirection
of the firmware libxl reads to the host's root.  (The redirection of the
device model's path and of its QMP socket, which libxl reaches through
execvp and connect, is shown by libxl itself: ``test_libxl_hvm``.)
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import uuid
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from tests.sim.test_shim import LIBXENLIGHT, ShimTestCase, load_shim
from txlibxl.sim.hypervisor.domctl import CDF_HAP, CDF_HVM, EMU_HVM

#: From <xen/hvm/hvm_info_table.h>.
HVM_INFO_PFN = 0x09F
HVM_INFO_OFFSET = 0x800
PAGE = 4096
#: sizeof(struct hvm_info_table) in Xen 4.17.
HVM_INFO_TABLE_SIZE = 48


class MapForeignRangeTests(ShimTestCase):
    def setUp(self) -> None:
        super().setUp()
        fn = self.lib.xc_map_foreign_range
        fn.restype = ctypes.c_void_p
        fn.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_int, ctypes.c_ulong]

    def hvm(self, pages: int = 256) -> int:
        domain = self.hv.createdomain(0, CDF_HVM | CDF_HAP, uuid.uuid4().bytes, 1, emulation_flags=EMU_HVM)
        if pages:
            self.hv.set_max_memory(domain.domid, pages * 4)
            self.hv.populate(domain.domid, pages)
        return domain.domid

    @inlineCallbacks
    def test_the_hvm_info_page_is_scratch_memory_with_the_tables_header(self) -> Any:
        xch = yield self.open()
        va, err = yield self.call("xc_map_foreign_range", xch, self.hvm(), PAGE, 3, HVM_INFO_PFN)
        self.assertTrue(va, os.strerror(err))
        table = ctypes.string_at(va + HVM_INFO_OFFSET, 12)
        self.assertEqual(table[:8], b"HVM INFO")
        self.assertEqual(int.from_bytes(table[8:12], "little"), HVM_INFO_TABLE_SIZE)
        # Writable, as libxl writes the vCPU map and the checksum there.
        ctypes.memset(va + HVM_INFO_OFFSET + 16, 0xFF, 8)
        libc = ctypes.CDLL(None)
        self.assertEqual(libc.munmap(ctypes.c_void_p(va), ctypes.c_size_t(PAGE)), 0)

    @inlineCallbacks
    def test_a_domain_without_memory_or_no_domain_has_nothing_to_map(self) -> Any:
        xch = yield self.open()
        va, err = yield self.call("xc_map_foreign_range", xch, self.hvm(pages=0), PAGE, 3, HVM_INFO_PFN)
        self.assertEqual((va, err), (None, errno.EFAULT))
        va, err = yield self.call("xc_map_foreign_range", xch, 4321, PAGE, 3, HVM_INFO_PFN)
        self.assertEqual((va, err), (None, errno.ESRCH))
        va, err = yield self.call("xc_map_foreign_range", xch, self.hvm(), 100, 3, HVM_INFO_PFN)
        self.assertEqual((va, err), (None, errno.EINVAL))


class HvmRedirectionTests(TestCase):
    """Once libxenlight's GOT is patched, the firmware it reads is the root's."""

    def setUp(self) -> None:
        self.lib = load_shim()
        try:
            self.xl = ctypes.CDLL(LIBXENLIGHT, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise SkipTest(f"libxenlight 4.17 cannot be loaded: {e}")
        fn = self.xl.libxl_read_file_contents
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)]
        self.root = tempfile.mkdtemp(prefix="txsim-root-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.assertEqual(self.lib.txsim_redirect_paths(self.root.encode()), 0)

    def put(self, sub: str, content: bytes) -> None:
        path = os.path.join(self.root, sub)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)

    def read_via_libxl(self, path: str) -> bytes:
        data, length = ctypes.c_void_p(), ctypes.c_int()
        rc = self.xl.libxl_read_file_contents(None, path.encode(), ctypes.byref(data), ctypes.byref(length))
        self.assertEqual(rc, 0, os.strerror(rc))
        content = ctypes.string_at(data.value, length.value)
        ctypes.CDLL(None).free(ctypes.c_void_p(data.value))
        return content

    def test_the_firmware_libxl_loads_is_the_roots(self) -> None:
        for path in ("/usr/share/seabios/bios-256k.bin", "/usr/lib/xen-4.17/boot/hvmloader", "/usr/share/ovmf/OVMF.fd"):
            self.put(path[1:], b"stand-in " + path.encode())
            self.assertEqual(self.read_via_libxl(path), b"stand-in " + path.encode())
