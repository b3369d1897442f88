"""The libxenctrl shim against a real hypercall server.

The shim is loaded into this process with ctypes.  Its calls block, so they
run in the reactor's thread pool (``deferToThread``) while the reactor
serves the hypercall socket; the fork test runs in a child process.
"""
from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import sys
import tempfile
import uuid
from typing import Any, List, Optional, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

import txlibxl.sim
from txlibxl.sim import hypercalls
from txlibxl.sim.hypercalls import HypercallFactory
from txlibxl.sim.hypervisor import Hypervisor, ShutdownReason
from txlibxl.sim.store import Store

ENV = "TXLIBXL_SIM_HYPERCALL"
LIBXENLIGHT = "libxenlight.so.4.17"

DOMINF_SHUTDOWN = 1 << 2
DOMINF_PAUSED = 1 << 3
DOMINF_RUNNING = 1 << 5
HVM_PARAM_CALLBACK_IRQ = 0


class XcDomainInfo(ctypes.Structure):
    """``xc_domaininfo_t`` (``struct xen_domctl_getdomaininfo``, x86-64,
    domctl interface 0x15: 112 bytes)."""

    _fields_ = [
        ("domain", ctypes.c_uint16),
        ("pad1", ctypes.c_uint16),
        ("flags", ctypes.c_uint32),
        ("tot_pages", ctypes.c_uint64),
        ("max_pages", ctypes.c_uint64),
        ("outstanding_pages", ctypes.c_uint64),
        ("shr_pages", ctypes.c_uint64),
        ("paged_pages", ctypes.c_uint64),
        ("shared_info_frame", ctypes.c_uint64),
        ("cpu_time", ctypes.c_uint64),
        ("nr_online_vcpus", ctypes.c_uint32),
        ("max_vcpu_id", ctypes.c_uint32),
        ("ssidref", ctypes.c_uint32),
        ("handle", ctypes.c_uint8 * 16),
        ("cpupool", ctypes.c_uint32),
        ("gpaddr_bits", ctypes.c_uint8),
        ("pad2", ctypes.c_uint8 * 7),
        ("emulation_flags", ctypes.c_uint32),
        ("misc_flags", ctypes.c_uint32),
    ]


class XcDomInfo(ctypes.Structure):
    """``xc_dominfo_t`` as in the 4.17 ``<xenctrl.h>`` (112 bytes)."""

    _fields_ = [
        ("domid", ctypes.c_uint32),
        ("ssidref", ctypes.c_uint32),
        ("dying", ctypes.c_uint, 1),
        ("crashed", ctypes.c_uint, 1),
        ("shutdown", ctypes.c_uint, 1),
        ("paused", ctypes.c_uint, 1),
        ("blocked", ctypes.c_uint, 1),
        ("running", ctypes.c_uint, 1),
        ("hvm", ctypes.c_uint, 1),
        ("debugged", ctypes.c_uint, 1),
        ("xenstore", ctypes.c_uint, 1),
        ("hap", ctypes.c_uint, 1),
        ("shutdown_reason", ctypes.c_uint),
        ("nr_pages", ctypes.c_ulong),
        ("nr_outstanding_pages", ctypes.c_ulong),
        ("nr_shared_pages", ctypes.c_ulong),
        ("nr_paged_pages", ctypes.c_ulong),
        ("shared_info_frame", ctypes.c_ulong),
        ("cpu_time", ctypes.c_uint64),
        ("max_memkb", ctypes.c_ulong),
        ("nr_online_vcpus", ctypes.c_uint),
        ("max_vcpu_id", ctypes.c_uint),
        ("handle", ctypes.c_uint8 * 16),
        ("cpupool", ctypes.c_uint),
        ("gpaddr_bits", ctypes.c_uint8),
        ("emulation_flags", ctypes.c_uint32),
        ("misc_flags", ctypes.c_uint32),
    ]


def shim_path() -> Optional[str]:
    here = os.path.dirname(txlibxl.sim.__file__)
    found = sorted(glob.glob(os.path.join(here, "_xcshim*.so")))
    return found[0] if found else None


_shim: Optional[ctypes.CDLL] = None


def load_shim() -> ctypes.CDLL:
    """The built shim, loaded RTLD_GLOBAL (as libxl needs it) with the
    prototypes these tests use; skips if it is not built."""
    global _shim
    if _shim is not None:
        return _shim
    path = shim_path()
    if path is None:
        raise SkipTest("the shim txlibxl.sim._xcshim is not built (pip install -e .)")
    lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL, use_errno=True)
    P, I, U32, U64P = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint64)
    protos = {
        "txsim_shim_version": (I, []),
        "txsim_redirect_paths": (I, [ctypes.c_char_p]),
        "xc_interface_open": (P, [P, P, ctypes.c_uint]),
        "xc_interface_close": (I, [P]),
        "xc_domain_getinfolist": (I, [P, U32, ctypes.c_uint, P]),
        "xc_domain_getinfo": (I, [P, U32, ctypes.c_uint, P]),
        "xc_domain_pause": (I, [P, U32]),
        "xc_domain_unpause": (I, [P, U32]),
        "xc_domain_shutdown": (I, [P, U32, I]),
        "xc_domain_destroy": (I, [P, U32]),
        "xc_hvm_param_get": (I, [P, U32, U32, U64P]),
        "xc_get_max_cpus": (I, [P]),
        "xc_sched_id": (I, [P, ctypes.POINTER(ctypes.c_int)]),
        "xc_flask_sid_to_context": (I, [P, I, ctypes.c_char_p, U32]),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    _shim = lib
    return lib


def capture_stderr(f: Any, *args: Any) -> Tuple[Any, int, bytes]:
    """Call C{f(*args)} with fd 2 sent to a file: (result, errno, output)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            ctypes.set_errno(0)
            result = f(*args)
            err = ctypes.get_errno()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        return result, err, out.read()


class CountingFactory(HypercallFactory):
    connections = 0

    def buildProtocol(self, addr: object) -> hypercalls.HypercallProtocol:
        self.connections += 1
        return super().buildProtocol(addr)


class ShimTestCase(TestCase):
    """A hypervisor served on a fresh socket that the shim is pointed at."""

    def setUp(self) -> None:
        self.lib = load_shim()
        self.hv = Hypervisor(Store())
        tmp = tempfile.mkdtemp(prefix="txsim-")
        self.addCleanup(os.rmdir, tmp)
        self.socket = os.path.join(tmp, "hypercall")
        self.factory = CountingFactory(self.hv)
        self.port = reactor.listenUNIX(self.socket, self.factory)
        self.addCleanup(self.factory.close)
        self.addCleanup(self.port.stopListening)
        saved = os.environ.get(ENV)
        os.environ[ENV] = self.socket
        self.addCleanup(self._restore_env, saved)
        self.xch: Optional[int] = None

    @staticmethod
    def _restore_env(saved: Optional[str]) -> None:
        if saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved

    def call(self, name: str, *args: Any) -> Deferred:
        """Call the shim's C{name} in a thread: fires with (result, errno)."""
        fn = getattr(self.lib, name)

        def run() -> Tuple[Any, int]:
            ctypes.set_errno(0)
            result = fn(*args)
            return result, ctypes.get_errno()

        return deferToThread(run)

    @inlineCallbacks
    def open(self) -> Any:
        xch, err = yield self.call("xc_interface_open", None, None, 0)
        self.assertTrue(xch, f"xc_interface_open failed: {os.strerror(err)}")
        self.addCleanup(self.lib.xc_interface_close, xch)
        return xch

    @inlineCallbacks
    def getinfolist(self, xch: int, first: int, max_domains: int) -> Any:
        infos = (XcDomainInfo * max(1, max_domains))()
        n, err = yield self.call("xc_domain_getinfolist", xch, first, max_domains, infos)
        self.assertGreaterEqual(n, 0, os.strerror(err))
        return list(infos[:n])


class ShimIdentityTests(TestCase):
    def test_the_shim_says_it_is_the_shim(self) -> None:
        self.assertEqual(load_shim().txsim_shim_version(), 1)

    def test_opening_without_the_simulator_socket_set_fails_with_enoent(self) -> None:
        lib = load_shim()
        saved = os.environ.pop(ENV, None)
        self.addCleanup(ShimTestCase._restore_env, saved)
        xch, err, said = capture_stderr(lib.xc_interface_open, None, None, 0)
        self.assertEqual((xch, err), (None, errno.ENOENT))
        self.assertIn(b"TXLIBXL_SIM_HYPERCALL is not set", said)


class GetinfolistTests(ShimTestCase):
    @inlineCallbacks
    def test_rows_carry_xens_fields_flags_and_the_uuid_as_handle(self) -> None:
        wanted = uuid.uuid4()
        domid = self.hv.create_domain(
            "g", memory_kb=524288, max_memory_kb=1048576, vcpus=3, uuid=wanted, paused=False
        ).domid
        xch = yield self.open()
        (row,) = yield self.getinfolist(xch, domid, 1)
        self.assertEqual(row.domain, domid)
        self.assertEqual(row.flags, DOMINF_RUNNING | (0xFFFF << 16))
        self.assertEqual(bytes(row.handle), wanted.bytes)
        self.assertEqual((row.tot_pages, row.max_pages), (131072, 262144))
        self.assertEqual((row.nr_online_vcpus, row.max_vcpu_id), (3, 2))

    @inlineCallbacks
    def test_a_shut_down_domain_has_the_shutdown_flag_and_its_reason_above_bit_16(self) -> None:
        domid = self.hv.create_domain("g").domid
        self.hv.shutdown(domid, ShutdownReason.REBOOT)
        xch = yield self.open()
        (row,) = yield self.getinfolist(xch, domid, 1)
        self.assertEqual(row.flags, DOMINF_SHUTDOWN | DOMINF_PAUSED | (1 << 16))

    @inlineCallbacks
    def test_rows_start_at_first_and_stop_at_max(self) -> None:
        for domid in (4, 9, 12):
            self.hv.create_domain(f"g{domid}", domid=domid)
        xch = yield self.open()
        rows = yield self.getinfolist(xch, 5, 10)
        self.assertEqual([r.domain for r in rows], [9, 12])
        rows = yield self.getinfolist(xch, 0, 2)
        self.assertEqual([r.domain for r in rows], [0, 4])

    @inlineCallbacks
    def test_a_changed_domain_is_reported_fresh(self) -> None:
        domid = self.hv.create_domain("g").domid
        xch = yield self.open()
        yield self.getinfolist(xch, domid, 1)
        self.hv.unpause(domid)
        (row,) = yield self.getinfolist(xch, domid, 1)
        self.assertEqual(row.flags & 0xFFFF, DOMINF_RUNNING)

    @inlineCallbacks
    def test_getinfo_converts_rows_like_libxc_crashed_is_not_shutdown(self) -> None:
        domid = self.hv.create_domain("g", memory_kb=65536).domid
        self.hv.crash(domid)
        xch = yield self.open()
        info = XcDomInfo()
        n, _ = yield self.call("xc_domain_getinfo", xch, domid, 1, ctypes.byref(info))
        self.assertEqual(n, 1)
        self.assertEqual(
            (info.domid, info.crashed, info.shutdown, info.shutdown_reason, info.max_memkb),
            (domid, 1, 0, 3, 65536),
        )

    @inlineCallbacks
    def test_getinfo_past_the_last_domain_is_esrch(self) -> None:
        xch = yield self.open()
        info = XcDomInfo()
        result = yield self.call("xc_domain_getinfo", xch, 5, 1, ctypes.byref(info))
        self.assertEqual(result, (-1, errno.ESRCH))


class ControlTests(ShimTestCase):
    @inlineCallbacks
    def test_pause_and_unpause_reach_the_hypervisor(self) -> None:
        domid = self.hv.create_domain("g", paused=False).domid
        xch = yield self.open()
        result = yield self.call("xc_domain_pause", xch, domid)
        self.assertEqual((result, self.hv.get(domid).paused), ((0, 0), True))
        result = yield self.call("xc_domain_unpause", xch, domid)
        self.assertEqual((result, self.hv.get(domid).paused), ((0, 0), False))

    @inlineCallbacks
    def test_shutdown_reaches_the_hypervisor_with_its_reason(self) -> None:
        domid = self.hv.create_domain("g").domid
        xch = yield self.open()
        result = yield self.call("xc_domain_shutdown", xch, domid, 4)
        self.assertEqual(result, (0, 0))
        self.assertEqual(self.hv.get(domid).shutdown_reason, ShutdownReason.WATCHDOG)

    @inlineCallbacks
    def test_destroy_removes_the_domain(self) -> None:
        domid = self.hv.create_domain("g").domid
        xch = yield self.open()
        result = yield self.call("xc_domain_destroy", xch, domid)
        self.assertEqual(result, (0, 0))
        self.assertEqual(self.hv.getinfolist(domid, 1), [])

    @inlineCallbacks
    def test_refusals_come_back_as_xens_errno(self) -> None:
        domid = self.hv.create_domain("g", paused=False).domid
        xch = yield self.open()
        self.assertEqual((yield self.call("xc_domain_pause", xch, 99)), (-1, errno.ESRCH))
        self.assertEqual((yield self.call("xc_domain_unpause", xch, domid)), (-1, errno.EINVAL))
        self.assertEqual((yield self.call("xc_domain_destroy", xch, 0)), (-1, errno.EINVAL))
        self.assertEqual((yield self.call("xc_domain_shutdown", xch, domid, 77)), (-1, errno.EINVAL))

    @inlineCallbacks
    def test_hvm_param_get_reads_the_domains_parameter(self) -> None:
        domid = self.hv.create_domain("h", type="hvm").domid
        self.hv.set_hvm_param(domid, HVM_PARAM_CALLBACK_IRQ, 0x2000000000000043)
        xch = yield self.open()
        value = ctypes.c_uint64()
        result = yield self.call("xc_hvm_param_get", xch, domid, HVM_PARAM_CALLBACK_IRQ,
                                 ctypes.byref(value))
        self.assertEqual((result, value.value), ((0, 0), 0x2000000000000043))

    @inlineCallbacks
    def test_host_facts_come_from_the_hypervisors_host(self) -> None:
        xch = yield self.open()
        result = yield self.call("xc_get_max_cpus", xch)
        self.assertEqual(result, (self.hv.host.nr_cpus, 0))

    def test_flask_is_absent_and_fails_quietly(self) -> None:
        xch = 1  # never dereferenced: the function fails before
        buf = ctypes.create_string_buffer(64)
        result, err, said = capture_stderr(self.lib.xc_flask_sid_to_context, xch, 0, buf, 64)
        self.assertEqual((result, err, said), (-1, errno.ENOSYS, b""))


class UnsimulatedTests(ShimTestCase):
    @inlineCallbacks
    def test_an_unsimulated_function_fails_with_enosys_and_names_itself(self) -> None:
        xch = yield self.open()
        result, err, said = capture_stderr(self.lib.xc_domain_set_target, xch, 1, 2)
        self.assertEqual((result, err), (-1, errno.ENOSYS))
        self.assertEqual(said, b"txlibxl sim shim: xc_domain_set_target is not simulated\n")

    def test_every_xc_function_libxenlight_imports_is_defined_by_the_shim(self) -> None:
        import subprocess

        lib = "/usr/lib/x86_64-linux-gnu/" + LIBXENLIGHT
        if not os.path.exists(lib):
            raise SkipTest(f"{lib} is not installed")
        try:
            imported = subprocess.run(["nm", "-D", "--undefined-only", lib],
                                      check=True, capture_output=True, text=True).stdout
            defined = subprocess.run(["nm", "-D", "--defined-only", shim_path()],
                                     check=True, capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            raise SkipTest(f"nm is not usable: {e}")
        wanted = {line.split()[-1].split("@")[0] for line in imported.splitlines()
                  if line.split()[-1].startswith("xc_")}
        have = {line.split()[-1] for line in defined.splitlines()}
        self.assertEqual(sorted(wanted - have), [])


FORK_SCRIPT = r"""
import ctypes, json, os, sys
shim = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL, use_errno=True)
shim.xc_interface_open.restype = ctypes.c_void_p
domid = int(sys.argv[2])
buf = ctypes.create_string_buffer(112 * 8)
xch = ctypes.c_void_p(shim.xc_interface_open(None, None, 0))
before = shim.xc_domain_getinfolist(xch, 0, 8, buf)
pid = os.fork()
if pid == 0:
    # As libxl's destroy child: a new handle, then the destroy.
    child = ctypes.c_void_p(shim.xc_interface_open(None, None, 0))
    rc = shim.xc_domain_destroy(child, domid) if child.value else -1
    os._exit(0 if rc == 0 else (ctypes.get_errno() or 99))
_, status = os.waitpid(pid, 0)
after = shim.xc_domain_getinfolist(xch, 0, 8, buf)
print(json.dumps({"before": before, "child": os.WEXITSTATUS(status), "after": after}))
"""


class Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.out: List[bytes] = []
        self.err: List[bytes] = []
        self.done: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Any) -> None:
        self.done.callback(reason.value.exitCode)


class ForkTests(ShimTestCase):
    @inlineCallbacks
    def test_a_forked_child_destroys_over_its_own_connection(self) -> None:
        domid = self.hv.create_domain("g").domid
        collect = Collect()
        env = dict(os.environ)
        reactor.spawnProcess(
            collect, sys.executable, [sys.executable, "-c", FORK_SCRIPT, shim_path(), str(domid)],
            env=env,
        )
        code = yield collect.done
        self.assertEqual(code, 0, b"".join(collect.err).decode(errors="replace"))
        result = json.loads(b"".join(collect.out))
        self.assertEqual(result, {"before": 2, "child": 0, "after": 1})
        self.assertEqual(self.hv.getinfolist(domid, 1), [])
        self.assertEqual(self.factory.connections, 2)  # the parent's and the child's


class ReconnectTests(ShimTestCase):
    @inlineCallbacks
    def test_calls_survive_the_server_dropping_the_connection(self) -> None:
        domid = self.hv.create_domain("g").domid
        xch = yield self.open()
        yield self.getinfolist(xch, 0, 4)
        yield self.factory.close()
        self.factory._subscription = self.hv.subscribe(self.factory._changed)
        rows = yield self.getinfolist(xch, 0, 4)
        self.assertEqual(len(rows), 2)
        result = yield self.call("xc_domain_unpause", xch, domid)
        self.assertEqual(result, (0, 0))

    @inlineCallbacks
    def test_a_new_socket_path_is_followed(self) -> None:
        xch = yield self.open()
        yield self.getinfolist(xch, 0, 4)
        other = Hypervisor(Store())
        other.create_domain("elsewhere", domid=33)
        path = self.socket + "-2"
        port = hypercalls.listen(reactor, other, path)
        self.addCleanup(port.factory.close)
        self.addCleanup(port.stopListening)
        os.environ[ENV] = path
        rows = yield self.getinfolist(xch, 1, 4)
        self.assertEqual([r.domain for r in rows], [33])


class HypercallServerTests(TestCase):
    """The server's side alone, on an in-memory transport."""

    def setUp(self) -> None:
        self.hv = Hypervisor(Store())
        self.factory = HypercallFactory(self.hv)
        self.addCleanup(self.factory.close)

    def connect(self) -> Tuple[Any, StringTransport]:
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, None)
        return protocol, transport

    def replies(self, transport: StringTransport) -> List[Tuple[int, bytes]]:
        data, out = transport.value(), []
        while data:
            status, length = hypercalls.REPLY.unpack_from(data)
            out.append((status, data[8 : 8 + length]))
            data = data[8 + length :]
        return out

    def test_an_unknown_op_gets_enosys(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(hypercalls.REQUEST.pack(99, 0, 0, 0))
        self.assertEqual(self.replies(transport), [(-errno.ENOSYS, b"")])

    def test_requests_split_across_reads_are_answered_in_order(self) -> None:
        protocol, transport = self.connect()
        data = hypercalls.REQUEST.pack(1, 0, 5, 0) + hypercalls.REQUEST.pack(2, 42, 0, 0)
        for i in range(0, len(data), 5):
            protocol.dataReceived(data[i : i + 5])
        (listed, paused) = self.replies(transport)
        self.assertEqual((listed[0], len(listed[1])), (1, hypercalls.ROW.size))
        self.assertEqual(paused, (-errno.ESRCH, b""))

    def test_a_failing_handler_gets_eio_and_is_logged(self) -> None:
        protocol, transport = self.connect()
        self.factory._ops[hypercalls.OP_PHYSINFO] = lambda a, b, c: 1 / 0
        protocol.dataReceived(hypercalls.REQUEST.pack(hypercalls.OP_PHYSINFO, 0, 0, 0))
        self.assertEqual(self.replies(transport), [(-errno.EIO, b"")])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_one_clients_garbage_does_not_affect_another(self) -> None:
        bad, bad_transport = self.connect()
        good, good_transport = self.connect()
        bad.dataReceived(b"\x7f" * 20)
        good.dataReceived(hypercalls.REQUEST.pack(hypercalls.OP_GETINFOLIST, 0, 1, 0))
        bad.connectionLost(None)
        self.assertEqual(self.replies(bad_transport), [(-errno.ENOSYS, b"")])
        self.assertEqual(self.replies(good_transport)[0][0], 1)

    def test_an_extended_request_announcing_too_much_drops_only_its_connection(self) -> None:
        bad, bad_transport = self.connect()
        good, good_transport = self.connect()
        bad.dataReceived(b"\xff" * 20)
        good.dataReceived(hypercalls.REQUEST.pack(hypercalls.OP_GETINFOLIST, 0, 1, 0))
        self.assertTrue(bad_transport.disconnecting)
        self.assertEqual(self.replies(bad_transport), [])
        self.assertEqual(self.replies(good_transport)[0][0], 1)

    def test_rows_follow_the_hypervisor_after_a_change(self) -> None:
        protocol, transport = self.connect()
        domid = self.hv.create_domain("g").domid
        request = hypercalls.REQUEST.pack(hypercalls.OP_GETINFOLIST, domid, 1, 0)
        protocol.dataReceived(request)
        self.hv.unpause(domid)
        protocol.dataReceived(request)
        first, second = self.replies(transport)
        flags = [hypercalls.ROW.unpack(row[1])[1] & 0xFFFF for row in (first, second)]
        self.assertEqual(flags, [DOMINF_PAUSED, DOMINF_RUNNING])


class PathRedirectionTests(TestCase):
    """libxenlight's own file accesses under the Xen directories land in a
    private root once its GOT is patched."""

    def setUp(self) -> None:
        self.lib = load_shim()
        try:
            self.xl = ctypes.CDLL(LIBXENLIGHT, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise SkipTest(f"libxenlight 4.17 cannot be loaded: {e}")
        fn = self.xl.libxl_read_file_contents
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                       ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)]
        self.root = tempfile.mkdtemp(prefix="txsim-root-")
        self.addCleanup(self._remove_tree, self.root)

    @staticmethod
    def _remove_tree(root: str) -> None:
        import shutil

        shutil.rmtree(root, ignore_errors=True)

    def read_via_libxl(self, path: str) -> Tuple[int, bytes]:
        """libxl_read_file_contents (which uses fopen) on C{path}."""
        data, length = ctypes.c_void_p(), ctypes.c_int()
        rc = self.xl.libxl_read_file_contents(None, path.encode(), ctypes.byref(data),
                                              ctypes.byref(length))
        if rc != 0:
            return rc, b""
        libc = ctypes.CDLL(None)
        content = ctypes.string_at(data.value, length.value)
        libc.free(ctypes.c_void_p(data.value))
        return rc, content

    def test_redirection_creates_the_private_xen_directories(self) -> None:
        self.assertEqual(self.lib.txsim_redirect_paths(self.root.encode()), 0)
        for sub in ("var/run/xen", "var/lib/xen"):
            self.assertTrue(os.path.isdir(os.path.join(self.root, sub)), sub)

    def test_libxenlights_file_accesses_under_xen_directories_go_to_the_root(self) -> None:
        self.assertEqual(self.lib.txsim_redirect_paths(self.root.encode()), 0)
        with open(os.path.join(self.root, "var/lib/xen/userdata-probe"), "wb") as f:
            f.write(b"lib")
        with open(os.path.join(self.root, "var/run/xen/domid-history"), "wb") as f:
            f.write(b"run")
        self.assertEqual(self.read_via_libxl("/var/lib/xen/userdata-probe"), (0, b"lib"))
        self.assertEqual(self.read_via_libxl("/var/run/xen/domid-history"), (0, b"run"))
        self.assertEqual(self.read_via_libxl("/run/xen/domid-history"), (0, b"run"))

    def test_other_paths_are_left_alone(self) -> None:
        self.assertEqual(self.lib.txsim_redirect_paths(self.root.encode()), 0)
        outside = os.path.join(self.root, "plain")
        with open(outside, "wb") as f:
            f.write(b"plain")
        self.assertEqual(self.read_via_libxl(outside), (0, b"plain"))
        self.assertEqual(self.read_via_libxl("/var/lib/xenish-nothing-here")[0], errno.ENOENT)

    def test_a_missing_root_is_einval(self) -> None:
        ctypes.set_errno(0)
        lib = ctypes.CDLL(shim_path(), use_errno=True)
        lib.txsim_redirect_paths.argtypes = [ctypes.c_char_p]
        self.assertEqual(lib.txsim_redirect_paths(b""), -1)
        self.assertEqual(ctypes.get_errno(), errno.EINVAL)


class StubGeneratorTests(TestCase):
    """gen_stubs.py gives every stub a failure value its caller can check."""

    def setUp(self) -> None:
        import shutil

        if shutil.which("gcc") is None:
            raise SkipTest("gcc is not installed")
        here = os.path.join(os.path.dirname(os.path.abspath(txlibxl.sim.__file__)), "shim")
        sys.path.insert(0, here)
        self.addCleanup(sys.path.remove, here)
        import gen_stubs

        self.gen = gen_stubs

    def test_typedefs_of_pointers_fail_with_null(self) -> None:
        kinds = self.gen.classify({"xc_cpumap_t", "int", "unsigned long", "_Bool", "const char *"})
        values = {t: self.gen.failure_value("f", t, kinds[t])
                  for t in kinds if t not in ("void", "unsigned long")}
        self.assertEqual(values["xc_cpumap_t"], "NULL")
        self.assertEqual(values["const char *"], "NULL")
        self.assertEqual(values["int"], "(int)-1")
        self.assertEqual(values["_Bool"], "false")
        # An unsigned integer has no failure value of its own: it must be named.
        with self.assertRaises(SystemExit):
            self.gen.failure_value("f", "unsigned long", kinds["unsigned long"])
        self.assertEqual(self.gen.failure_value("xc_make_page_below_4G", "unsigned long",
                                                kinds["unsigned long"]), "0")

    def test_the_checked_in_stubs_are_what_the_generator_makes(self) -> None:
        self.assertEqual(self.gen.main(["--check"]), 0)

    def test_a_pointer_returning_stub_returns_null(self) -> None:
        lib = load_shim()
        lib.xc_gnttab_map_table_v1.restype = ctypes.c_void_p
        result, err, said = capture_stderr(lib.xc_gnttab_map_table_v1, None, 1, None)
        self.assertEqual((result, err), (None, errno.ENOSYS))
