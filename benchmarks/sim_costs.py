"""The simulator's own costs (a benchmark, not a test).

Per hypercall round trip: starts a hypercall server with N simulated
domains in a child process, loads the built shim into this process and
times ``xc_domain_getinfolist`` through it: 1 row, 200 rows (libxl's
death-scan batch) and 1024 rows (``libxl_list_domain``'s batch).

Per watch event: the same child process also serves a simulated xenstored
holding the N domains' trees' worth of nodes; a raw xenstore client sets W
watches on one node and writes it repeatedly, so that each write makes the
daemon send W watch events.

Prints one JSON object: wall time per call or event as the client sees it,
and the server process's CPU time per call or event (from
``/proc/<pid>/stat``).

Usage: ``python benchmarks/sim_costs.py [--domains 5000] [--calls 2000]``
(after ``pip install -e .`` has built the shim).
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOMAININFO_SIZE = 112  # sizeof(xc_domaininfo_t), domctl interface 0x15

SERVER = r"""
import sys
from twisted.internet import reactor
from txlibxl.sim.hypercalls import listen
from txlibxl.sim.hypervisor import HostInfo, Hypervisor
from txlibxl.sim.store import Store

from txlibxl.sim import xenstored

path, count = sys.argv[1], int(sys.argv[2])
store = Store(lambda f: reactor.callLater(0, f))
hv = Hypervisor(store, host=HostInfo(total_memory_kb=1 << 40))
for i in range(count):
    hv.create_domain("guest%d" % i, paused=(i % 2 == 0))
    store.write("/local/domain/%d/name" % (i + 1), b"guest%d" % i)
listen(reactor, hv, path)
xenstored.listen(reactor, store, path + ".xs")
reactor.callWhenRunning(lambda: (sys.stdout.write("ready\n"), sys.stdout.flush()))
reactor.run()
"""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(shim: ctypes.CDLL, xch: int, first: int, rows: int, calls: int,
            server_pid: int) -> Tuple[float, float]:
    buf = ctypes.create_string_buffer(DOMAININFO_SIZE * rows)
    fn = shim.xc_domain_getinfolist
    for _ in range(min(100, calls)):  # warm the row cache and the connection
        fn(xch, first, rows, buf)
    cpu0, t0 = cpu_seconds(server_pid), time.perf_counter()
    for _ in range(calls):
        n = fn(xch, first, rows, buf)
        if n != rows:
            raise RuntimeError(f"getinfolist({first}, {rows}) returned {n}")
    wall, cpu = time.perf_counter() - t0, cpu_seconds(server_pid) - cpu0
    return wall / calls, cpu / calls


def measure_watch_events(socket_path: str, watches: int, writes: int,
                         server_pid: int) -> Tuple[float, float]:
    """
    Wall and server CPU seconds per watch event: C{watches} watches on one
    node, written C{writes} times.
    """
    import socket

    from txlibxl.sim.wire import Op, Packet, PacketDecoder, encode

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    decoder = PacketDecoder()

    def expect(count: int, op: int) -> None:
        seen = 0
        while seen < count:
            for packet in decoder.feed(sock.recv(1 << 16)):
                seen += packet.op == op
    for i in range(watches):
        sock.sendall(encode(Packet(Op.WATCH, i, 0, b"/bench\0t%d\0" % i)))
    expect(watches, Op.WATCH_EVENT)  # each new watch fires once
    cpu0, t0 = cpu_seconds(server_pid), time.perf_counter()
    for i in range(writes):
        sock.sendall(encode(Packet(Op.WRITE, i, 0, b"/bench\0%d" % i)))
        expect(watches, Op.WATCH_EVENT)
    wall, cpu = time.perf_counter() - t0, cpu_seconds(server_pid) - cpu0
    sock.close()
    events = watches * writes
    return wall / events, cpu / events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--watches", type=int, default=100)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()

    found = sorted(glob.glob(os.path.join(ROOT, "txlibxl", "sim", "_xcshim*.so")))
    if not found:
        print("the shim is not built: run pip install -e .", file=sys.stderr)
        return 2
    shim = ctypes.CDLL(found[0], mode=ctypes.RTLD_GLOBAL, use_errno=True)
    shim.xc_interface_open.restype = ctypes.c_void_p
    shim.xc_interface_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
    shim.xc_domain_getinfolist.restype = ctypes.c_int
    shim.xc_domain_getinfolist.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint, ctypes.c_void_p
    ]

    with tempfile.TemporaryDirectory(prefix="txsim-bench-") as tmp:
        path = os.path.join(tmp, "hypercall")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, path, str(args.domains)],
            stdout=subprocess.PIPE, env=env,
        )
        try:
            if server.stdout is None or server.stdout.readline().strip() != b"ready":
                print("the hypercall server did not start", file=sys.stderr)
                return 1
            os.environ["TXLIBXL_SIM_HYPERCALL"] = path
            xch = shim.xc_interface_open(None, None, 0)
            if not xch:
                print(f"xc_interface_open: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
                return 1
            results: Dict[str, Dict[str, float]] = {}
            middle = args.domains // 2
            for label, rows in (("getinfolist_1", 1), ("getinfolist_200", 200),
                                ("getinfolist_1024", 1024)):
                rows = min(rows, args.domains)
                wall, cpu = measure(shim, xch, middle - rows // 2 or 1, rows, args.calls,
                                    server.pid)
                results[label] = {
                    "rows": rows,
                    "wall_us_per_call": round(wall * 1e6, 2),
                    "server_cpu_us_per_call": round(cpu * 1e6, 2),
                }
            wall, cpu = measure_watch_events(path + ".xs", args.watches, args.writes, server.pid)
            results["watch_event"] = {
                "watches": args.watches,
                "writes": args.writes,
                "wall_us_per_event": round(wall * 1e6, 2),
                "server_cpu_us_per_event": round(cpu * 1e6, 2),
            }
        finally:
            server.terminate()
            server.wait()
    print(json.dumps({"domains": args.domains, "calls": args.calls, "results": results},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
